"""The Optuna study: opened from its spec (the baseline first, then enqueued and warm-start
points), and run up to its target within its budget. The objective is `sweep.search.objective`'s;
the shared target, signals and dead workers are `sweep.search.workers`'."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import replace

import optuna
from mlflow import MlflowClient
from optuna.trial import FrozenTrial, TrialState

from sweep.errors import SweepError, TrainingDiverged, TrainingStopped
from sweep.search import workers
from sweep.search.attributes import (
    ATTR_BASELINE,
    ATTR_ENQUEUED,
    ATTR_FAILURE,
    ATTR_MLFLOW_RUN_ID,
    ATTR_SPEC,
    ATTR_STOPPED,
    ATTR_WARM_START,
)
from sweep.search.budget import Budget
from sweep.search.objective import objective
from sweep.search.space import outside
from sweep.search.spec import Spec, parse_spec
from sweep.search.storage import GRACE_PERIOD, HEARTBEAT_INTERVAL, optuna_storage
from sweep.stopping import SafeStop
from sweep.tracking.study import StudyTracker
from sweep.training.config import CurvePoint
from sweep.training.data import Mnist
from sweep.training.model import Backend

log = logging.getLogger(__name__)

MAX_FAILURES_IN_A_ROW = 5  # then the study's ranges, not bad luck, are the problem


class TrialSeeded(optuna.samplers.BaseSampler):
    """The spec's sampler, made afresh for each trial from its seed and the trial number: reproducible in
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


def open_study(
    spec: Spec,
    storage_url: str,
    client: MlflowClient,
    heartbeat_interval: int = HEARTBEAT_INTERVAL,
    grace_period: int = GRACE_PERIOD,
) -> optuna.Study:
    """Load or create the study; a new one gets the baseline as trial 0, then the spec's
    `[[enqueue]]` trials, then its `[warm_start]` points. A trial whose worker stops beating
    for `grace_period` seconds is failed and queued again."""
    on_stale = workers.stale_trial_callback(client)
    storage = optuna_storage(storage_url, on_stale, heartbeat_interval=heartbeat_interval, grace_period=grace_period)
    study = optuna.create_study(
        storage=storage,
        study_name=spec.name,
        direction="maximize",
        sampler=TrialSeeded(spec.make_sampler),
        pruner=spec.make_pruner(),
        load_if_exists=True,
    )
    recorded = study.user_attrs.get(ATTR_SPEC)
    if recorded is None:
        study.set_user_attr(ATTR_SPEC, spec.source)
    elif parse_spec(recorded, f"(kept with study '{spec.name}')").identity != spec.identity:
        raise SweepError(
            f"study '{spec.name}' was created from a different study file; give this one a new --study-name"
        )
    if not study.get_trials(deepcopy=False):
        study.enqueue_trial(spec.params(spec.baseline), user_attrs={ATTR_BASELINE: True}, skip_if_exists=True)
        for config in spec.enqueue:
            study.enqueue_trial(spec.params(config), user_attrs={ATTR_ENQUEUED: True}, skip_if_exists=True)
        if spec.warm_start is not None:
            warm_start(study, spec, storage)
    workers.fail_dead_local_trials(study, storage, on_stale)
    return study


def warm_start(study: optuna.Study, spec: Spec, storage: optuna.storages.BaseStorage) -> None:
    """Enqueue the best completed trials of another study in the same storage, by validation
    accuracy, each as its whole configuration there (its spec's fixed settings and its
    parameters) seen through this spec. One line for each point, and for a missing study."""
    name, top = spec.warm_start
    if name not in optuna.get_all_study_names(storage):
        log.info(f"warm start: no study '{name}' in this storage; nothing enqueued")
        return
    source = optuna.load_study(study_name=name, storage=storage)
    try:
        fixed = parse_spec(source.user_attrs[ATTR_SPEC], f"(kept with study '{name}')").fixed
    except (KeyError, SweepError) as e:
        log.info(f"warm start: study '{name}' keeps no readable study file ({e}); nothing enqueued")
        return
    for trial in sorted(
        source.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: (-t.value, t.number)
    )[:top]:
        config = replace(fixed, **trial.params)
        problems = [problem for p in spec.search.values() if (problem := outside(p, getattr(config, p.name)))]
        if problems:
            log.info(f"warm start: {name} trial {trial.number} skipped: {problems[0]}")
            continue
        study.enqueue_trial(
            spec.params(config),
            user_attrs={ATTR_WARM_START: {"study": name, "trial": trial.number}},
            skip_if_exists=True,
        )
        log.info(f"warm start: {name} trial {trial.number} enqueued (validation {100 * trial.value:.2f}% there)")


def run_study(
    study: optuna.Study,
    spec: Spec,
    tracker: StudyTracker,
    mnist: Mnist,
    backend: Backend,
    target: int,
    budget: Budget | None = None,
    on_trial: Callable[[FrozenTrial], None] | None = None,
    on_progress: Callable[[int, int, int, CurvePoint | None], None] | None = None,
    stop: SafeStop | None = None,
) -> None:
    """Run trials in this process until the study has `target` finished trials, or until the
    `budget` (seconds, study-wide training images) runs out: then no trial starts, and a
    running one stops between two steps, checkpointed and queued again (FAIL in Optuna, KILLED
    in MLflow, its curve so far kept), to resume first when the study runs again.
    `on_progress(trial number, steps done, steps, last curve point)` follows the running trial;
    `stop` (entered) stops it, checkpointed, at Ctrl-C or SIGTERM."""
    budget, stop = budget or Budget(study), stop or SafeStop()

    def progress(number: int, done: int, steps: int, last: CurvePoint | None) -> None:
        stop.check()
        if on_progress is not None:
            on_progress(number, done, steps, last)

    def claimed_objective(trial: optuna.Trial) -> float:
        workers.claim(study, trial, target)
        return objective(trial, spec, tracker, mnist, backend, budget, functools.partial(progress, trial.number))

    failures_in_a_row = 0

    def after_trial(study: optuna.Study, trial: FrozenTrial) -> None:
        nonlocal failures_in_a_row
        stop.check()  # no new trial after Ctrl-C
        optuna.storages.fail_stale_trials(study)  # a lost machine's trial must not count toward the target
        surplus = workers.is_surplus(trial)
        if trial.state == TrialState.FAIL and not surplus and not trial.user_attrs.get(ATTR_STOPPED):
            failures_in_a_row += 1
        elif trial.state != TrialState.FAIL:
            failures_in_a_row = 0
        if trial.state == TrialState.COMPLETE and study.best_trial.number == trial.number:
            tracker.record_best(trial.number, trial.params, trial.user_attrs[ATTR_MLFLOW_RUN_ID])
        if on_trial is not None and not surplus:
            on_trial(trial)
        if failures_in_a_row >= MAX_FAILURES_IN_A_ROW:
            raise SweepError(
                f"{failures_in_a_row} trials in a row failed (last: {trial.user_attrs.get(ATTR_FAILURE)}); "
                "check the study file's ranges"
            )
        if workers.claimed_trials(study) >= target or budget.exhausted():
            study.stop()

    budget.start()
    # Until the target is reached: run trials while it needs more, else wait for the trials
    # other workers are running, which either finish or, if their machine is lost, go stale
    # and are queued again here.
    while workers.finished_trials(study) < target and not budget.exhausted():
        optuna.storages.fail_stale_trials(study)
        if workers.claimed_trials(study) < target:
            study.optimize(
                claimed_objective,
                timeout=budget.seconds_left(),
                catch=(TrainingDiverged, TrainingStopped, workers.Surplus),
                callbacks=[after_trial],
            )
        else:
            workers.wait(workers.POLL_SECONDS, budget.seconds_left(), stop)
