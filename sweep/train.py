"""Training one trial, top to bottom: seed, build, step through shuffled batches, evaluate.

`TrainConfig()` is the tutorial's recipe, and this is the only place it is written down.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, fields

import keras
import numpy as np
import tensorflow as tf

from sweep.data import Mnist, Split
from sweep.model import build_model
from sweep.stats import Accuracy

HYPERPARAMETERS = ("num_units", "learning_rate", "batch_size", "forget_bias")
FIRST_TEST_IMAGES = 128  # the tutorial measured its 99.21% on this many test images
EVAL_BATCH = 2500  # images per forward pass when evaluating: larger batches use the cores better
IMAGES_PER_CALL = 2048  # optimizer steps are taken in calls of about this many images: Python's
# per-call cost (~2 ms) is paid once per call, and a stop request waits for one call at most


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


class TrainingDiverged(Exception):
    """The loss became NaN or infinite: further steps cannot recover, so the trial stops."""


class TrainingStopped(Exception):
    """Stopped from outside between two steps (the study's time ran out): not the trial's fault."""


@dataclass(frozen=True)
class TrainResult:
    model: keras.Model
    accuracies: dict[str, Accuracy]  # val_accuracy, test_accuracy, test_accuracy_first128
    last_point: int  # the label of the final curve point: the step where the final metrics go
    train_loss: float  # mean loss over the last curve interval
    train_seconds: float  # optimizer steps only, not the evaluations between them
    samples_per_second: float

    @property
    def val_accuracy(self) -> float:
        return self.accuracies["val_accuracy"].value


def batch_order(n: int, batch_size: int, steps: int, seed: int) -> np.ndarray:
    """Indices of every batch, as `input_data.next_batch` drew them: each epoch is a fresh
    permutation, and a batch that runs off the end of one epoch continues into the next."""
    rng = np.random.default_rng(seed)
    needed = steps * batch_size
    stream = np.concatenate([rng.permutation(n) for _ in range(math.ceil(needed / n))])
    return stream[:needed].reshape(steps, batch_size)


def test_accuracies(model: keras.Model, data: Mnist) -> dict[str, Accuracy]:
    """The rules of method: all test images, and beside it the tutorial's first 128 (read off
    the same predictions)."""
    hits = _hits(model, data.test)
    return {"test_accuracy": Accuracy.of(hits), "test_accuracy_first128": Accuracy.of(hits[:FIRST_TEST_IMAGES])}


def accuracy(model: keras.Model, split: Split) -> Accuracy:
    return Accuracy.of(_hits(model, split))


def _hits(model: keras.Model, split: Split) -> np.ndarray:
    """Per image: is the model's top class its label?"""
    predict = _predict_fn(model)
    logits = [predict(split.x[start : start + EVAL_BATCH]).numpy() for start in range(0, len(split.y), EVAL_BATCH)]
    return np.argmax(np.concatenate(logits), axis=1) == split.y


def _predict_fn(model: keras.Model) -> Callable:
    """One traced forward pass per model, reused by every evaluation of it."""
    if not hasattr(model, "_sweep_predict"):
        model._sweep_predict = tf.function(
            lambda x: tf.concat([model(part, training=False) for part, in _halves(x)], axis=0),
            input_signature=[tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)],
        )
    return model._sweep_predict


def _halves(*tensors: tf.Tensor) -> list[tuple[tf.Tensor, ...]]:
    """The tensors' first halves along the batch, then their second halves: two independent
    chains of ops, which TensorFlow's executor runs on both cores at once (the LSTM op is
    single-threaded). Rows do not interact, so results do not depend on the split."""
    half = tf.shape(tensors[0])[0] // 2
    return [tuple(t[:half] for t in tensors), tuple(t[half:] for t in tensors)]


class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """PyTorch's OneCycleLR (its defaults, learning rate only): cosine from peak/25 up to the
    peak over the first 30% of steps, then cosine down to peak/25/1e4."""

    def __init__(self, peak: float, total_steps: int):
        self.peak, self.total_steps = peak, total_steps

    def __call__(self, step: tf.Tensor) -> tf.Tensor:
        step = tf.cast(step, tf.float32)
        up_end = max(0.3 * self.total_steps - 1, 1.0)
        start, end = self.peak / 25, self.peak / 25 / 1e4

        def cosine(a: float, b: float, fraction: tf.Tensor) -> tf.Tensor:
            return b + (a - b) / 2 * (1 + tf.cos(math.pi * tf.clip_by_value(fraction, 0.0, 1.0)))

        return tf.where(step <= up_end, cosine(start, self.peak, step / up_end),
                        cosine(self.peak, end, (step - up_end) / (self.total_steps - 1 - up_end)))

    def get_config(self) -> dict:
        return {"peak": self.peak, "total_steps": self.total_steps}


LR_SCHEDULES = {"constant": lambda peak, steps: peak, "one_cycle": OneCycle}


def make_optimizer(config: TrainConfig, steps: int) -> keras.optimizers.Optimizer:
    return keras.optimizers.Adam(
        LR_SCHEDULES[config.lr_schedule](config.learning_rate, steps),
        epsilon=1e-8,  # tf.train.AdamOptimizer's epsilon
        global_clipnorm=config.clip_norm,
    )


def make_trainer(config: TrainConfig, steps: int, images: Split) -> tuple[keras.Model, Callable[[np.ndarray], np.ndarray]]:
    """The trial's freshly seeded model and its trainer: run(batches) takes one row of training
    image indices per optimizer step, takes those steps in order in one call, and returns their
    losses. (bench/throughput.py times this same trainer against reference implementations.)"""
    keras.backend.clear_session(free_memory=False)  # its gc.collect() took ~0.2 s a trial; Python's GC runs anyway
    keras.utils.set_random_seed(config.seed)  # Python, NumPy and TensorFlow
    tf.config.experimental.enable_op_determinism()
    model = build_model(config.num_units, config.forget_bias)
    optimizer = make_optimizer(config, steps)
    optimizer.build(model.trainable_variables)
    run = _train_steps_fn(model, optimizer, images)
    return model, lambda batches: run(batches).numpy()


def steps_per_call(batch_size: int) -> int:
    """How many optimizer steps one call of the trainer takes (see IMAGES_PER_CALL)."""
    return max(1, IMAGES_PER_CALL // batch_size)


def _train_steps_fn(model: keras.Model, optimizer: keras.optimizers.Optimizer, images: Split) -> Callable:
    """Adam steps on the batches' mean softmax cross-entropy, in a loop inside one graph. The
    images stay in TensorFlow and each batch is gathered there: per step, no Python, no copies
    (together 1.3x the samples/s of one call per step with NumPy batches, measured on 2 cores).
    Each step runs as two halves (see `_halves`; 1.7x the samples/s of one chain). The loss and
    gradients are the full batch's, summed in a fixed order, so a trial stays deterministic and
    its weights do not depend on how its steps are grouped into calls."""
    x, y = _in_tensorflow(images)
    variables = model.trainable_variables

    def step(idx: tf.Tensor) -> tf.Tensor:
        xs, ys = tf.gather(x, idx), tf.gather(y, idx)
        with tf.GradientTape() as tape:
            losses = [tf.nn.sparse_softmax_cross_entropy_with_logits(yh, model(xh, training=True)) for xh, yh in _halves(xs, ys)]
            loss = (tf.reduce_sum(losses[0]) + tf.reduce_sum(losses[1])) / tf.cast(tf.shape(idx)[0], tf.float32)
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int64)])
    def run(batches: tf.Tensor) -> tf.Tensor:
        losses = tf.TensorArray(tf.float32, size=tf.shape(batches)[0])
        for k in tf.range(tf.shape(batches)[0]):
            tf.autograph.experimental.set_loop_options(parallel_iterations=1)  # step k+1 reads step k's weights
            losses = losses.write(k, step(batches[k]))
        return losses.stack()

    return run


_converted: dict[int, tuple[np.ndarray, tf.Tensor, tf.Tensor]] = {}  # id(images.x) -> (images.x, x, y)


def _in_tensorflow(images: Split) -> tuple[tf.Tensor, tf.Tensor]:
    """The images and labels as tensors: converted once per process (55,000 images are a 172 MB
    copy, 0.1-0.4 s) and reused while later trials train on the same arrays."""
    cached = _converted.get(id(images.x))  # the entry holds the array, so its id is not reused
    if cached is None:
        _converted.clear()
        cached = _converted[id(images.x)] = (images.x, tf.constant(images.x), tf.constant(images.y))
    return cached[1], cached[2]


def train(
    config: TrainConfig,
    mnist: Mnist,
    on_eval: Callable[[CurvePoint], None] | None = None,
    on_step: Callable[[], None] | None = None,
) -> TrainResult:
    """Train one trial. `on_eval` sees each point of the curves (labelled by step or epoch,
    see `curve_points`) as it is measured (to record it, or to prune the trial by raising); `on_step()` runs
    between calls of the trainer (at most IMAGES_PER_CALL images apart), where it is safe to stop by raising."""
    data = mnist.limit(config.train_limit, config.val_limit, config.test_limit)
    steps, points = config.steps(len(data.train.y)), config.curve_points(len(data.train.y))
    model, run = make_trainer(config, steps, data.train)
    batches = batch_order(len(data.train.y), config.batch_size, steps, config.seed)

    per_call = steps_per_call(config.batch_size)
    ends = sorted({*points, *range(per_call, steps, per_call)})  # a call ends at each curve point, or per_call steps on
    train_seconds, recent_losses, done = 0.0, [], 0
    for end in ends:
        started = time.perf_counter()
        losses = run(batches[done:end])
        train_seconds += time.perf_counter() - started
        if not np.isfinite(losses).all():
            first = int(np.argmin(np.isfinite(losses)))
            raise TrainingDiverged(f"diverged: loss is {losses[first]} at step {done + first + 1}")
        done = end
        if on_step is not None:
            on_step()
        recent_losses.extend(losses)
        if end in points:
            # The final validation accuracy, which chooses trials, is always on every image.
            val = accuracy(model, data.val if end == steps else data.val.head(config.curve_val_limit))
            train_loss, recent_losses = float(np.mean(recent_losses)), []
            if on_eval is not None:
                on_eval(CurvePoint(points[end], val, train_loss, train_seconds))

    return TrainResult(
        model=model,
        accuracies={"val_accuracy": val, **test_accuracies(model, data)},  # val: measured at the last step
        last_point=config.final_point(len(data.train.y)),
        train_loss=train_loss,
        train_seconds=train_seconds,
        samples_per_second=steps * config.batch_size / train_seconds,
    )
