"""The study's budgets: `--timeout` (seconds of this run) and `--max-images` (training images
of the whole study). When one runs out no trial starts, and a running trial is stopped between
two steps, checkpointed and queued again, so a later run with a larger budget resumes it.

Training images are counted as the trials record them (`attributes.spent`): every trial's,
pruned and stopped ones included, in every worker, plus the running trial's own as it goes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import optuna

from sweep.errors import TrainingStopped
from sweep.search.attributes import ATTR_SURPLUS, spent
from sweep.stats import images

REFRESH_SECONDS = 30  # how often a running trial re-reads what the other workers' trials spent


def study_images(study: optuna.Study, but: int | None = None) -> int:
    """Training images the study's trials have spent (all but trial `but`), as recorded."""
    return sum(
        spent(t.user_attrs)[0]
        for t in study.get_trials(deepcopy=False)
        if t.number != but and not t.user_attrs.get(ATTR_SURPLUS)
    )


@dataclass
class Budget:
    """What a run of the study may still spend: seconds (`timeout`, counted from `start()`, when
    the run's first trial is about to start, so that no start-up time counts) and study-wide
    training images (`max_images`); None is no limit."""

    study: optuna.Study
    timeout: float | None = None
    max_images: int | None = None
    _deadline: float | None = field(init=False, default=None)
    _others: tuple[int, int, float] | None = field(init=False, default=None)  # (trial, others' images, read at)

    def start(self) -> None:
        self._deadline = None if self.timeout is None else time.monotonic() + self.timeout

    def seconds_left(self) -> float | None:
        return None if self._deadline is None else self._deadline - time.monotonic()

    def out_of_time(self) -> bool:
        return self._deadline is not None and time.monotonic() > self._deadline

    def out_of_images(self) -> bool:
        return self.max_images is not None and study_images(self.study) >= self.max_images

    def exhausted(self) -> bool:
        """No trial may start."""
        return self.out_of_time() or self.out_of_images()

    def check(self, number: int, own_images: int) -> None:
        """Between two steps of trial `number`, which has spent `own_images` in this run:
        raise TrainingStopped if a budget has run out."""
        if self.out_of_time():
            raise TrainingStopped(f"stopped by --timeout {self.timeout:g}: the study's time ran out during training")
        if self.max_images is None:
            return
        now = time.monotonic()
        if self._others is None or self._others[0] != number or now - self._others[2] > REFRESH_SECONDS:
            self._others = (number, study_images(self.study, but=number), now)
        if self._others[1] + own_images >= self.max_images:
            raise TrainingStopped(
                f"stopped by --max-images {images(self.max_images)}: the study's training images "
                "ran out during training"
            )
