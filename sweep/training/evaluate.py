"""Evaluation: the model of record's predictions on a split, as counts of correct images.

Evaluation always calls the model itself (never a backend's training path), so the accuracies
logged are those of the model anyone loads.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from sweep.stats import FIRST128_ACCURACY, TEST_ACCURACY, Accuracy
from sweep.training.config import FIRST_TEST_IMAGES
from sweep.training.data import Split

EVAL_BATCH = 2500  # images per forward pass: larger batches use the cores better


def slices(n: tf.Tensor, chains: int, *tensors: tf.Tensor) -> list[tuple[tf.Tensor, ...]]:
    """The tensors cut along the batch into `chains` consecutive row slices: independent chains
    of ops, which TensorFlow's executor runs on as many cores at once. Rows do not interact, so
    each row's result does not depend on the cut."""
    bounds = [n * k // chains for k in range(chains + 1)]
    return [tuple(t[bounds[k] : bounds[k + 1]] for t in tensors) for k in range(chains)]


class Predictor:
    """A model's traced forward pass over `chains` slices, reused by every evaluation of it."""

    def __init__(self, model: keras.Model, chains: int):
        self.model = model
        self._predict = tf.function(
            lambda x: tf.concat([model(part, training=False) for (part,) in slices(tf.shape(x)[0], chains, x)], axis=0),
            input_signature=[tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)],
        )

    def classes(self, split: Split) -> np.ndarray:
        """Per image: the model's top class (uint8)."""
        logits = [self._predict(split.x[i : i + EVAL_BATCH]).numpy() for i in range(0, len(split.y), EVAL_BATCH)]
        return np.argmax(np.concatenate(logits), axis=1).astype(np.uint8)

    def accuracy(self, split: Split) -> Accuracy:
        return Accuracy.of(self.classes(split) == split.y)


def test_accuracies(classes: np.ndarray, test: Split) -> dict[str, Accuracy]:
    """The rules of method: all test images, and beside it the tutorial's first 128, read off the
    same predictions."""
    hits = classes == test.y
    return {TEST_ACCURACY: Accuracy.of(hits), FIRST128_ACCURACY: Accuracy.of(hits[:FIRST_TEST_IMAGES])}
