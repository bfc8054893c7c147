"""MNIST, checked byte for byte, split as TensorFlow's old `input_data` did.

The tutorial's 99.21% is only meaningful against the canonical data, so every load proves it
has the canonical bytes (MD5 of the decompressed IDX content) before anything trains on it.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import struct
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from sweep.errors import SweepError

# name -> (IDX magic, shape after the header, MD5 of the decompressed file)
FILES: dict[str, tuple[int, tuple[int, ...], str]] = {
    "train-images-idx3-ubyte": (2051, (60000, 28, 28), "6bbc9ace898e44ae57da46a324031adb"),
    "train-labels-idx1-ubyte": (2049, (60000,), "a25bea736e30d166cdddb491f175f624"),
    "t10k-images-idx3-ubyte": (2051, (10000, 28, 28), "2646ac647ad5339dbf082846283269ea"),
    "t10k-labels-idx1-ubyte": (2049, (10000,), "27ae3e4e09519cfbb04c329615203637"),
}
TEST_IMAGES = FILES["t10k-labels-idx1-ubyte"][1][0]  # 10,000: "all test images"
MIRROR = "SWEEP_MNIST_URL"  # a folder URL with the four IDX .gz files, to download from instead of Keras' copy
MIRROR_CACHE = "datasets/mnist-idx"  # where they are kept, under ~/.keras or $KERAS_HOME
VALIDATION_SIZE = 5000  # input_data.read_data_sets(validation_size=5000): the first 5,000
TRAIN_SIZE = FILES["train-labels-idx1-ubyte"][1][0] - VALIDATION_SIZE  # 55,000: the training split
FOLDS = (TRAIN_SIZE + VALIDATION_SIZE) // VALIDATION_SIZE  # 12 folds of 5,000; fold 0 is the tutorial's split


@dataclass(frozen=True)
class Split:
    x: np.ndarray  # (N, 28, 28) float32 in [0, 1]
    y: np.ndarray  # (N,) int64

    def head(self, n: int | None) -> Split:
        return self if n is None else Split(self.x[:n], self.y[:n])

    @functools.cached_property
    def tensors(self):
        """x and y as TensorFlow tensors, converted once and kept with the split: 55,000 images
        are a 172 MB copy (0.1-0.4 s), and every trial of a process trains on the same split."""
        import tensorflow as tf  # here, not at the top: reading MNIST needs no TensorFlow

        return tf.constant(self.x), tf.constant(self.y)


@dataclass(frozen=True)
class Mnist:
    train: Split
    val: Split
    test: Split
    md5: dict[str, str]  # file name -> MD5 of its decompressed content, for the record
    folder: str | None = None  # where the files were read, for the record (None: downloaded)
    val_fold: int = 0  # which 5,000 images of the training file validate (0: the first, as input_data)

    def limit(self, train: int | None, val: int | None, test: int | None) -> Mnist:
        """The first images of each split: small studies for tests and try-outs."""
        return replace(self, train=self.train.head(train), val=self.val.head(val), test=self.test.head(test))

    def fold(self, k: int) -> Mnist:
        """The training file split another way: its images 5,000 k to 5,000 (k + 1) validate, the
        other 55,000 train, in the file's order. Fold 0 is the tutorial's split; the test set is
        never touched. (So that confirm's seeds do not all carry the luck of one validation set.)"""
        if not 0 <= k < FOLDS:
            raise SweepError(f"validation fold {k} does not exist: there are {FOLDS}, 0 to {FOLDS - 1}")
        if k == self.val_fold:
            return self
        at = self.val_fold * VALIDATION_SIZE  # where this split's validation images sit in the training file
        x, y = (
            np.concatenate([t[:at], v, t[at:]]) for t, v in ((self.train.x, self.val.x), (self.train.y, self.val.y))
        )
        held = slice(k * VALIDATION_SIZE, (k + 1) * VALIDATION_SIZE)
        rest = np.r_[0 : held.start, held.stop : len(y)]
        return replace(self, train=Split(x[rest], y[rest]), val=Split(x[held], y[held]), val_fold=k)


def _parse_idx(name: str, raw: bytes) -> np.ndarray:
    """Check an IDX file's header, size and MD5 against the canonical file and return its array."""
    magic, shape, md5 = FILES[name]
    ndim = len(shape)
    if len(raw) < 4 + 4 * ndim:
        raise SweepError(f"MNIST file {name}: only {len(raw)} bytes, too short for an IDX header")
    got_magic = struct.unpack(">i", raw[:4])[0]
    if got_magic != magic:
        kind = {2051: "an image file", 2049: "a label file"}.get(got_magic, "not an IDX file")
        raise SweepError(f"MNIST file {name}: magic number {got_magic} ({kind}), expected {magic}")
    got_shape = struct.unpack(f">{ndim}i", raw[4 : 4 + 4 * ndim])
    if got_shape != shape:
        raise SweepError(f"MNIST file {name}: header says shape {got_shape}, expected {shape}")
    expected_bytes = 4 + 4 * ndim + int(np.prod(shape))
    if len(raw) != expected_bytes:
        raise SweepError(f"MNIST file {name}: {len(raw)} bytes, expected {expected_bytes} (truncated?)")
    got_md5 = hashlib.md5(raw).hexdigest()
    if got_md5 != md5:
        raise SweepError(f"MNIST file {name}: MD5 {got_md5} is not the canonical {md5} (corrupted?)")
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _read_file(data_dir: Path, name: str) -> bytes:
    for path in (data_dir / f"{name}.gz", data_dir / name):
        if path.is_file():
            try:
                return gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
            except (OSError, EOFError, gzip.BadGzipFile) as e:
                raise SweepError(f"MNIST file {path}: cannot decompress ({e})") from None
    raise SweepError(f"MNIST file {name}(.gz) not found in {data_dir}")


def _idx_bytes(array: np.ndarray, name: str) -> bytes:
    """The IDX file an array came from, so fetched arrays get the same MD5 check as files."""
    magic, _, _ = FILES[name]
    return struct.pack(f">i{array.ndim}i", magic, *array.shape) + array.astype(np.uint8).tobytes()


def _fetch() -> dict[str, bytes]:
    """Download MNIST for users with internet, once (Keras caches it): the standard way, Keras'
    copy; or, if $SWEEP_MNIST_URL names a folder holding the four IDX .gz files (a mirror, or
    the tutorial's own source), those, into ~/.keras/datasets/mnist-idx/ ($KERAS_HOME)."""
    import keras

    mirror = os.environ.get(MIRROR)
    try:
        if mirror:
            cache = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")
            cache.mkdir(parents=True, exist_ok=True)  # else Keras caches in /tmp/.keras
            paths = {
                name: Path(
                    keras.utils.get_file(
                        f"{name}.gz", f"{mirror.rstrip('/')}/{name}.gz", cache_dir=str(cache), cache_subdir=MIRROR_CACHE
                    )
                )
                for name in FILES
            }
            return {name: _read_file(path.parent, name) for name, path in paths.items()}
        (xtr, ytr), (xte, yte) = keras.datasets.mnist.load_data()
    except SweepError:
        raise
    except Exception as e:  # noqa: BLE001  the download fails in many ways (DNS, proxy, HTTP); all mean the same
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SweepError(
            f"cannot download MNIST{f' from {mirror}' if mirror else ''} ({reason}); put the four IDX files "
            f"({', '.join(FILES)}, plain or .gz) in a folder and pass --data-dir DIR or set SWEEP_DATA_DIR"
        ) from None
    arrays = dict(zip(FILES, (xtr, ytr, xte, yte), strict=True))
    return {name: _idx_bytes(a, name) for name, a in arrays.items()}


def load_mnist(data_dir: str | Path | None) -> Mnist:
    """Load and check MNIST from `data_dir` (IDX files, .gz or plain), or fetch it if None."""
    if data_dir is None:
        raw = _fetch()
    else:
        data_dir = Path(data_dir)
        if not data_dir.is_dir():
            raise SweepError(f"MNIST directory {data_dir} does not exist")
        raw = {name: _read_file(data_dir, name) for name in FILES}
    arrays = {name: _parse_idx(name, content) for name, content in raw.items()}
    md5 = {name: FILES[name][2] for name in FILES}  # equal to the canonical ones, checked above

    def split(images: np.ndarray, labels: np.ndarray) -> Split:
        # input_data's own scaling: float32 pixels times 1/255
        return Split(images.astype(np.float32) * np.float32(1.0 / 255.0), labels.astype(np.int64))

    train_x, train_y = arrays["train-images-idx3-ubyte"], arrays["train-labels-idx1-ubyte"]
    return Mnist(
        train=split(train_x[VALIDATION_SIZE:], train_y[VALIDATION_SIZE:]),
        val=split(train_x[:VALIDATION_SIZE], train_y[:VALIDATION_SIZE]),
        test=split(arrays["t10k-images-idx3-ubyte"], arrays["t10k-labels-idx1-ubyte"]),
        md5=md5,
        folder=None if data_dir is None else str(Path(data_dir).resolve()),
    )
