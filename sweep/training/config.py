"""The recipe of one training (`TrainConfig`) and what training reports back, with no TensorFlow:
reading a study file, MLflow or a report never waits for it to import.

`TrainConfig()` is the tutorial's recipe, and this is the only place it is written down.
"""

from __future__ import annotations

import math
import platform
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from sweep.stats import VAL_ACCURACY, Accuracy

FIRST_TEST_IMAGES = 128  # the tutorial measured its 99.21% on this many test images
LR_SCHEDULES = ("constant", "one_cycle")
LSTM_BACKENDS = (
    "auto",
    "native",
    "keras",
)  # what a user may ask for (sweep.model chooses; a run records native or keras)


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
    rotate_degrees: float = 0.0  # turn each training image by up to this many degrees either way, afresh each step
    ema_momentum: float | None = None  # given: the trial's weights are this moving average of the trained ones
    eval_points: int | None = None  # given: this many curve points, evenly over the schedule, labelled by its percent
    adam_beta1: float = 0.9  # Adam's moment decays and epsilon (tf.train.AdamOptimizer's defaults)
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    one_cycle_pct_start: float = (
        0.3  # the one-cycle schedule's warm-up, as a fraction of the steps (PyTorch's pct_start)
    )
    one_cycle_final_div: float = 1e4  # and its final rate: the start rate (peak / 25) divided by this
    head_init_stddev: float = 1.0  # the dense head's weights and bias start as N(0, this^2) draws (the tutorial's: 1)
    val_fold: int = 0  # which 5,000 training-file images validate (0: the first, the tutorial's; see Mnist.fold)
    train_limit: int | None = None  # None: the whole split; a number: its first images
    val_limit: int | None = None
    test_limit: int | None = None

    @classmethod
    def field_types(cls) -> dict[str, type]:
        """The Python type each field takes ("int | None" fields take int)."""
        hints = {"int": int, "float": float, "str": str, "int | None": int, "float | None": float}
        return {f.name: hints[f.type] for f in fields(cls)}

    @classmethod
    def optional_fields(cls) -> set[str]:
        """The fields that may be None (unset)."""
        return {f.name for f in fields(cls) if f.type.endswith("| None")}

    def steps(self, train_images: int) -> int:
        """Optimizer steps: train_steps, or as many as `epochs` passes need."""
        return self.train_steps if self.epochs is None else math.ceil(self.epochs * train_images / self.batch_size)

    def curve_points(self, train_images: int) -> dict[int, int]:
        """Optimizer step -> the label of the curve point measured after it. The pruner compares
        trials at points with the same label, so labels say where a trial is in its schedule:
        with eval_points, the percent of the schedule done (trials of different lengths meet at
        the same fractions of their own schedules, at the same phase of their learning rate);
        trained by epochs, the epoch (trials with different batch sizes meet); otherwise the
        step, every eval_every steps and the last."""
        steps = self.steps(train_images)
        if self.eval_points is not None:
            return {
                math.ceil(k * steps / self.eval_points): round(100 * k / self.eval_points)
                for k in range(1, self.eval_points + 1)
            }
        if self.epochs is not None:
            return {math.ceil(e * train_images / self.batch_size): e for e in range(1, self.epochs + 1)}
        return {k: k for k in [*range(self.eval_every, steps, self.eval_every), steps]}

    def curve_unit(self) -> str:
        """What the curve's labels count, for an axis: "% of the schedule", "epoch" or "step"."""
        return "% of the schedule" if self.eval_points is not None else "epoch" if self.epochs is not None else "step"

    def point_name(self, label: int) -> str:
        """A curve point, for people: "step 200", "epoch 4" or "30% of the schedule"."""
        return f"{label}% of the schedule" if self.eval_points is not None else f"{self.curve_unit()} {label}"

    def images(self, train_images: int) -> int:
        """Training images one training of this configuration goes through: steps x batch."""
        return self.steps(train_images) * self.batch_size

    def final_point(self, train_images: int) -> int:
        """The last curve point's label: where a trial's final metrics are logged."""
        return self.curve_points(train_images)[self.steps(train_images)]


def cpuinfo(field: str) -> str:
    """A field of /proc/cpuinfo's first processor ("" where there is none)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return ""
    return next((line.split(":", 1)[1].strip() for line in lines if line.split(":")[0].strip() == field), "")


def cpu_model() -> str:
    """The CPU's model name (else the machine type). Minutes are only comparable on one CPU,
    and float rounding, so a weight's last bits, may depend on it."""
    return cpuinfo("model name") or platform.machine()


@dataclass(frozen=True)
class CurvePoint:
    point: int  # its label: the step, the epoch, or the percent of the schedule (TrainConfig.curve_points)
    val: Accuracy  # on all validation images at the last point; before it, on the first curve_val_limit
    train_loss: float  # mean over the steps since the previous point
    train_seconds: float  # so far
    train_images: int  # so far: steps taken x batch size
    final: bool = False  # the last point: measured on the final weights and all validation images

    @property
    def val_accuracy(self) -> float:
        return self.val.value


@dataclass(frozen=True)
class TrainResult:
    model: Any  # a keras.Model: the model of record (stock Keras for native and keras, BasicLSTM for v1)
    accuracies: dict[str, Accuracy]  # by name: sweep.stats.ACCURACIES
    last_point: int  # the label of the final curve point: the step where the final metrics go
    train_loss: float  # mean loss over the last curve interval
    train_seconds: float  # optimizer steps only, not the evaluations between them
    train_images: int  # steps x batch size: what one training of this configuration costs
    samples_per_second: float
    predictions: dict[str, Any]  # "val", "test": each image's predicted class; "val_labels", "test_labels" (uint8)

    @property
    def val_accuracy(self) -> float:
        return self.accuracies[VAL_ACCURACY].value
