"""Training: the tutorial's batch order, seeded determinism, and real learning on a slice."""

import numpy as np

from sweep.train import TrainConfig, batch_order, train

SMALL = TrainConfig(num_units=16, train_steps=40, eval_every=20, train_limit=1000, val_limit=300, test_limit=300)


def test_batch_order_reshuffles_each_epoch_and_straddles_epochs():
    order = batch_order(n=10, batch_size=4, steps=5, seed=0)  # 20 indices = 2 epochs exactly
    stream = order.ravel()
    assert sorted(stream[:10]) == list(range(10)) and sorted(stream[10:]) == list(range(10))
    assert list(stream[:10]) != list(stream[10:])  # a fresh permutation per epoch
    np.testing.assert_array_equal(order, batch_order(10, 4, 5, seed=0))
    assert not np.array_equal(order, batch_order(10, 4, 5, seed=1))


def test_same_config_gives_identical_weights_and_curve(mnist):
    curves = ([], [])
    runs = [train(SMALL, mnist, on_eval=lambda *p, c=c: c.append(p)) for c in curves]
    for a, b in zip(runs[0].model.get_weights(), runs[1].model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert curves[0] == curves[1] and [p[0] for p in curves[0]] == [20, 40]
    assert runs[0].accuracies == runs[1].accuracies


def test_another_seed_gives_other_weights(mnist):
    a = train(SMALL, mnist)
    b = train(TrainConfig(**{**SMALL.__dict__, "seed": 1}), mnist)
    assert not np.array_equal(a.model.get_weights()[0], b.model.get_weights()[0])


def test_training_learns_and_reports_counts(mnist):
    config = TrainConfig(num_units=32, learning_rate=0.005, train_steps=100, eval_every=50,
                         train_limit=5000, val_limit=500, test_limit=1000)
    result = train(config, mnist)
    totals = {name: acc.total for name, acc in result.accuracies.items()}
    assert totals == {"val_accuracy": 500, "test_accuracy": 1000, "test_accuracy_first128": 128}
    assert result.accuracies["test_accuracy"].value > 0.5  # chance is 0.1
    assert result.train_seconds > 0 and result.samples_per_second > 0
