"""Training one trial, top to bottom: seed, build, step through shuffled batches, evaluate.

The recipe is a `TrainConfig`; how the LSTM is computed is a `Backend`. A training reports
through its `Hooks`: each curve point, a `Checkpoint` after each curve point and when it is
stopped, and its progress between steps. It resumes from a checkpoint exactly where it stood.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from sweep.errors import TrainingDiverged, TrainingStopped
from sweep.stats import VAL_ACCURACY, Accuracy
from sweep.training.checkpoint import Checkpoint
from sweep.training.config import CurvePoint, TrainConfig, TrainResult
from sweep.training.data import Mnist, Split
from sweep.training.evaluate import Predictor, slices, test_accuracies
from sweep.training.hooks import Hooks
from sweep.training.model import Backend, Forward

IMAGES_PER_CALL = 2048  # optimizer steps are taken in calls of about this many images: Python's
# per-call cost (~2 ms) is paid once per call, and a stop request waits for one call at most


def batch_order(n: int, batch_size: int, steps: int, seed: int) -> np.ndarray:
    """Indices of every batch, as `input_data.next_batch` drew them: each epoch is a fresh
    permutation, and a batch that runs off the end of one epoch continues into the next."""
    rng = np.random.default_rng(seed)
    needed = steps * batch_size
    stream = np.concatenate([rng.permutation(n) for _ in range(math.ceil(needed / n))])
    return stream[:needed].reshape(steps, batch_size)


def steps_per_call(batch_size: int) -> int:
    """How many optimizer steps one call of the trainer takes (see IMAGES_PER_CALL)."""
    return max(1, IMAGES_PER_CALL // batch_size)


class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """PyTorch's OneCycleLR (learning rate only; by default, its defaults): cosine from peak/25 up
    to the peak over the first `pct_start` of the steps (30%), then cosine down to
    peak/25/`final_div` (1e4)."""

    def __init__(self, peak: float, total_steps: int, pct_start: float = 0.3, final_div: float = 1e4):
        self.peak, self.total_steps, self.pct_start, self.final_div = peak, total_steps, pct_start, final_div

    def __call__(self, step: tf.Tensor) -> tf.Tensor:
        step = tf.cast(step, tf.float32)
        up_end = max(self.pct_start * self.total_steps - 1, 1.0)
        start, end = self.peak / 25, self.peak / 25 / self.final_div

        def cosine(a: float, b: float, fraction: tf.Tensor) -> tf.Tensor:
            return b + (a - b) / 2 * (1 + tf.cos(math.pi * tf.clip_by_value(fraction, 0.0, 1.0)))

        return tf.where(
            step <= up_end,
            cosine(start, self.peak, step / up_end),
            cosine(self.peak, end, (step - up_end) / (self.total_steps - 1 - up_end)),
        )

    def get_config(self) -> dict:
        return {
            "peak": self.peak,
            "total_steps": self.total_steps,
            "pct_start": self.pct_start,
            "final_div": self.final_div,
        }


def learning_rate(config: TrainConfig, steps: int) -> float | OneCycle:
    """The learning rate, or its schedule over `steps` (config.LR_SCHEDULES names them)."""
    if config.lr_schedule != "one_cycle":
        return config.learning_rate
    return OneCycle(config.learning_rate, steps, config.one_cycle_pct_start, config.one_cycle_final_div)


def make_optimizer(config: TrainConfig, steps: int) -> keras.optimizers.Optimizer:
    """Adam as the tutorial used it, plus what the recipe adds: a schedule, clipping, decoupled
    weight decay (Keras applies it as AdamW does), a moving average of the weights."""
    ema = {} if config.ema_momentum is None else {"use_ema": True, "ema_momentum": config.ema_momentum}
    return keras.optimizers.Adam(
        learning_rate(config, steps),
        beta_1=config.adam_beta1,
        beta_2=config.adam_beta2,
        epsilon=config.adam_epsilon,
        global_clipnorm=config.clip_norm,
        weight_decay=config.weight_decay,
        **ema,
    )


def shifted(images: tf.Tensor, pixels: int, seed: tf.Tensor) -> tf.Tensor:
    """Each image moved by its own random whole-pixel offset in [-pixels, pixels] down and
    across, zeros filling in. Drawn from (seed, step) alone, so a trial's augmentation does not
    depend on how its steps are grouped into calls."""
    n, size = tf.shape(images)[0], images.shape[1]
    offsets = tf.random.stateless_uniform([n, 2], seed, minval=0, maxval=2 * pixels + 1, dtype=tf.int32)
    padded = tf.pad(images, [[0, 0], [pixels, pixels], [pixels, pixels]])
    window = tf.range(size)[None, :]
    rows = tf.gather(padded, offsets[:, :1] + window, axis=1, batch_dims=1)
    return tf.gather(rows, offsets[:, 1:] + window, axis=2, batch_dims=1)


def rotated(images: tf.Tensor, degrees: float, seed: tf.Tensor) -> tf.Tensor:
    """Each image turned about its centre by its own random angle in [-degrees, degrees],
    sampled bilinearly, zeros filling in. Drawn from (seed, step) alone, as `shifted`'s offsets."""
    n, size = tf.shape(images)[0], images.shape[1]
    angles = tf.random.stateless_uniform([n], seed, minval=-degrees, maxval=degrees) * (math.pi / 180)
    cos, sin, zeros, c = tf.cos(angles), tf.sin(angles), tf.zeros([n]), (size - 1) / 2
    # output pixel (x, y) reads the input at (cos (x-c) - sin (y-c) + c, sin (x-c) + cos (y-c) + c)
    transforms = tf.stack([cos, -sin, c - c * cos + c * sin, sin, cos, c - c * sin - c * cos, zeros, zeros], axis=1)
    turned = tf.raw_ops.ImageProjectiveTransformV3(
        images=images[..., None],
        transforms=transforms,
        output_shape=[size, size],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )
    return turned[..., 0]


def loss_sum(labels: tf.Tensor, logits: tf.Tensor, smoothing: float) -> tf.Tensor:
    """Summed softmax cross-entropy; with smoothing, against (1 - s) one-hot + s uniform."""
    if not smoothing:
        return tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
    classes = logits.shape[-1]
    targets = tf.one_hot(labels, classes) * (1 - smoothing) + smoothing / classes
    return tf.reduce_sum(tf.nn.softmax_cross_entropy_with_logits(targets, logits))


class Trainer:
    """One trial's freshly seeded model, its optimizer, and its compiled steps.

    `trainer.steps(batches)` takes one optimizer step per row of training image indices, in
    order, in one call, and returns their losses. (bench/throughput.py times this same trainer
    against reference implementations.)"""

    def __init__(self, config: TrainConfig, total_steps: int, images: Split, backend: Backend):
        keras.backend.clear_session(free_memory=False)  # its gc.collect() took ~0.2 s a trial; Python's GC runs anyway
        keras.utils.set_random_seed(config.seed)  # Python, NumPy and TensorFlow
        tf.config.experimental.enable_op_determinism()
        self.config = config
        self.model, forward = backend.build(config.num_units, config.forget_bias, config.head_init_stddev)
        self.chains = min(backend.chains, config.batch_size)
        self.optimizer = make_optimizer(config, total_steps)
        self.optimizer.build(self.model.trainable_variables)
        self.predictor = Predictor(self.model, backend.chains)
        self._run = self._compile(forward, *images.tensors)

    def steps(self, batches: np.ndarray) -> np.ndarray:
        return self._run(batches).numpy()

    def variables(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """The model's and the optimizer's variables, by path: everything a step reads."""
        return ({v.path: v.numpy() for v in self.model.weights}, {v.path: v.numpy() for v in self.optimizer.variables})

    def restore(self, weights: dict[str, np.ndarray], optimizer: dict[str, np.ndarray]) -> None:
        """Set every variable to a checkpoint's value (exactly: the bits are copied)."""
        for variables, values in ((self.model.weights, weights), (self.optimizer.variables, optimizer)):
            if sorted(v.path for v in variables) != sorted(values):
                raise ValueError("the checkpoint's variables are not this model's")
            for v in variables:
                v.assign(values[v.path])

    def finish(self) -> None:
        """After the last step: the model takes its final weights (the moving average, if any)."""
        self.optimizer.finalize_variable_values(self.model.trainable_variables)

    def _compile(self, forward: Forward, x: tf.Tensor, y: tf.Tensor) -> Callable[[np.ndarray], tf.Tensor]:
        """Adam steps on the batches' mean softmax cross-entropy, in a loop inside one graph. The
        images stay in TensorFlow and each batch is gathered there: per step, no Python, no
        copies. The loss and gradients are the full batch's, its slices summed in a fixed
        order, so a trial stays deterministic and its weights do not depend on how its steps
        are grouped into calls."""
        variables, optimizer, chains, config = self.model.trainable_variables, self.optimizer, self.chains, self.config

        def step(idx: tf.Tensor) -> tf.Tensor:
            xs, ys = tf.gather(x, idx), tf.gather(y, idx)
            seed = tf.stack([tf.constant(config.seed, tf.int64), tf.convert_to_tensor(optimizer.iterations)])
            if config.rotate_degrees:
                xs = rotated(xs, config.rotate_degrees, tf.random.experimental.stateless_fold_in(seed, 1))
            if config.shift_pixels:
                xs = shifted(xs, config.shift_pixels, seed)
            with tf.GradientTape() as tape:
                sums = [
                    loss_sum(yk, forward(xk, True), config.label_smoothing)
                    for xk, yk in slices(tf.shape(idx)[0], chains, xs, ys)
                ]
                total = sums[0]
                for s in sums[1:]:
                    total += s
                loss = total / tf.cast(tf.shape(idx)[0], tf.float32)
            optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))  # noqa: B905  AutoGraph's zip takes no strict
            return loss

        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int64)])
        def run(batches: tf.Tensor) -> tf.Tensor:
            losses = tf.TensorArray(tf.float32, size=tf.shape(batches)[0])
            for k in tf.range(tf.shape(batches)[0]):
                tf.autograph.experimental.set_loop_options(parallel_iterations=1)  # step k+1 reads step k's weights
                losses = losses.write(k, step(batches[k]))
            return losses.stack()

        return run


def train(
    config: TrainConfig, mnist: Mnist, backend: Backend, hooks: Hooks | None = None, resume: Checkpoint | None = None
) -> TrainResult:
    """Train one configuration on its validation fold of `mnist`, reporting to `hooks` (see
    `Hooks`): each point of the curves (labelled by step, epoch or percent, see
    `TrainConfig.curve_points`), a checkpoint after each point but the last and where it is
    stopped, its progress between steps. `resume` continues from such a checkpoint (of this
    configuration: `Checkpoint.check_fits`)."""
    hooks = hooks or Hooks()
    data = mnist.fold(config.val_fold).limit(config.train_limit, config.val_limit, config.test_limit)
    steps, points = config.steps(len(data.train.y)), config.curve_points(len(data.train.y))
    trainer = Trainer(config, steps, data.train, backend)
    batches = batch_order(len(data.train.y), config.batch_size, steps, config.seed)
    done, curve, recent_losses, train_seconds = 0, [], [], 0.0
    if resume is not None:
        trainer.restore(resume.weights, resume.optimizer)
        done, curve, recent_losses, train_seconds = (
            resume.step,
            list(resume.curve),
            list(resume.pending_losses),
            resume.train_seconds,
        )
    started_at, seconds_before = done, train_seconds

    def checkpoint() -> Checkpoint:
        return Checkpoint(
            config,
            (backend.name, trainer.chains),
            done,
            tuple(curve),
            np.asarray(recent_losses, np.float32),
            train_seconds,
            *trainer.variables(),
        )

    def measure(val: Accuracy, final: bool = False) -> CurvePoint:
        nonlocal recent_losses
        point = CurvePoint(
            points[done], val, float(np.mean(recent_losses)), train_seconds, done * config.batch_size, final
        )
        recent_losses = []
        curve.append(point)
        hooks.on_curve_point(point)
        return point

    per_call = steps_per_call(config.batch_size)
    ends = sorted({*points, *range(per_call, steps, per_call)})  # a call ends at each curve point, or per_call steps on
    for end in (e for e in ends if e > done):
        started = time.perf_counter()
        losses = trainer.steps(batches[done:end])
        train_seconds += time.perf_counter() - started
        if not np.isfinite(losses).all():
            first = int(np.argmin(np.isfinite(losses)))
            raise TrainingDiverged(f"diverged: loss is {losses[first]} at step {done + first + 1}")
        done = end
        recent_losses.extend(losses)
        at_point = end in points and end < steps  # the last point comes after the loop, on the final weights
        if at_point:
            measure(trainer.predictor.accuracy(data.val.head(config.curve_val_limit)))
            hooks.on_checkpoint(checkpoint())
        try:
            hooks.on_step(done, steps, curve[-1] if curve else None)
        except (TrainingStopped, KeyboardInterrupt):
            if not at_point:  # at a point, it was just handed out
                hooks.on_checkpoint(checkpoint())
            raise

    trainer.finish()
    val_classes, test_classes = trainer.predictor.classes(data.val), trainer.predictor.classes(data.test)
    last = measure(
        Accuracy.of(val_classes == data.val.y), final=True
    )  # the one that chooses: on every validation image
    return TrainResult(
        model=trainer.model,
        accuracies={VAL_ACCURACY: last.val, **test_accuracies(test_classes, data.test)},
        last_point=last.point,
        train_loss=last.train_loss,
        train_seconds=train_seconds,
        train_images=steps * config.batch_size,
        samples_per_second=(steps - started_at) * config.batch_size / max(train_seconds - seconds_before, 1e-9),
        predictions={
            "val": val_classes,
            "val_labels": data.val.y.astype(np.uint8),
            "test": test_classes,
            "test_labels": data.test.y.astype(np.uint8),
        },
    )
