"""Accuracies as counts, so every figure can carry its set size and a 95% interval; and the
count that measures cost, training images."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Accuracy:
    correct: int
    total: int

    @classmethod
    def of(cls, hits) -> Accuracy:
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
    import statistics

    from scipy.stats import t

    mean = statistics.mean(values)
    if len(values) < 2:
        return float("nan"), float("nan")
    half = t.ppf(1 - alpha / 2, len(values) - 1) * statistics.stdev(values) / len(values) ** 0.5
    return mean - half, mean + half


def images(count: float) -> str:
    """A count of training images as people read it: 2,201,600 -> "2.20 M", 7,680 -> "7.7 k"."""
    return f"{count / 1e6:.2f} M" if count >= 1e5 else f"{count / 1e3:.1f} k"
