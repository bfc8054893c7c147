"""Accuracies as counts, so every figure can carry its set size and a 95% interval; the three
accuracies every evaluation gives; paired comparisons of two models on the same images; and the
count that measures cost, training images."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import numpy as np

# The three accuracies of every evaluation, by name (also their MLflow metric names): validation
# chooses, all test images report, and the first 128 test images give the tutorial's own figure.
VAL_ACCURACY, TEST_ACCURACY, FIRST128_ACCURACY = "val_accuracy", "test_accuracy", "test_accuracy_first128"
ACCURACIES = (VAL_ACCURACY, TEST_ACCURACY, FIRST128_ACCURACY)


@dataclass(frozen=True)
class Accuracy:
    correct: int
    total: int

    @classmethod
    def of(cls, hits: np.ndarray) -> Accuracy:
        """From a boolean array: one entry per image, True where the prediction was right."""
        return cls(int(hits.sum()), len(hits))

    @property
    def value(self) -> float:
        return self.correct / self.total

    def interval(self, alpha: float = 0.05) -> tuple[float, float]:
        """Wilson score interval: sound near 100% and on small sets such as the first 128."""
        from statsmodels.stats.proportion import proportion_confint  # 0.7 s to import: only when asked

        low, high = proportion_confint(self.correct, self.total, alpha=alpha, method="wilson")
        return float(low), float(high)

    def __str__(self) -> str:
        low, high = self.interval()
        return f"{100 * self.value:.2f}% [{100 * low:.2f}, {100 * high:.2f}] n={self.total}"


def seed_interval(values: list[float], alpha: float = 0.05) -> tuple[float, float]:
    """The t-interval of the mean of values measured once per seed: how far the mean over these
    seeds may sit from the mean over all seeds. (It says nothing of the test set's own sampling
    error, which every seed shares: that is each accuracy's Wilson interval.)"""
    from scipy.stats import t

    if len(values) < 2:
        return float("nan"), float("nan")
    mean = statistics.mean(values)
    half = t.ppf(1 - alpha / 2, len(values) - 1) * statistics.stdev(values) / len(values) ** 0.5
    return mean - half, mean + half


@dataclass(frozen=True)
class Paired:
    """Two models scored on the same images: only the images where one is right and the other
    wrong say which is better."""

    only_a: int  # images model A gets right and model B wrong
    only_b: int  # the other way round

    @classmethod
    def of(cls, hits_a: np.ndarray, hits_b: np.ndarray) -> Paired:
        if hits_a.shape != hits_b.shape:
            raise ValueError(f"paired on different images: {hits_a.shape} and {hits_b.shape}")
        return cls(int(np.sum(hits_a & ~hits_b)), int(np.sum(~hits_a & hits_b)))

    @property
    def p_value(self) -> float:
        """McNemar's exact test (two-sided): under "equally good", each discordant image is a
        fair coin's toss between A and B."""
        from scipy.stats import binomtest

        n = self.only_a + self.only_b
        return 1.0 if n == 0 else float(binomtest(self.only_a, n, 0.5).pvalue)


def images(count: float) -> str:
    """A count of training images in millions, the unit of every line and table: 2,201,600 ->
    "2.20 M", 7,680 -> "0.0077 M"."""
    millions = count / 1e6
    return f"{millions:.2f} M" if millions >= 0.01 or millions == 0 else f"{millions:.2g} M"
