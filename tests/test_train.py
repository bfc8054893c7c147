"""Training: the tutorial's batch order, seeded determinism, and real learning on a slice."""

from dataclasses import replace
from itertools import pairwise

import numpy as np
import pytest
import tensorflow as tf

from sweep.errors import TrainingStopped
from sweep.training.checkpoint import Checkpoint
from sweep.training.config import TrainConfig
from sweep.training.hooks import Hooks
from sweep.training.model import Backend
from sweep.training.train import OneCycle, Trainer, batch_order, loss_sum, rotated, shifted, train


class Recorded(Hooks):
    """What a training hands out, kept; with `stop_at`, it is stopped once that many steps are done."""

    def __init__(self, stop_at: int | None = None):
        self.points, self.checkpoints, self.stop_at = [], [], stop_at

    def on_curve_point(self, point):
        self.points.append(point)

    def on_checkpoint(self, checkpoint):
        self.checkpoints.append(checkpoint)

    def on_step(self, done, steps, last):
        if self.stop_at is not None and done >= self.stop_at:
            raise TrainingStopped("stopped")


SMALL = TrainConfig(num_units=16, train_steps=40, eval_every=20, train_limit=1000, val_limit=300, test_limit=300)
NATIVE, KERAS = Backend("native", 2), Backend("keras", 2)


def test_batch_order_reshuffles_each_epoch_and_straddles_epochs():
    order = batch_order(n=10, batch_size=4, steps=5, seed=0)  # 20 indices = 2 epochs exactly
    stream = order.ravel()
    assert sorted(stream[:10]) == list(range(10)) and sorted(stream[10:]) == list(range(10))
    assert list(stream[:10]) != list(stream[10:])  # a fresh permutation per epoch
    np.testing.assert_array_equal(order, batch_order(10, 4, 5, seed=0))
    assert not np.array_equal(order, batch_order(10, 4, 5, seed=1))


def test_same_config_gives_identical_weights_and_curve(mnist):
    hooks = (Recorded(), Recorded())
    runs = [train(SMALL, mnist, NATIVE, h) for h in hooks]
    for a, b in zip(runs[0].model.get_weights(), runs[1].model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    curves = [[(p.point, p.val_accuracy, p.train_loss) for p in h.points] for h in hooks]
    assert curves[0] == curves[1] and [p[0] for p in curves[0]] == [20, 40]
    assert runs[0].accuracies == runs[1].accuracies


def test_weights_do_not_depend_on_how_steps_are_grouped_into_calls(mnist):
    """train() takes its steps in calls of several; each step must still see the previous one's weights."""
    batches = batch_order(1000, 32, steps=12, seed=0)
    grouped, single = Trainer(SMALL, 12, mnist.train, NATIVE), Trainer(SMALL, 12, mnist.train, NATIVE)
    losses = [grouped.steps(batches[:5]), grouped.steps(batches[5:])]
    one_by_one = [single.steps(batches[k : k + 1]) for k in range(12)]
    np.testing.assert_array_equal(np.concatenate(losses), np.concatenate(one_by_one))
    for a, b in zip(grouped.model.get_weights(), single.model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert len(set(np.concatenate(losses).tolist())) == 12  # every step changed the weights


def test_another_seed_gives_other_weights(mnist):
    a = train(SMALL, mnist, NATIVE)
    b = train(TrainConfig(**{**SMALL.__dict__, "seed": 1}), mnist, NATIVE)
    assert not np.array_equal(a.model.get_weights()[0], b.model.get_weights()[0])


def test_training_learns_and_reports_counts(mnist):
    config = TrainConfig(
        num_units=32,
        learning_rate=0.005,
        train_steps=100,
        eval_every=50,
        train_limit=5000,
        val_limit=500,
        test_limit=1000,
    )
    result = train(config, mnist, KERAS)
    totals = {name: acc.total for name, acc in result.accuracies.items()}
    assert totals == {"val_accuracy": 500, "test_accuracy": 1000, "test_accuracy_first128": 128}
    assert result.accuracies["test_accuracy"].value > 0.5  # chance is 0.1
    assert result.train_seconds > 0 and result.samples_per_second > 0


def test_curve_points_before_the_last_may_use_part_of_the_validation_set(mnist):
    points = []
    recorded = Recorded()
    result = train(TrainConfig(**{**SMALL.__dict__, "curve_val_limit": 100}), mnist, NATIVE, recorded)
    points.extend(recorded.points)
    assert [(p.point, p.val.total) for p in points] == [(20, 100), (40, 300)]
    assert points[-1].val == result.accuracies["val_accuracy"]  # the final figure: every validation image


def test_curve_points_are_epochs_when_training_by_epochs():
    by_epochs = TrainConfig(epochs=3, batch_size=100)
    assert by_epochs.steps(1000) == 30 and by_epochs.curve_points(1000) == {10: 1, 20: 2, 30: 3}
    assert TrainConfig(epochs=2, batch_size=300).curve_points(1000) == {4: 1, 7: 2}  # batches run across epochs
    assert TrainConfig(train_steps=50, eval_every=20).curve_points(1000) == {20: 20, 40: 40, 50: 50}


def test_one_cycle_warms_up_to_the_peak_then_anneals():
    schedule = OneCycle(peak=0.01, total_steps=100)  # PyTorch's OneCycleLR: peak at step 0.3 * 100 - 1
    rates = [float(schedule(step)) for step in range(100)]
    close = lambda x: pytest.approx(x, rel=1e-5)  # noqa: E731  float32
    assert rates[0] == close(0.01 / 25) and rates[29] == close(0.01) and max(rates) == rates[29]
    assert rates[99] == close(0.01 / 25 / 1e4)
    assert all(a < b for a, b in pairwise(rates[:30])) and all(a > b for a, b in pairwise(rates[29:]))


def test_recipe_settings_reach_the_training(mnist):
    base = dict(num_units=16, epochs=2, batch_size=100, train_limit=1000, val_limit=300, test_limit=300)
    points = []
    recorded = Recorded()
    plain = train(TrainConfig(**base), mnist, NATIVE, recorded)
    points.extend(p.point for p in recorded.points)
    assert points == [1, 2] and plain.last_point == 2
    weights = plain.model.get_weights()[0]
    for change in (
        {"lr_schedule": "one_cycle"},
        {"clip_norm": 0.01},
        {"weight_decay": 0.1},
        {"label_smoothing": 0.1},
        {"shift_pixels": 1},
        {"rotate_degrees": 10.0},
        {"ema_momentum": 0.9},
    ):
        other = train(TrainConfig(**base, **change), mnist, NATIVE).model.get_weights()[0]
        assert not np.array_equal(weights, other), change


def test_both_backends_train_the_same_model_to_the_same_accuracy(mnist):
    """100 steps from the same initial weights: the two backends round differently, nothing more."""
    config = TrainConfig(
        num_units=32,
        learning_rate=0.003,
        train_steps=100,
        eval_every=100,
        train_limit=6400,
        val_limit=2000,
        test_limit=128,
    )
    native, stock = train(config, mnist, NATIVE), train(config, mnist, KERAS)
    assert type(native.model.get_layer("lstm")) is type(stock.model.get_layer("lstm"))  # the same model of record
    val = [r.accuracies["val_accuracy"].value for r in (native, stock)]
    assert min(val) > 0.6 and abs(val[0] - val[1]) <= 0.005, val
    assert native.train_loss == pytest.approx(stock.train_loss, rel=0.02)


def test_a_batch_cut_into_chains_loses_no_row(mnist):
    """More chains (cores) sum the same rows' losses in another order: the same loss to rounding."""
    batches = batch_order(1000, 31, steps=1, seed=0)
    losses = [Trainer(SMALL, 1, mnist.train, Backend("native", n)).steps(batches)[0] for n in (1, 2, 3, 7)]
    assert max(losses) - min(losses) < 1e-6 * losses[0], losses


def test_shifts_move_each_image_by_its_own_offset_within_the_limit():
    images = np.random.default_rng(0).random((64, 28, 28)).astype(np.float32)
    out = shifted(tf.constant(images), 2, tf.constant([3, 7], tf.int64)).numpy()
    seen = set()
    for image, moved in zip(images, out):
        padded = np.pad(image, 2)
        [offset] = [
            (dy, dx) for dy in range(5) for dx in range(5) if np.array_equal(padded[dy : dy + 28, dx : dx + 28], moved)
        ]
        seen.add(offset)
    assert len(seen) > 10  # not one offset for the whole batch
    assert not np.array_equal(
        out, shifted(tf.constant(images), 2, tf.constant([3, 8], tf.int64)).numpy()
    )  # a new step, new shifts


def _turned(image: np.ndarray, degrees: float) -> np.ndarray:
    """`image` turned about its centre, bilinear, zeros outside: a reference for `rotated`."""
    size, theta = image.shape[0], np.deg2rad(degrees)
    c = (size - 1) / 2
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    xin = np.cos(theta) * (x - c) - np.sin(theta) * (y - c) + c
    yin = np.sin(theta) * (x - c) + np.cos(theta) * (y - c) + c
    x0, y0 = np.floor(xin).astype(int), np.floor(yin).astype(int)

    def at(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:  # a pixel, or zero outside the image
        inside = (yy >= 0) & (yy < size) & (xx >= 0) & (xx < size)
        return np.where(inside, image[np.clip(yy, 0, size - 1), np.clip(xx, 0, size - 1)], 0.0)

    wx, wy = xin - x0, yin - y0
    top, bottom = (1 - wx) * at(y0, x0) + wx * at(y0, x0 + 1), (1 - wx) * at(y0 + 1, x0) + wx * at(y0 + 1, x0 + 1)
    return (1 - wy) * top + wy * bottom


def test_rotations_turn_each_image_by_its_own_angle_within_the_limit():
    images = np.random.default_rng(0).random((16, 28, 28)).astype(np.float32)
    out = rotated(tf.constant(images), 10.0, tf.constant([3, 7], tf.int64)).numpy()
    grid = np.linspace(-12, 12, 481)  # 0.05 degree steps, a little past the limit
    angles = []
    for image, turned in zip(images, out):
        errors = [np.abs(_turned(image, a) - turned).max() for a in grid]
        best = int(np.argmin(errors))
        assert errors[best] < 0.02, errors[best]  # one rotation about the centre explains the image
        angles.append(grid[best])
    assert max(abs(a) for a in angles) <= 10.05 and len(set(angles)) > 10, angles  # within the limit, each its own
    assert not np.array_equal(out, rotated(tf.constant(images), 10.0, tf.constant([3, 8], tf.int64)).numpy())


@pytest.mark.parametrize("augment", [{"shift_pixels": 1}, {"shift_pixels": 1, "rotate_degrees": 8.0}])
def test_augmented_training_does_not_depend_on_how_steps_are_grouped_into_calls(mnist, augment):
    config = replace(SMALL, **augment)
    batches = batch_order(1000, config.batch_size, steps=6, seed=0)
    whole, split = (Trainer(config, 6, mnist.train, NATIVE) for _ in range(2))
    whole.steps(batches)
    split.steps(batches[:2]), split.steps(batches[2:])
    assert all(np.array_equal(a, b) for a, b in zip(whole.model.get_weights(), split.model.get_weights()))


def test_label_smoothing_is_cross_entropy_against_mixed_targets():
    logits = tf.constant([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]])
    labels = tf.constant([0, 2])
    p = tf.nn.log_softmax(logits).numpy()
    expected = -sum(0.8 * p[i, y] + 0.2 / 3 * p[i].sum() for i, y in enumerate([0, 2]))
    assert float(loss_sum(labels, logits, 0.2)) == pytest.approx(expected, rel=1e-6)
    assert float(loss_sum(labels, logits, 0.0)) == pytest.approx(-(p[0, 0] + p[1, 2]), rel=1e-6)


def test_a_training_resumed_from_any_checkpoint_ends_bitwise_as_one_that_never_stopped(mnist):
    """Every recipe addition on (the schedule, clipping, weight decay, shifts, rotations, the
    moving average): its state is in the checkpoint, or derived from (seed, step). Stopped at a curve
    point, and between two, the resumed training ends with the same weights, curve and counts."""
    config = TrainConfig(
        num_units=16,
        epochs=3,
        eval_points=6,
        batch_size=100,
        train_limit=1000,
        val_limit=300,
        test_limit=300,
        lr_schedule="one_cycle",
        clip_norm=1.0,
        weight_decay=0.01,
        shift_pixels=1,
        rotate_degrees=10.0,
        ema_momentum=0.9,
    )
    whole = Recorded()
    straight = train(config, mnist, NATIVE, whole)
    for stop_after in (10, 18):  # a curve point (every 5 steps), and between two (calls end at 5, 10, 15, 20, 25, 30)
        stopped = Recorded(stop_at=stop_after)
        with pytest.raises(TrainingStopped):
            train(config, mnist, NATIVE, stopped)
        checkpoint = Checkpoint.from_bytes(stopped.checkpoints[-1].to_bytes())
        assert checkpoint.step == (10 if stop_after == 10 else 20) and checkpoint.config == config
        rest = Recorded()
        resumed = train(config, mnist, NATIVE, rest, resume=checkpoint)
        assert [(p.point, p.val, p.train_loss, p.train_images) for p in [*checkpoint.curve, *rest.points]] == [
            (p.point, p.val, p.train_loss, p.train_images) for p in whole.points
        ]
        assert all(
            np.array_equal(a, b) for a, b in zip(resumed.model.get_weights(), straight.model.get_weights(), strict=True)
        )
        assert resumed.accuracies == straight.accuracies and resumed.train_images == straight.train_images == 30 * 100


def test_a_checkpoint_is_refused_when_damaged_or_of_another_configuration(mnist):
    from sweep.training.checkpoint import CheckpointError

    recorded = Recorded()
    train(replace(SMALL, train_steps=40), mnist, NATIVE, recorded)
    [checkpoint] = recorded.checkpoints  # at the first of two curve points: the last one ends the training
    data = checkpoint.to_bytes()
    assert Checkpoint.from_bytes(data).weights.keys() == checkpoint.weights.keys()
    for spoiled in (
        data[: len(data) // 2],
        data[:100] + bytes([data[100] ^ 0xFF]) + data[101:],
        b"",
        b"not a checkpoint",
    ):
        with pytest.raises(CheckpointError):
            Checkpoint.from_bytes(spoiled)
    checkpoint.check_fits(replace(SMALL, train_steps=40))
    with pytest.raises(CheckpointError, match="another configuration \\(learning_rate, seed differ\\)"):
        checkpoint.check_fits(replace(SMALL, train_steps=40, seed=1, learning_rate=0.01))
