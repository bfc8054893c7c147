"""The model of record is stock Keras and computes the tutorial's BasicLSTMCell; the native
backend computes the same network on the same variables; `auto` picks the right backend."""

import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from sweep.errors import SweepError
from sweep.training.lstm_op import load
from sweep.training.model import Backend, build_model, choose_backend, from_basic_lstm
from sweep.training.model_v1 import build_model_v1


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def basic_lstm_cell_numpy(x, kernel, bias, forget_bias):
    """tf.compat.v1.nn.rnn_cell.BasicLSTMCell, step by step, in float64."""
    units = kernel.shape[1] // 4
    h = c = np.zeros((x.shape[0], units))
    for t in range(x.shape[1]):
        z = np.concatenate([x[:, t], h], axis=1) @ kernel + bias
        i, j, f, o = np.split(z, 4, axis=1)
        c = c * sigmoid(f + forget_bias) + sigmoid(i) * np.tanh(j)
        h = np.tanh(c) * sigmoid(o)
    return h


def random_cell(rng, units):
    """A BasicLSTMCell kernel and a nonzero bias (so gate-order mix-ups show)."""
    return rng.normal(0, 0.5, (28 + units, 4 * units)).astype(np.float32), rng.normal(0, 0.5, 4 * units).astype(
        np.float32
    )


def test_the_model_is_stock_keras():
    model = build_model(16, 1.0)
    assert [type(layer) for layer in model.layers[1:]] == [keras.layers.LSTM, keras.layers.Dense]
    assert all(type(layer).__module__.startswith("keras") for layer in model.layers)


def test_stock_lstm_computes_basic_lstm_cell_with_the_mapped_weights():
    rng = np.random.default_rng(0)
    for units, forget_bias in ((8, 1.0), (13, 0.0), (32, 2.5)):
        model = build_model(units, forget_bias)
        kernel, bias = random_cell(rng, units)
        model.get_layer("lstm").set_weights(from_basic_lstm(kernel, bias, forget_bias))
        x = rng.random((5, 28, 28))
        w, b = model.get_layer("logits").get_weights()
        expected = basic_lstm_cell_numpy(x, kernel, bias, forget_bias) @ w + b
        np.testing.assert_allclose(model(x.astype(np.float32)).numpy(), expected, rtol=1e-4, atol=1e-4)


def test_initial_weights_are_the_tutorials():
    """One Glorot-uniform draw over the joint [28 + units, 4 units] kernel (the same draw as the
    v1 model's, same seed), a zero bias plus forget_bias in the f block, an N(0, 1) head."""
    units, forget_bias = 512, 0.7
    keras.utils.set_random_seed(0)
    model = build_model(units, forget_bias)
    keras.utils.set_random_seed(0)
    v1 = build_model_v1(units, forget_bias)
    v1_kernel, v1_bias = v1.get_layer("lstm").get_weights()
    for got, want in zip(model.get_layer("lstm").get_weights(), from_basic_lstm(v1_kernel, v1_bias, forget_bias)):
        np.testing.assert_array_equal(got, want)
    limit = np.sqrt(6 / (28 + units + 4 * units))  # Glorot-uniform's bound for the joint kernel
    assert 0.99 * limit < np.abs(v1_kernel).max() <= limit * (1 + 1e-6)
    bias = model.get_layer("lstm").get_weights()[2]
    np.testing.assert_array_equal(bias[units : 2 * units], np.float32(forget_bias))  # Keras' f block
    assert not np.delete(bias, np.s_[units : 2 * units]).any()
    w, b = model.get_layer("logits").get_weights()
    values = np.concatenate([w.ravel(), b.ravel()])
    assert abs(values.mean()) < 0.05 and abs(values.std() - 1.0) < 0.05


def test_head_init_stddev_scales_the_same_draws_and_nothing_else():
    keras.utils.set_random_seed(0)
    tutorial = build_model(32, 1.0)
    keras.utils.set_random_seed(0)
    narrow = build_model(32, 1.0, head_init_stddev=0.1)
    for got, want in zip(narrow.get_layer("logits").get_weights(), tutorial.get_layer("logits").get_weights()):
        np.testing.assert_allclose(got, 0.1 * want, rtol=1e-6)
    for got, want in zip(narrow.get_layer("lstm").get_weights(), tutorial.get_layer("lstm").get_weights()):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(SweepError, match="v1"):
        Backend("v1", 2).build(32, 1.0, head_init_stddev=0.1)


def test_forget_bias_changes_the_output():
    """Guards against a forget_bias that is stored but never used."""
    x = np.random.default_rng(1).random((4, 28, 28)).astype(np.float32)
    keras.utils.set_random_seed(0)
    a = build_model(16, 0.0)
    keras.utils.set_random_seed(0)
    b = build_model(16, 3.0)
    assert not np.allclose(a(x).numpy(), b(x).numpy())


def both_backends(rng, units=24, forget_bias=0.7, batch=9):
    """The same model under each backend's forward pass, on weights with a nonzero bias."""
    keras.utils.set_random_seed(3)
    model, native = Backend("native", 2).build(units, forget_bias)
    _, _keras_forward = Backend("keras", 2).build(units, forget_bias)
    kernel, bias = random_cell(rng, units)
    model.get_layer("lstm").set_weights(from_basic_lstm(kernel, bias, forget_bias))
    x = tf.constant(rng.random((batch, 28, 28)), tf.float32)
    return model, native, (lambda x, training: model(x, training=training)), x


def test_backends_agree_on_logits():
    _model, native, stock, x = both_backends(np.random.default_rng(4))
    for training in (False, True):
        np.testing.assert_allclose(native(x, training).numpy(), stock(x, training).numpy(), rtol=0, atol=1e-5)


def test_backends_agree_on_gradients_of_every_weight():
    """float32 sums over 28 steps in a different order: gradients agree to ~1e-6 of their own
    scale (a wrong gate block or a dropped term is off by its whole size)."""
    rng = np.random.default_rng(5)
    model, native, stock, x = both_backends(rng)
    y = tf.constant(rng.integers(0, 10, x.shape[0]))
    grads = []
    for forward in (native, stock):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, forward(x, True)))
        grads.append(tape.gradient(loss, model.trainable_variables))
    for variable, a, b in zip(model.trainable_variables, *grads):
        scale = np.abs(b.numpy()).max()
        assert scale > 1e-3, variable.path  # a gradient that is really there
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0, atol=1e-5 * scale, err_msg=variable.path)


def test_op_gradients_match_autodiff():
    """The native op's backpropagation through time (sweep/lstm_op.cc) against TensorFlow's
    autodiff of the plain cell loop, with nonzero biases."""
    rng = np.random.default_rng(3)
    units, forget_bias = 16, 0.7
    kernel, bias = (tf.Variable(v) for v in random_cell(rng, units))
    x = tf.constant(rng.random((6, 28, 28)), tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        ours = tf.reduce_sum(tf.sin(load().basic_lstm(x, kernel, bias, forget_bias=forget_bias, keep_steps=True)[0]))
        h = c = tf.zeros((6, units))
        for t in range(28):
            i, j, f, o = tf.split(tf.concat([x[:, t], h], 1) @ kernel + bias, 4, axis=1)
            c = c * tf.sigmoid(f + forget_bias) + tf.sigmoid(i) * tf.tanh(j)
            h = tf.tanh(c) * tf.sigmoid(o)
        reference = tf.reduce_sum(tf.sin(h))
    for a, r in zip(tape.gradient(ours, [kernel, bias]), tape.gradient(reference, [kernel, bias])):
        assert np.abs(r.numpy()).max() > 1e-3
        np.testing.assert_allclose(a.numpy(), r.numpy(), rtol=1e-4, atol=1e-5)


def test_v1_model_still_computes_basic_lstm_cell():
    """Runs logged before the stock layer load and train with it (sweep/model_v1.py)."""
    rng = np.random.default_rng(6)
    model = build_model_v1(13, 0.4)
    kernel, bias = random_cell(rng, 13)
    model.get_layer("lstm").set_weights([kernel, bias])
    x = rng.random((7, 28, 28))
    w, b = model.get_layer("logits").get_weights()
    expected = basic_lstm_cell_numpy(x, kernel, bias, 0.4) @ w + b
    for training in (False, True):
        np.testing.assert_allclose(
            model(x.astype(np.float32), training=training).numpy(), expected, rtol=1e-4, atol=1e-4
        )


@pytest.mark.slow  # a Python of its own, importing TensorFlow
def test_saved_model_loads_in_a_python_that_never_imported_this_project(tmp_path):
    keras.utils.set_random_seed(0)
    model = build_model(16, 1.5)
    x = np.random.default_rng(2).random((3, 28, 28)).astype(np.float32)
    model.save(tmp_path / "model.keras")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "expected.npy", model(x).numpy())
    script = (
        "import sys, keras, numpy as np\n"
        "model = keras.models.load_model('model.keras')\n"
        "assert not [m for m in sys.modules if m == 'sweep' or m.startswith('sweep.')]\n"
        "np.testing.assert_allclose(model(np.load('x.npy')).numpy(), np.load('expected.npy'), rtol=0, atol=1e-6)\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


def test_auto_picks_keras_when_tensorflow_sees_a_gpu(messages):
    gpu = tf.config.PhysicalDevice("/physical_device:GPU:0", "GPU")
    backend = choose_backend("auto", gpus=[gpu])
    assert backend == Backend("keras", 1) and len(messages) == 1 and "cuDNN" in messages[0]


def test_auto_on_a_cpu_picks_native_and_uses_every_core(messages):
    import os

    backend = choose_backend("auto", gpus=[])
    assert messages == []
    assert backend == Backend("native", len(os.sched_getaffinity(0)))
    assert choose_backend("keras", gpus=[]) == Backend("keras", backend.chains)


def test_op_rejects_mismatched_shapes():
    with pytest.raises(tf.errors.InvalidArgumentError, match="BasicLstm: want"):  # kernel rows: 28 + 9 units, not 36
        load().basic_lstm(tf.zeros([2, 28, 28]), tf.zeros([36, 36]), tf.zeros([36]), forget_bias=1.0, keep_steps=False)


def test_training_and_inference_paths_of_the_op_agree():
    """Training keeps every step for the gradient, inference reuses two slots of scratch: the
    same bits, for odd batches and unit counts too. (Eigen rounds a row's unaligned head with
    scalar code: on an AVX2 CPU, scratch placed elsewhere than training's buffers modulo 64
    bytes differed in the last bit for most of these shapes.)"""
    rng = np.random.default_rng(7)
    for _ in range(20):
        units, batch = int(rng.integers(3, 70)), int(rng.integers(1, 40))
        kernel, bias = random_cell(rng, units)
        x = rng.random((batch, 28, 28)).astype(np.float32)
        kept, scratch = (
            load().basic_lstm(x, kernel, bias, forget_bias=1.0, keep_steps=keep)[0] for keep in (True, False)
        )
        np.testing.assert_array_equal(kept.numpy(), scratch.numpy(), err_msg=f"{units} units, batch {batch}")


def test_on_a_gpu_the_layer_qualifies_for_cudnn():
    """Keras runs an LSTM on cuDNN only for tanh/sigmoid activations, a bias and no unrolling
    (and no recurrent dropout); otherwise it silently takes its generic loop. No GPU here, so
    this checks the layer's arguments against Keras' own rule."""
    from keras.src.backend.tensorflow.rnn import _do_lstm_arguments_support_cudnn

    layer = build_model(16, 1.0).get_layer("lstm")
    assert not layer.recurrent_dropout and layer.use_cudnn == "auto"
    assert _do_lstm_arguments_support_cudnn(
        layer.cell.activation, layer.cell.recurrent_activation, layer.unroll, layer.cell.use_bias
    )
