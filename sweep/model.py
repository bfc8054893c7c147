"""The tutorial's network as a Keras model: one BasicLSTMCell over 28 rows, a dense head.

`BasicLSTMCell` is gone from TensorFlow with Keras 3, so the cell is written out here with its
exact semantics: one kernel over [x, h], gates in the order i, j, f, o, and a constant
`forget_bias` added to f before the sigmoid.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


@tf.custom_gradient
def lstm_last_h(z_x: tf.Tensor, h_kernel: tf.Tensor) -> tf.Tensor:
    """The LSTM recurrence over z_x [steps, batch, 4 units] (each step's x @ kernel + biases),
    returning the last h, with backpropagation through time written out.

    Why by hand: TensorFlow's autodiff of the unrolled loop made a training step of ~4,000 graph
    ops (broadcast bookkeeping, 28 weight-gradient matmuls and their sums); written out it is
    ~2,200, each step's backward a few fused ops and the recurrent kernel's gradient one matmul
    over all steps: ~15% more samples/s and half the tracing time (bench/throughput.py).
    tests/test_model.py checks the gradients against autodiff."""
    units = h_kernel.shape[0]
    h = c = None  # both start at zero: step 0 skips the terms they would multiply
    saved = []  # per step, what its backward needs
    for t, z in enumerate(tf.unstack(z_x)):
        if t:
            z = z + h @ h_kernel
        i, j, f, o = tf.split(z, 4, axis=1)
        i, j, f, o = tf.sigmoid(i), tf.tanh(j), tf.sigmoid(f), tf.sigmoid(o)
        c_prev, c = c, i * j if c is None else c * f + i * j
        tanh_c = tf.tanh(c)
        saved.append((h, c_prev, i, j, f, o, tanh_c))
        h = tanh_c * o

    def grad(dh: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        # SigmoidGrad(y, dy) = dy * y * (1 - y) and TanhGrad(y, dy) = dy * (1 - y^2), one op each.
        sigmoid_grad, tanh_grad = tf.raw_ops.SigmoidGrad, tf.raw_ops.TanhGrad
        kernel_t, dc, dz = tf.transpose(h_kernel), None, []
        for t in reversed(range(len(saved))):
            _, c_prev, i, j, f, o, tanh_c = saved[t]  # its h enters the kernel's gradient below
            dc_here = tanh_grad(y=tanh_c, dy=dh * o)
            dc = dc_here if dc is None else dc + dc_here
            df = sigmoid_grad(y=f, dy=dc * c_prev) if t else tf.zeros_like(dc)
            di, dj, do = sigmoid_grad(y=i, dy=dc * j), tanh_grad(y=j, dy=dc * i), sigmoid_grad(y=o, dy=dh * tanh_c)
            dz.append(tf.concat([di, dj, df, do], axis=1))
            if t:
                dc, dh = dc * f, dz[-1] @ kernel_t
        dz = tf.stack(dz[::-1])
        # h before step 0 is zero, so its block adds nothing to the kernel's gradient.
        h_prev = tf.stack([tf.zeros_like(dh)] + [s[0] for s in saved[1:]])
        d_kernel = tf.matmul(tf.reshape(h_prev, [-1, units]), tf.reshape(dz, [-1, 4 * units]), transpose_a=True)
        return dz, d_kernel

    return h, grad


@keras.saving.register_keras_serializable(package="sweep")
class BasicLSTM(keras.layers.Layer):
    """Runs tf.compat.v1 BasicLSTMCell over the time axis and returns the last h."""

    def __init__(self, units: int, forget_bias: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.forget_bias = forget_bias

    def build(self, input_shape: tuple[int, ...]) -> None:
        # BasicLSTMCell's variables: kernel [input + units, 4 units] (glorot_uniform, the TF1
        # get_variable default) and a zero bias.
        self.kernel = self.add_weight(
            name="kernel", shape=(input_shape[-1] + self.units, 4 * self.units), initializer="glorot_uniform"
        )
        self.bias = self.add_weight(name="bias", shape=(4 * self.units,), initializer="zeros")

    def call(self, x: tf.Tensor) -> tf.Tensor:
        # [x, h] @ kernel == x @ kernel[:d] + h @ kernel[d:]. The x half does not depend on h,
        # so it is one matmul over all steps, time-major so that each step's slice is
        # contiguous; the bias and forget_bias (on the f gate) are added there once.
        steps, d = x.shape[1], x.shape[2]
        x_kernel, h_kernel = tf.split(self.kernel, [d, self.units])
        forget_bias = tf.constant(np.repeat([0.0, 0.0, self.forget_bias, 0.0], self.units), x.dtype)
        x_major = tf.reshape(tf.transpose(x, [1, 0, 2]), [-1, d])
        z_x = tf.reshape(x_major @ x_kernel + (self.bias + forget_bias), [steps, -1, 4 * self.units])
        return lstm_last_h(z_x, h_kernel)

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int | None, int]:
        return (input_shape[0], self.units)

    def get_config(self) -> dict:
        return {**super().get_config(), "units": self.units, "forget_bias": self.forget_bias}


def build_model(num_units: int, forget_bias: float, steps: int = 28, inputs: int = 28) -> keras.Model:
    """(N, 28, 28) float32 images in, 10 logits out; the head is N(0, 1) as in the tutorial."""
    normal = keras.initializers.RandomNormal(mean=0.0, stddev=1.0)
    images = keras.Input(shape=(steps, inputs), name="images")
    h = BasicLSTM(num_units, forget_bias, name="lstm")(images)
    logits = keras.layers.Dense(10, kernel_initializer=normal, bias_initializer=normal, name="logits")(h)
    return keras.Model(images, logits, name="tutorial_lstm")
