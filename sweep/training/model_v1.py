"""The model runs were logged with before the stock Keras LSTM (no `lstm_backend` param): a
BasicLSTM layer of ours that calls the native op. Kept so those runs still load, evaluate and
reproduce bit for bit; new trials never build it (sweep/model.py)."""

from __future__ import annotations

import keras
import tensorflow as tf

from sweep.training.lstm_op import basic_lstm


@keras.saving.register_keras_serializable(package="sweep")
class BasicLSTM(keras.layers.Layer):
    """tf.compat.v1 BasicLSTMCell over the time axis, returning the last h: one kernel over
    [x, h] (gates i, j, f, o), a bias, and a constant forget_bias added to f."""

    def __init__(self, units: int, forget_bias: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.forget_bias = forget_bias

    def build(self, input_shape: tuple[int, ...]) -> None:
        self.kernel = self.add_weight(
            name="kernel", shape=(input_shape[-1] + self.units, 4 * self.units), initializer="glorot_uniform"
        )
        self.bias = self.add_weight(name="bias", shape=(4 * self.units,), initializer="zeros")

    def call(self, x: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        return basic_lstm(x, self.kernel, self.bias, self.forget_bias, training=bool(training))

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int | None, int]:
        return (input_shape[0], self.units)

    def get_config(self) -> dict:
        return {**super().get_config(), "units": self.units, "forget_bias": self.forget_bias}


def build_model_v1(num_units: int, forget_bias: float, steps: int = 28, inputs: int = 28) -> keras.Model:
    normal = keras.initializers.RandomNormal(mean=0.0, stddev=1.0)
    images = keras.Input(shape=(steps, inputs), name="images")
    h = BasicLSTM(num_units, forget_bias, name="lstm")(images)
    logits = keras.layers.Dense(10, kernel_initializer=normal, bias_initializer=normal, name="logits")(h)
    return keras.Model(images, logits, name="tutorial_lstm")
