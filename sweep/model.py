"""The tutorial's network as a Keras model: one BasicLSTMCell over 28 rows, a dense head.

`BasicLSTMCell` is gone from TensorFlow with Keras 3, so the cell is written out here with its
exact semantics: one kernel over [x, h], gates in the order i, j, f, o, and a constant
`forget_bias` added to f before the sigmoid.
"""

from __future__ import annotations

import keras
import tensorflow as tf


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
        # so it is one matmul over all 28 steps instead of 28 small ones.
        d = x.shape[-1]
        x_kernel, h_kernel = self.kernel[:d], self.kernel[d:]
        x_proj = tf.unstack(tf.einsum("btd,dk->btk", x, x_kernel) + self.bias, axis=1)
        h = c = tf.zeros((tf.shape(x)[0], self.units), dtype=x.dtype)
        for z_x in x_proj:  # 28 steps, unrolled in the traced graph
            i, j, f, o = tf.split(z_x + h @ h_kernel, 4, axis=1)
            c = c * tf.sigmoid(f + self.forget_bias) + tf.sigmoid(i) * tf.tanh(j)
            h = tf.tanh(c) * tf.sigmoid(o)
        return h

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
