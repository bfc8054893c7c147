"""Accuracies as counts, so every figure can carry its set size and a 95% interval."""

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
