"""The objective, as Optuna's own examples write it: suggest a configuration, train it while
reporting the validation curve (so the pruner can stop it), return the validation accuracy,
never the test accuracy. A trial that continues a stopped one first takes over its checkpoint
and its curve."""

from __future__ import annotations

import logging
from collections.abc import Callable

import optuna
from mlflow import MlflowClient

from sweep.errors import TrainingDiverged, TrainingStopped
from sweep.search import workers
from sweep.search.attributes import (
    ATTR_FAILURE,
    ATTR_MLFLOW_RUN_ID,
    ATTR_PRUNED,
    ATTR_RESUMED,
    ATTR_RESUMES,
    ATTR_STOPPED,
    ATTR_TRAIN_IMAGES,
    ATTR_TRAIN_SECONDS,
    ATTR_WARM_START,
)
from sweep.search.budget import Budget
from sweep.search.spec import Spec
from sweep.tracking.checkpoints import resumable
from sweep.tracking.runs import ConfigRun
from sweep.tracking.study import StudyTracker
from sweep.training.checkpoint import Checkpoint
from sweep.training.config import CurvePoint, TrainConfig
from sweep.training.data import Mnist
from sweep.training.hooks import Hooks
from sweep.training.model import Backend, resumed_backend
from sweep.training.train import train

log = logging.getLogger(__name__)

Progress = Callable[[int, int, CurvePoint | None], None]  # (steps done, steps, last curve point), between steps


class TrialHooks(Hooks):
    """A trial's training: each curve point goes to its MLflow run and to Optuna's pruner, each
    checkpoint to its run, and between two steps the budget is checked and progress shown."""

    def __init__(
        self,
        trial: optuna.Trial,
        config: TrainConfig,
        run: ConfigRun,
        pruner: str,
        budget: Budget,
        progress: Progress,
        first_step: int,
    ):
        self.trial, self.config, self.run, self.pruner, self.budget = trial, config, run, pruner, budget
        self.progress, self.first_step = progress, first_step

    def spent(self, seconds: float, images: int) -> None:
        """So far: what the trial cost, if it ends here."""
        self.trial.set_user_attr(ATTR_TRAIN_SECONDS, seconds)
        self.trial.set_user_attr(ATTR_TRAIN_IMAGES, images)

    def on_curve_point(self, point: CurvePoint) -> None:
        self.run.log_curve_point(point)
        self.spent(point.train_seconds, point.train_images)
        self.trial.report(point.val_accuracy, point.point)
        if not point.final and self.trial.should_prune():  # at the last point the images are spent: keep the result
            where = self.config.point_name(point.point)
            self.trial.set_user_attr(ATTR_PRUNED, {"at": where, "val": [point.val.correct, point.val.total]})
            raise optuna.TrialPruned(
                f"validation accuracy {point.val_accuracy:.4f} at {where}: stopped by the {self.pruner} pruner"
            )

    def on_checkpoint(self, checkpoint: Checkpoint) -> None:
        self.run.save_checkpoint(checkpoint)
        self.spent(checkpoint.train_seconds, checkpoint.step * self.config.batch_size)

    def on_step(self, done: int, steps: int, last: CurvePoint | None) -> None:
        self.budget.check(self.trial.number, (done - self.first_step) * self.config.batch_size)
        self.progress(done, steps, last)


def checkpoint_to_resume(
    trial: optuna.Trial, config: TrainConfig, client: MlflowClient
) -> tuple[str, Checkpoint] | None:
    """The checkpoint a trial that continues a stopped one starts from, with the run holding
    it: the latest left by the trials it continues. A damaged or missing one, or one of another
    configuration, is not used: the trial trains from scratch, and one line says why."""
    trials = trial.study.get_trials(deepcopy=False)

    def runs_back():
        number = trial.user_attrs.get(ATTR_RESUMES)
        while number is not None:
            if run_id := trials[number].user_attrs.get(ATTR_MLFLOW_RUN_ID):
                yield run_id
            number = trials[number].user_attrs.get(ATTR_RESUMES)

    return resumable(
        client, runs_back(), config, f"trial {trial.number}", f"trial {trial.user_attrs.get(ATTR_RESUMES)}"
    )


def objective(
    trial: optuna.Trial,
    spec: Spec,
    tracker: StudyTracker,
    mnist: Mnist,
    backend: Backend,
    budget: Budget,
    progress: Progress,
) -> float:
    """Train the trial's configuration, recorded in its MLflow run; validation accuracy is the
    value Optuna maximises. A trial stopped on purpose (Ctrl-C, SIGTERM, or the `budget` running
    out) leaves a checkpoint and is queued again, to resume from it."""
    config = spec.suggest(trial)
    holder, checkpoint = checkpoint_to_resume(trial, config, tracker.client) or (None, None)
    if checkpoint is not None:
        backend = resumed_backend(checkpoint.backend, backend)
    with tracker.trial_run(trial.number, config, mnist, backend.params(), trial.user_attrs.get(ATTR_WARM_START)) as run:
        trial.set_user_attr(ATTR_MLFLOW_RUN_ID, run.run_id)
        if checkpoint is not None:
            run.log_resumed(holder, checkpoint)
            trial.set_user_attr(
                ATTR_RESUMED,
                {
                    "step": checkpoint.step,
                    "seconds": checkpoint.train_seconds,
                    "images": checkpoint.step * config.batch_size,
                },
            )
            for p in checkpoint.curve:  # the pruner sees the whole curve, as if the trial had never stopped
                trial.report(p.val_accuracy, p.point)
        hooks = TrialHooks(
            trial, config, run, spec.pruner, budget, progress, 0 if checkpoint is None else checkpoint.step
        )
        try:
            result = train(config, mnist, backend, hooks, resume=checkpoint)
        except TrainingDiverged as e:
            trial.set_user_attr(ATTR_FAILURE, str(e))
            raise
        except (TrainingStopped, KeyboardInterrupt) as e:
            trial.set_user_attr(
                ATTR_FAILURE, str(e) if isinstance(e, TrainingStopped) else f"stopped by {e or 'Ctrl-C'}"
            )
            trial.set_user_attr(ATTR_STOPPED, True)
            workers.retry(trial.study, trial.study.get_trials(deepcopy=False)[trial.number])
            raise
        run.log_result(result)
        hooks.spent(result.train_seconds, result.train_images)
    return result.val_accuracy
