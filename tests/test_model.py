"""The Keras model is the tutorial's network: BasicLSTMCell equations, N(0, 1) head, saveable."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from sweep.lstm_op import load
from sweep.model import build_model


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


def test_cell_matches_basic_lstm_cell_equations():
    rng = np.random.default_rng(0)
    for units, forget_bias in ((8, 1.0), (13, 0.0), (32, 2.5)):
        model = build_model(units, forget_bias)
        lstm, head = model.get_layer("lstm"), model.get_layer("logits")
        kernel = rng.normal(0, 0.5, lstm.kernel.shape)
        bias = rng.normal(0, 0.5, lstm.bias.shape)  # nonzero, so gate order mix-ups show
        lstm.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
        x = rng.random((5, 28, 28))
        h = basic_lstm_cell_numpy(x, kernel, bias, forget_bias)
        w, b = head.get_weights()
        logits = model(x.astype(np.float32)).numpy()
        np.testing.assert_allclose(logits, h @ w + b, rtol=1e-4, atol=1e-4)


def test_forget_bias_changes_the_output():
    """Guards against a forget_bias that is stored but never used."""
    x = np.random.default_rng(1).random((4, 28, 28)).astype(np.float32)
    keras.utils.set_random_seed(0)
    a = build_model(16, 0.0)
    keras.utils.set_random_seed(0)
    b = build_model(16, 3.0)
    assert not np.allclose(a(x).numpy(), b(x).numpy())


def test_head_is_standard_normal_and_lstm_bias_zero():
    keras.utils.set_random_seed(0)
    model = build_model(512, 1.0)
    w, b = model.get_layer("logits").get_weights()
    values = np.concatenate([w.ravel(), b.ravel()])
    assert abs(values.mean()) < 0.05 and abs(values.std() - 1.0) < 0.05
    assert not model.get_layer("lstm").get_weights()[1].any()


def test_saves_as_keras_file_and_loads_with_same_outputs(tmp_path):
    keras.utils.set_random_seed(0)
    model = build_model(16, 1.5)
    x = np.random.default_rng(2).random((3, 28, 28)).astype(np.float32)
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert loaded.get_layer("lstm").forget_bias == 1.5
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())


def test_op_gradients_match_autodiff():
    """The native op's backpropagation through time (sweep/lstm_op.cc) against TensorFlow's
    autodiff of the plain cell loop, for every trainable weight, with nonzero biases."""
    rng = np.random.default_rng(3)
    units, forget_bias = 16, 0.7
    model = build_model(units, forget_bias)
    lstm = model.get_layer("lstm")
    lstm.set_weights([rng.normal(0, 0.5, lstm.kernel.shape).astype(np.float32), rng.normal(0, 0.5, lstm.bias.shape).astype(np.float32)])
    x = tf.constant(rng.random((6, 28, 28)), tf.float32)
    y = tf.constant(rng.integers(0, 10, 6))

    def loss(logits):
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))

    with tf.GradientTape() as tape:
        ours_loss = loss(model(x, training=True))
    ours = tape.gradient(ours_loss, model.trainable_variables)
    kernel, bias, w, b = model.trainable_variables
    with tf.GradientTape() as tape:
        h = c = tf.zeros((6, units))
        for t in range(28):
            i, j, f, o = tf.split(tf.concat([x[:, t], h], 1) @ kernel + bias, 4, axis=1)
            c = c * tf.sigmoid(f + forget_bias) + tf.sigmoid(i) * tf.tanh(j)
            h = tf.tanh(c) * tf.sigmoid(o)
        reference_loss = loss(h @ w + b)
    autodiff = tape.gradient(reference_loss, [kernel, bias, w, b])
    for name, a, r in zip(("kernel", "bias", "head w", "head b"), ours, autodiff):
        assert np.abs(a.numpy()).max() > 1e-3, name  # a gradient that is really there
        np.testing.assert_allclose(a.numpy(), r.numpy(), rtol=1e-4, atol=1e-5, err_msg=name)


def test_training_and_inference_paths_agree():
    """Training keeps every step for the gradient, inference reuses two steps of scratch: same
    outputs, for an odd batch too."""
    keras.utils.set_random_seed(4)
    model = build_model(24, 1.0)
    x = np.random.default_rng(4).random((7, 28, 28)).astype(np.float32)
    np.testing.assert_array_equal(model(x, training=True).numpy(), model(x, training=False).numpy())


def test_op_rejects_mismatched_shapes():
    with pytest.raises(tf.errors.InvalidArgumentError, match="BasicLstm: want"):  # kernel rows: 28 + 9 units, not 36
        load().basic_lstm(tf.zeros([2, 28, 28]), tf.zeros([36, 36]), tf.zeros([36]), forget_bias=1.0, keep_steps=False)
