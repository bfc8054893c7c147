"""The Optuna side: open the study, and run its objective up to the target.

The objective reads as Optuna's own examples do: suggest a configuration, train it while
reporting the validation curve (so the pruner can stop it), return the validation accuracy.
Storage, sampler and pruner are chosen outside it; the shared target, signals and dead workers
are `sweep.workers`' business.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

import optuna
from mlflow import MlflowClient
from optuna.trial import FrozenTrial, TrialState

from sweep import workers
from sweep.config import GRACE_PERIOD, HEARTBEAT_INTERVAL, CurvePoint
from sweep.data import Mnist
from sweep.errors import SweepError, TrainingDiverged, TrainingStopped
from sweep.model import Backend
from sweep.records import StudyTracker
from sweep.spec import Spec
from sweep.stores import optuna_storage
from sweep.train import train

MAX_FAILURES_IN_A_ROW = 5  # then the study's ranges, not bad luck, are the problem


class TrialSeeded(optuna.samplers.BaseSampler):
    """The spec's sampler, made afresh for each trial with seed + trial number: reproducible in
    one process, yet workers (and resumed runs) never replay each other's random proposals.
    Samplers read the study's history from the storage, so a fresh one loses nothing."""

    def __init__(self, make: Callable[[int], optuna.samplers.BaseSampler]):
        self.make, self.sampler = make, make(0)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.sampler = self.make(trial.number)
        self.sampler.before_trial(study, trial)

    def infer_relative_search_space(self, study, trial):
        return self.sampler.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self.sampler.sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self.sampler.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial, state, values) -> None:
        self.sampler.after_trial(study, trial, state, values)


def open_study(spec: Spec, storage_url: str, client: MlflowClient, heartbeat_interval: int = HEARTBEAT_INTERVAL,
               grace_period: int = GRACE_PERIOD) -> optuna.Study:
    """Load or create the study; a new one gets the baseline as trial 0, then the spec's
    `[[enqueue]]` trials. A trial whose worker stops beating for `grace_period` seconds is
    failed and its parameters queued again."""
    on_stale = workers.stale_trial_callback(client)
    storage = optuna_storage(storage_url, on_stale, heartbeat_interval=heartbeat_interval, grace_period=grace_period)
    study = optuna.create_study(
        storage=storage, study_name=spec.name, direction="maximize",
        sampler=TrialSeeded(spec.make_sampler), pruner=spec.make_pruner(), load_if_exists=True,
    )
    recorded = study.user_attrs.get("spec_digest")
    if recorded is None:
        study.set_user_attr("spec_digest", spec.digest)
        study.set_user_attr("spec", spec.source)
    elif recorded != spec.digest:
        raise SweepError(f"study '{spec.name}' was created from a different study file; give this one a new --study-name")
    if not study.get_trials(deepcopy=False):
        study.enqueue_trial(spec.params(spec.baseline), user_attrs={"baseline": True}, skip_if_exists=True)
        for config in spec.enqueue:
            study.enqueue_trial(spec.params(config), user_attrs={"enqueued": True}, skip_if_exists=True)
    workers.fail_dead_local_trials(study, on_stale)
    return study


def objective(trial: optuna.Trial, spec: Spec, tracker: StudyTracker, mnist: Mnist, backend: Backend,
              on_step: Callable[[int, int, CurvePoint | None], None]) -> float:
    """Train the trial's configuration, recorded in its MLflow run; validation accuracy is the
    value Optuna maximises (never test accuracy)."""
    config = spec.suggest(trial)
    with tracker.trial_run(trial.number, config, mnist, backend.params()) as run:
        trial.set_user_attr("mlflow_run_id", run.run_id)

        def on_eval(p: CurvePoint) -> None:
            run.log_curve_point(p)
            trial.set_user_attr("train_seconds", p.train_seconds)  # so far: what a pruned or stopped trial cost
            trial.report(p.val_accuracy, p.point)
            if trial.should_prune():
                where = f"{'epoch' if config.epochs else 'step'} {p.point}"
                trial.set_user_attr("pruned", {"at": where, "val": [p.val.correct, p.val.total]})
                raise optuna.TrialPruned(f"validation accuracy {p.val_accuracy:.4f} at {where}: stopped by the {spec.pruner} pruner")

        try:
            result = train(config, mnist, backend, on_eval=on_eval, on_step=on_step)
        except (TrainingDiverged, TrainingStopped) as e:
            trial.set_user_attr("failure", str(e))
            raise
        run.log_result(result)
    for name, acc in result.accuracies.items():  # counts, for progress lines and optuna-dashboard
        trial.set_user_attr(name, [acc.correct, acc.total])
    trial.set_user_attr("train_seconds", result.train_seconds)
    return result.val_accuracy


def run_study(
    study: optuna.Study,
    spec: Spec,
    tracker: StudyTracker,
    mnist: Mnist,
    backend: Backend,
    target: int,
    timeout: float | None = None,
    on_trial: Callable[[FrozenTrial], None] | None = None,
    on_progress: Callable[[int, int, int, CurvePoint | None], None] | None = None,
) -> None:
    """Run trials in this process until the study has `target` finished trials, or until
    `timeout` seconds have passed: then no trial starts, and a running one stops between two
    steps (FAIL in Optuna, KILLED in MLflow, its curve so far kept). `on_progress(trial number,
    steps done, steps, last curve point)` follows the running trial."""
    deadline = None if timeout is None else time.monotonic() + timeout

    def between_steps(number: int, done: int, steps: int, last: CurvePoint | None) -> None:
        workers.check_stop()
        if deadline is not None and time.monotonic() > deadline:
            raise TrainingStopped(f"stopped by --timeout {timeout:g}: the study's time ran out during training")
        if on_progress is not None:
            on_progress(number, done, steps, last)

    def claimed_objective(trial: optuna.Trial) -> float:
        workers.claim(study, trial, target)
        return objective(trial, spec, tracker, mnist, backend, functools.partial(between_steps, trial.number))

    failures_in_a_row = 0

    def after_trial(study: optuna.Study, trial: FrozenTrial) -> None:
        nonlocal failures_in_a_row
        workers.check_stop()  # no new trial after Ctrl-C
        optuna.storages.fail_stale_trials(study)  # a lost machine's trial must not count toward the target
        surplus = workers.is_surplus(trial)
        failures_in_a_row = failures_in_a_row + 1 if trial.state == TrialState.FAIL and not surplus else 0
        if trial.state == TrialState.COMPLETE and study.best_trial.number == trial.number:
            tracker.record_best(trial.number, trial.params, trial.user_attrs["mlflow_run_id"])
        if on_trial is not None and not surplus:
            on_trial(trial)
        if failures_in_a_row >= MAX_FAILURES_IN_A_ROW:
            raise SweepError(f"{failures_in_a_row} trials in a row failed (last: {trial.user_attrs.get('failure')}); "
                             "check the study file's ranges")
        if workers.claimed_trials(study) >= target:
            study.stop()

    def left() -> float | None:
        return None if deadline is None else deadline - time.monotonic()

    # Until the target is reached: run trials while it needs more, else wait for the trials
    # other workers are running, which either finish or, if their machine is lost, go stale
    # and are queued again here.
    while workers.finished_trials(study) < target and (deadline is None or left() > 0):
        optuna.storages.fail_stale_trials(study)
        if workers.claimed_trials(study) < target:
            study.optimize(claimed_objective, timeout=left(), catch=(TrainingDiverged, TrainingStopped, workers.Surplus),
                           callbacks=[after_trial])
        else:
            workers.wait(workers.POLL_SECONDS, deadline)
