"""The recipe of one trial (`TrainConfig`) and what training reports back, with no TensorFlow:
reading a study file, MLflow or a report never waits for it to import.

`TrainConfig()` is the tutorial's recipe, and this is the only place it is written down.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from sweep.stats import Accuracy

FIRST_TEST_IMAGES = 128  # the tutorial measured its 99.21% on this many test images
LR_SCHEDULES = ("constant", "one_cycle")
HEARTBEAT_INTERVAL = 20  # seconds between a running trial's heartbeats (--heartbeat-interval)
GRACE_PERIOD = 120  # a trial silent this long belongs to a lost worker (--grace-period)
LSTM_BACKENDS = ("auto", "native", "keras")  # what a user may ask for (sweep.model chooses; a run records native or keras)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a trial's weights, and where its curve is measured (eval_every,
    curve_val_limit). The defaults are the tutorial's recipe. A field added later must default
    to the earlier behaviour: runs logged before it reproduce with it."""

    num_units: int = 128
    learning_rate: float = 0.001
    batch_size: int = 128
    forget_bias: float = 1.0
    train_steps: int = 799  # `iter = 1; while iter < 800`
    seed: int = 0
    eval_every: int = 200  # steps between points of the validation curve
    curve_val_limit: int | None = None  # given: curve points before the last use only the first validation images
    # Beyond the tutorial: a longer budget for studies that aim at the claim on the full test set.
    epochs: int | None = None  # given: train this many passes over the training images, not train_steps
    lr_schedule: str = "constant"  # or "one_cycle": warm up to learning_rate, then anneal to ~0
    clip_norm: float | None = None  # given: clip the gradients' global norm to this
    weight_decay: float | None = None  # given: Adam with decoupled weight decay (AdamW) of this rate
    label_smoothing: float = 0.0  # cross-entropy against targets this much mixed with the uniform
    shift_pixels: int = 0  # shift each training image by up to this many pixels each way, afresh each step
    ema_momentum: float | None = None  # given: the trial's weights are this moving average of the trained ones
    train_limit: int | None = None  # None: the whole split; a number: its first images
    val_limit: int | None = None
    test_limit: int | None = None

    @classmethod
    def field_types(cls) -> dict[str, type]:
        """The Python type each field takes ("int | None" fields take int)."""
        hints = {"int": int, "float": float, "str": str, "int | None": int, "float | None": float}
        return {f.name: hints[f.type] for f in fields(cls)}

    def steps(self, train_images: int) -> int:
        """Optimizer steps: train_steps, or as many as `epochs` passes need."""
        return self.train_steps if self.epochs is None else math.ceil(self.epochs * train_images / self.batch_size)

    def curve_points(self, train_images: int) -> dict[int, int]:
        """Optimizer step -> the label of the curve point measured after it. Trained by epochs,
        points are epochs, so trials with different batch sizes meet at the same points (the
        pruner compares trials point by point); otherwise, every eval_every steps and the last."""
        if self.epochs is not None:
            return {math.ceil(e * train_images / self.batch_size): e for e in range(1, self.epochs + 1)}
        steps = self.steps(train_images)
        return {k: k for k in [*range(self.eval_every, steps, self.eval_every), steps]}

    def final_point(self, train_images: int) -> int:
        """The last curve point's label: where a trial's final metrics are logged."""
        return self.curve_points(train_images)[self.steps(train_images)]


@dataclass(frozen=True)
class CurvePoint:
    point: int  # the step, or the epoch when training by epochs
    val: Accuracy  # on all validation images at the last point; before it, on the first curve_val_limit
    train_loss: float  # mean over the steps since the previous point
    train_seconds: float  # so far

    @property
    def val_accuracy(self) -> float:
        return self.val.value


@dataclass(frozen=True)
class TrainResult:
    model: Any  # a keras.Model: the model of record (stock Keras for native and keras, BasicLSTM for v1)
    accuracies: dict[str, Accuracy]  # val_accuracy, test_accuracy, test_accuracy_first128
    last_point: int  # the label of the final curve point: the step where the final metrics go
    train_loss: float  # mean loss over the last curve interval
    train_seconds: float  # optimizer steps only, not the evaluations between them
    samples_per_second: float

    @property
    def val_accuracy(self) -> float:
        return self.accuracies["val_accuracy"].value
