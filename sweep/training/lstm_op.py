"""BasicLSTMCell over all time steps as a native TensorFlow op (lstm_op.cc), built on first use.

Why: written with TensorFlow ops, the tutorial's LSTM trained slower than PyTorch's nn.LSTM on
the same CPU; as one op per direction it is faster (bench/throughput.py measures both). The
build needs a C++ compiler (`c++`, or $CXX) and TensorFlow's headers, which its wheel carries.
It runs once per machine, compiler and TensorFlow version; the library is cached.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import subprocess
from pathlib import Path
from types import ModuleType

import tensorflow as tf

from sweep.errors import SweepError
from sweep.training.config import cpu_model, cpuinfo

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("lstm_op.cc")
# -march=native: the library is built where it runs. -U__AVX512FP16__: Eigen's AVX512-FP16 code
# does not compile with GCC 12, and nothing here is fp16.
FLAGS = ["-shared", "-fPIC", "-O3", "-DNDEBUG", "-march=native", "-U__AVX512FP16__", "-w"]


def _compiler() -> str:
    return os.environ.get("CXX", "c++")


@functools.cache
def build_info() -> dict[str, str]:
    """What the op's arithmetic depends on besides its source (which the git commit pins): the
    compiler and the CPU it was built for. Recorded with every run: either can change rounding."""
    try:
        version = subprocess.run([_compiler(), "--version"], capture_output=True, text=True).stdout.partition("\n")[0]
    except OSError:
        version = f"{_compiler()} (not found)"
    return {"lstm_op.compiler": version, "lstm_op.cpu": cpu_model()}


@functools.cache
def library() -> Path:
    """The op's compiled library: built into the cache, unless this source, TensorFlow,
    compiler and CPU already have one there."""
    compiler, compile_flags, link_flags = _compiler(), tf.sysconfig.get_compile_flags(), tf.sysconfig.get_link_flags()
    key = "\n".join(
        [SOURCE.read_text(), tf.__version__, *build_info().values(), cpuinfo("flags"), *FLAGS, *compile_flags]
    )
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lstm-mnist-sweep"
    library = cache / f"lstm_op-{hashlib.sha256(key.encode()).hexdigest()[:16]}.so"
    if library.exists():
        return library
    log.warning("building the LSTM op (once per machine, compiler and TensorFlow version; about 30 s)")
    cache.mkdir(parents=True, exist_ok=True)
    partial = library.with_suffix(f".{os.getpid()}.partial")  # several workers may build at once
    command = [compiler, str(SOURCE), "-o", str(partial), *FLAGS, *compile_flags, *link_flags]
    try:
        built = subprocess.run(command, capture_output=True, text=True)
    except OSError as e:
        raise SweepError(
            f"cannot build the LSTM op: {compiler}: {e.strerror}; install a C++ compiler (g++) or set CXX"
        ) from None
    if built.returncode != 0:
        error = next((line for line in built.stderr.splitlines() if "error" in line), built.stderr.strip()[-300:])
        raise SweepError(f"cannot build the LSTM op with {compiler}: {error}")
    os.replace(partial, library)
    return library


@functools.cache
def load() -> ModuleType:
    """The ops' Python bindings. The CLI calls this before it records anything, so that a failed
    build stops a command with one line."""
    return tf.load_op_library(str(library()))


def basic_lstm(x: tf.Tensor, kernel: tf.Tensor, bias: tf.Tensor, forget_bias: float, training: bool) -> tf.Tensor:
    """BasicLSTMCell over x [batch, steps, inputs], returning the last h. Training keeps every
    step's activations for the gradient; inference does not."""
    return load().basic_lstm(x, kernel, bias, forget_bias=forget_bias, keep_steps=training)[0]


@tf.RegisterGradient("BasicLstm")
def _basic_lstm_grad(op: tf.Operation, dh_last: tf.Tensor, *_unused: tf.Tensor) -> list[tf.Tensor | None]:
    """Backpropagation through time. Only the last h is used downstream, so only it carries a
    gradient in; the images get none."""
    _, kernel, bias = op.inputs
    _, xh, c, gates = op.outputs
    return [None, *load().basic_lstm_grad(dh_last, kernel, bias, xh, c, gates)]
