"""What a training tells its caller while it runs, as one object in the style of
`keras.callbacks.Callback`: override the moments you care about; the others do nothing.

A trial (`sweep.search.objective`), a seed (`sweep.seeds.train`) and a reproduction
(`sweep.seeds.reproduce`) each implement it; `sweep.training.train.train` takes it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sweep.training.checkpoint import Checkpoint
    from sweep.training.config import CurvePoint


class Hooks:
    def on_curve_point(self, point: CurvePoint) -> None:
        """A point of the validation curve, as soon as it is measured: record it, or stop the
        training by raising (a pruned trial raises optuna.TrialPruned)."""

    def on_checkpoint(self, checkpoint: Checkpoint) -> None:
        """The training's state after each curve point but the last, and where it was stopped
        on purpose: everything it needs to resume exactly there."""

    def on_step(self, done: int, steps: int, last: CurvePoint | None) -> None:
        """Between two calls of the trainer (at most `IMAGES_PER_CALL` images apart): show
        progress, or stop safely by raising TrainingStopped or KeyboardInterrupt (a checkpoint
        is handed out first)."""
