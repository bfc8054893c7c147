"""The tutorial's network as a plain Keras model, and the backends that train it.

The model of record is stock Keras: `keras.layers.LSTM` over 28 rows of 28 pixels, then a
dense head. It is what every trial saves, so it loads wherever Keras does, with no code of
ours. It computes the tutorial's BasicLSTMCell exactly: BasicLSTMCell's one kernel over [x, h]
is Keras' `kernel` (its first 28 rows) stacked on `recurrent_kernel`, its gate blocks
(i, j, f, o) are Keras' (i, f, c, o) with j = c, and its constant `forget_bias` is the f block of
Keras' trainable bias, initialised to it (a constant and a bias that starts at it get the same
gradients, so Adam makes the same updates).

How the LSTM is computed while training is a backend's business:
  keras   the layer itself (TensorFlow places it on cuDNN when there is a GPU)
  native  the same variables, mapped into BasicLSTMCell's layout inside the graph, through a
          compiled CPU op (lstm_op.cc; faster than the keras backend on a CPU, see
          docs/performance.md)
  v1      runs logged before the stock layer: the BasicLSTM layer of model_v1.py
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import keras
import tensorflow as tf

from sweep.errors import SweepError
from sweep.training import lstm_op
from sweep.training.config import LSTM_BACKENDS
from sweep.training.model_v1 import build_model_v1

log = logging.getLogger(__name__)

Forward = Callable[[tf.Tensor, bool], tf.Tensor]  # (images, training) -> logits
BackendName = Literal["native", "keras", "v1"]  # what a run records (v1: runs logged before the stock layer)


def build_model(
    num_units: int, forget_bias: float, head_init_stddev: float = 1.0, steps: int = 28, inputs: int = 28
) -> keras.Model:
    """(N, 28, 28) float32 images in, 10 logits out, initialised as the tutorial was: one
    Glorot-uniform draw over BasicLSTMCell's joint kernel, a zero bias with forget_bias in its f
    block, and an N(0, 1) head (N(0, head_init_stddev^2): the same draws, scaled). (With the same seed
    and head_init_stddev 1, the same draws as the v1 model's.)"""
    normal = keras.initializers.RandomNormal(mean=0.0, stddev=head_init_stddev)
    joint = keras.initializers.GlorotUniform()((inputs + num_units, 4 * num_units))
    images = keras.Input(shape=(steps, inputs), name="images")
    lstm = keras.layers.LSTM(
        num_units, unit_forget_bias=False, kernel_initializer="zeros", recurrent_initializer="zeros", name="lstm"
    )  # zeros: overwritten below
    h = lstm(images)
    logits = keras.layers.Dense(10, kernel_initializer=normal, bias_initializer=normal, name="logits")(h)
    lstm.set_weights(from_basic_lstm(joint, tf.zeros(4 * num_units), forget_bias, inputs))
    return keras.Model(images, logits, name="tutorial_lstm")


def swap_gates(weights: tf.Tensor) -> tf.Tensor:
    """BasicLSTMCell's gate blocks (i, j, f, o) <-> Keras' (i, f, c, o), along the last axis:
    blocks 1 and 2 trade places, so the same function maps either way."""
    i, second, third, o = tf.split(weights, 4, axis=-1)
    return tf.concat([i, third, second, o], axis=-1)


def from_basic_lstm(kernel, bias, forget_bias: float, inputs: int = 28) -> list:
    """BasicLSTMCell's (kernel [inputs + units, 4 units], bias) and forget_bias as Keras LSTM
    weights [kernel, recurrent_kernel, bias]."""
    keras_kernel, keras_bias = swap_gates(tf.convert_to_tensor(kernel)), swap_gates(tf.convert_to_tensor(bias))
    units = keras_bias.shape[-1] // 4
    keras_bias += tf.concat([tf.zeros(units), tf.fill([units], float(forget_bias)), tf.zeros(2 * units)], 0)
    return [keras_kernel[:inputs].numpy(), keras_kernel[inputs:].numpy(), keras_bias.numpy()]


@dataclass(frozen=True)
class Backend:
    """How a trial's LSTM is computed. Recorded with every run (it changes float rounding), and
    read back by `reproduce`. Each batch is cut into `chains` row slices, each an independent
    chain of ops that TensorFlow runs on its own core (rows do not interact; the losses are
    summed in a fixed order, so the result depends on the chain count, never on timing)."""

    name: BackendName
    chains: int

    def params(self) -> dict[str, str]:
        """For the record. The op's rounding also depends on the compiler and CPU it was built for."""
        built = lstm_op.build_info() if self.name in ("native", "v1") else {}
        return {"lstm_backend": self.name, "lstm_chains": str(self.chains), **built}

    @classmethod
    def from_params(cls, params: dict[str, str]) -> Backend:
        """The backend a run recorded; runs logged before backends existed are v1, 2 chains."""
        return cls(params.get("lstm_backend", "v1"), int(params.get("lstm_chains", 2)))

    def build(self, num_units: int, forget_bias: float, head_init_stddev: float = 1.0) -> tuple[keras.Model, Forward]:
        """A freshly initialised model, and the forward pass that trains it."""
        if self.name == "v1":
            if head_init_stddev != 1.0:
                raise SweepError("the v1 backend only replays runs logged with the tutorial's N(0, 1) head")
            model = build_model_v1(num_units, forget_bias)
            return model, lambda x, training: model(x, training=training)
        model = build_model(num_units, forget_bias, head_init_stddev)
        if self.name == "keras":
            return model, lambda x, training: model(x, training=training)
        lstm, head = model.get_layer("lstm").cell, model.get_layer("logits")

        def native(x: tf.Tensor, training: bool) -> tf.Tensor:
            kernel = swap_gates(tf.concat([lstm.kernel, lstm.recurrent_kernel], axis=0))
            return head(lstm_op.basic_lstm(x, kernel, swap_gates(lstm.bias), 0.0, training=training))

        return model, native


def usable(name: str) -> None:
    """Raise SweepError, with the compiler's reason, if backend `name` cannot run here."""
    if name in ("native", "v1"):
        lstm_op.load()


def cores() -> int:
    """The CPUs this process may run on (taskset, cgroups' cpusets), not the machine's count."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def choose_backend(requested: str, gpus: list | None = None) -> Backend:
    """The concrete backend for `requested` (auto, native or keras). auto: keras when TensorFlow
    sees a GPU (cuDNN), else the native op when it builds, else keras, saying why in one line.
    `gpus` defaults to TensorFlow's device list."""
    if gpus is None:
        gpus = tf.config.list_physical_devices("GPU")
    chains = 1 if gpus else cores()  # on a GPU one batch is one kernel launch; slicing it only adds launches
    if requested == "keras":
        return Backend("keras", chains)
    if requested == "native":
        if gpus:
            log.warning("lstm backend: native, as asked, although TensorFlow sees a GPU: the op runs on the CPU only")
        lstm_op.load()  # raises SweepError with the compiler's reason
        return Backend("native", chains)
    if requested != "auto":
        raise SweepError(f"lstm backend {requested!r} is not one of {', '.join(LSTM_BACKENDS)}")
    if gpus:
        log.info(f"lstm backend: keras (TensorFlow sees {len(gpus)} GPU(s): keras.layers.LSTM runs on cuDNN)")
        return Backend("keras", chains)
    try:
        lstm_op.load()
    except SweepError as e:
        log.warning(f"lstm backend: keras ({e}; keras.layers.LSTM trains the same model, more slowly on a CPU)")
        return Backend("keras", chains)
    return Backend("native", chains)


def resumed_backend(recorded: tuple[str, int], backend: Backend) -> Backend:
    """The backend and chain count a checkpoint was trained with (they decide its rounding), so
    that a resumed training continues as it began; where that backend cannot run here,
    `backend`, with one line saying so."""
    wanted = Backend(*recorded)
    if wanted == backend:
        return backend
    try:
        usable(wanted.name)
    except SweepError:
        log.warning(
            f"the checkpoint was trained with the {wanted.name} backend, which cannot run here; "
            f"continuing on {backend.name}"
        )
        return backend
    return wanted
