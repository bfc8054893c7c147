"""The Optuna side: open the study, and run its objective up to the target.

The objective reads as Optuna's own examples do: suggest a configuration, train it while
reporting the validation curve (so the pruner can stop it), return the validation accuracy.
A trial that continues a stopped one first takes over its checkpoint and its curve. Storage,
sampler and pruner are chosen outside it; the shared target, signals and dead workers are
`sweep.workers`' business.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import replace

import optuna
from mlflow import MlflowClient
from optuna.trial import FrozenTrial, TrialState

from sweep import records, workers
from sweep.attrs import (
    BASELINE,
    ENQUEUED,
    FAILURE,
    MLFLOW_RUN_ID,
    PRUNED,
    RESUMED,
    RESUMES,
    SPEC,
    STOPPED,
    TRAIN_IMAGES,
    TRAIN_SECONDS,
    WARM_START,
)
from sweep.budget import Budget
from sweep.checkpoint import Checkpoint
from sweep.config import GRACE_PERIOD, HEARTBEAT_INTERVAL, CurvePoint, TrainConfig
from sweep.data import Mnist
from sweep.errors import SweepError, TrainingDiverged, TrainingStopped
from sweep.model import Backend, resumed_backend
from sweep.records import StudyTracker
from sweep.spec import Spec, outside, parse_spec
from sweep.stores import optuna_storage
from sweep.train import train

Say = Callable[[str], None]  # where a line for the user goes

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


def open_study(spec: Spec, storage_url: str, client: MlflowClient, heartbeat_interval: int = HEARTBEAT_INTERVAL,
               grace_period: int = GRACE_PERIOD, say: Say = print) -> optuna.Study:
    """Load or create the study; a new one gets the baseline as trial 0, then the spec's
    `[[enqueue]]` trials, then its `[warm_start]` points. A trial whose worker stops beating
    for `grace_period` seconds is failed and queued again."""
    on_stale = workers.stale_trial_callback(client)
    storage = optuna_storage(storage_url, on_stale, heartbeat_interval=heartbeat_interval, grace_period=grace_period)
    study = optuna.create_study(
        storage=storage, study_name=spec.name, direction="maximize",
        sampler=TrialSeeded(spec.make_sampler), pruner=spec.make_pruner(), load_if_exists=True,
    )
    recorded = study.user_attrs.get(SPEC)
    if recorded is None:
        study.set_user_attr(SPEC, spec.source)
    elif parse_spec(recorded, f"(kept with study '{spec.name}')").identity != spec.identity:
        raise SweepError(f"study '{spec.name}' was created from a different study file; give this one a new --study-name")
    if not study.get_trials(deepcopy=False):
        study.enqueue_trial(spec.params(spec.baseline), user_attrs={BASELINE: True}, skip_if_exists=True)
        for config in spec.enqueue:
            study.enqueue_trial(spec.params(config), user_attrs={ENQUEUED: True}, skip_if_exists=True)
        if spec.warm_start is not None:
            warm_start(study, spec, say)
    workers.fail_dead_local_trials(study, on_stale)
    return study


def warm_start(study: optuna.Study, spec: Spec, say: Say) -> None:
    """Enqueue the best completed trials of another study in the same storage, by validation
    accuracy, each as its whole configuration there (its spec's fixed settings and its
    parameters) seen through this spec. One line for each point, and for a missing study."""
    name, top = spec.warm_start
    if name not in {s.study_name for s in study._storage.get_all_studies()}:
        say(f"warm start: no study '{name}' in this storage; nothing enqueued")
        return
    source = optuna.load_study(study_name=name, storage=study._storage)
    try:
        fixed = parse_spec(source.user_attrs[SPEC], f"(kept with study '{name}')").fixed
    except (KeyError, SweepError) as e:
        say(f"warm start: study '{name}' keeps no readable study file ({e}); nothing enqueued")
        return
    best = sorted(source.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: (-t.value, t.number))
    for trial in best[:top]:
        config = replace(fixed, **trial.params)
        problems = [problem for p in spec.search.values() if (problem := outside(p, getattr(config, p.name)))]
        if problems:
            say(f"warm start: {name} trial {trial.number} skipped: {problems[0]}")
            continue
        study.enqueue_trial(spec.params(config), user_attrs={WARM_START: {"study": name, "trial": trial.number}},
                            skip_if_exists=True)
        say(f"warm start: {name} trial {trial.number} enqueued (validation {100 * trial.value:.2f}% there)")


def checkpoint_to_resume(trial: optuna.Trial, config: TrainConfig, client: MlflowClient,
                         say: Say) -> tuple[str, Checkpoint] | None:
    """The checkpoint a trial that continues a stopped one starts from, with the run holding
    it: the latest left by the trials it continues. A damaged or missing one, or one of another
    configuration, is not used: the trial trains from scratch, and one line says why."""
    trials = trial.study.get_trials(deepcopy=False)

    def runs_back():
        number = trial.user_attrs.get(RESUMES)
        while number is not None:
            if run_id := trials[number].user_attrs.get(MLFLOW_RUN_ID):
                yield run_id
            number = trials[number].user_attrs.get(RESUMES)

    who, source = f"trial {trial.number}", f"trial {trial.user_attrs.get(RESUMES)}"
    return records.resumable(client, runs_back(), config, who, source, say)


def objective(trial: optuna.Trial, spec: Spec, tracker: StudyTracker, mnist: Mnist, backend: Backend,
              on_step: Callable[[int, int, CurvePoint | None], None], budget: Budget, say: Say = print) -> float:
    """Train the trial's configuration, recorded in its MLflow run; validation accuracy is the
    value Optuna maximises (never test accuracy). A trial stopped on purpose (by Ctrl-C, or by
    the `budget` running out) leaves a checkpoint and is queued again, to resume from it."""
    config = spec.suggest(trial)
    found = checkpoint_to_resume(trial, config, tracker.client, say)
    holder, checkpoint = found or (None, None)
    first_step = 0 if checkpoint is None else checkpoint.step

    def between_steps(done: int, steps: int, last: CurvePoint | None) -> None:
        budget.check(trial.number, (done - first_step) * config.batch_size)
        on_step(done, steps, last)

    if checkpoint is not None:
        backend = resumed_backend(checkpoint.backend, backend, say)
    with tracker.trial_run(trial.number, config, mnist, backend.params(), trial.user_attrs.get(WARM_START)) as run:
        trial.set_user_attr(MLFLOW_RUN_ID, run.run_id)
        if checkpoint is not None:
            run.log_resumed(holder, checkpoint)
            trial.set_user_attr(RESUMED, {"step": checkpoint.step, "seconds": checkpoint.train_seconds,
                                          "images": checkpoint.step * config.batch_size})
            for p in checkpoint.curve:  # the pruner sees the whole curve, as if the trial had never stopped
                trial.report(p.val_accuracy, p.point)

        def spent(seconds: float, images: int) -> None:  # so far: what a trial that ends here cost
            trial.set_user_attr(TRAIN_SECONDS, seconds)
            trial.set_user_attr(TRAIN_IMAGES, images)

        def on_eval(p: CurvePoint) -> None:
            run.log_curve_point(p)
            spent(p.train_seconds, p.train_images)
            trial.report(p.val_accuracy, p.point)
            if not p.final and trial.should_prune():  # at the last point the images are spent: keep the result
                where = config.point_name(p.point)
                trial.set_user_attr(PRUNED, {"at": where, "val": [p.val.correct, p.val.total]})
                raise optuna.TrialPruned(f"validation accuracy {p.val_accuracy:.4f} at {where}: stopped by the {spec.pruner} pruner")

        def on_checkpoint(c: Checkpoint) -> None:
            run.save_checkpoint(c)
            spent(c.train_seconds, c.step * config.batch_size)

        try:
            result = train(config, mnist, backend, on_eval, between_steps, resume=checkpoint, on_checkpoint=on_checkpoint)
        except TrainingDiverged as e:
            trial.set_user_attr(FAILURE, str(e))
            raise
        except (TrainingStopped, KeyboardInterrupt) as e:
            trial.set_user_attr(FAILURE, str(e) if isinstance(e, TrainingStopped) else f"stopped by {e or 'Ctrl-C'}")
            trial.set_user_attr(STOPPED, True)
            workers.retry(trial.study, trial.study.get_trials(deepcopy=False)[trial.number])
            raise
        run.log_result(result)
        spent(result.train_seconds, result.train_images)
    return result.val_accuracy


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
    say: Say = print,
) -> None:
    """Run trials in this process until the study has `target` finished trials, or until the
    `budget` (seconds, study-wide training images) runs out: then no trial starts, and a
    running one stops between two steps, checkpointed and queued again (FAIL in Optuna, KILLED
    in MLflow, its curve so far kept), to resume first when the study runs again.
    `on_progress(trial number, steps done, steps, last curve point)` follows the running trial."""
    budget = budget or Budget(study)

    def between_steps(number: int, done: int, steps: int, last: CurvePoint | None) -> None:
        workers.check_stop()
        if on_progress is not None:
            on_progress(number, done, steps, last)

    def claimed_objective(trial: optuna.Trial) -> float:
        workers.claim(study, trial, target)
        return objective(trial, spec, tracker, mnist, backend, functools.partial(between_steps, trial.number), budget, say)

    failures_in_a_row = 0

    def after_trial(study: optuna.Study, trial: FrozenTrial) -> None:
        nonlocal failures_in_a_row
        workers.check_stop()  # no new trial after Ctrl-C
        optuna.storages.fail_stale_trials(study)  # a lost machine's trial must not count toward the target
        surplus = workers.is_surplus(trial)
        if trial.state == TrialState.FAIL and not surplus and not trial.user_attrs.get(STOPPED):
            failures_in_a_row += 1
        elif trial.state != TrialState.FAIL:
            failures_in_a_row = 0
        if trial.state == TrialState.COMPLETE and study.best_trial.number == trial.number:
            tracker.record_best(trial.number, trial.params, trial.user_attrs[MLFLOW_RUN_ID])
        if on_trial is not None and not surplus:
            on_trial(trial)
        if failures_in_a_row >= MAX_FAILURES_IN_A_ROW:
            raise SweepError(f"{failures_in_a_row} trials in a row failed (last: {trial.user_attrs.get(FAILURE)}); "
                             "check the study file's ranges")
        if workers.claimed_trials(study) >= target or budget.exhausted():
            study.stop()

    # Until the target is reached: run trials while it needs more, else wait for the trials
    # other workers are running, which either finish or, if their machine is lost, go stale
    # and are queued again here.
    while workers.finished_trials(study) < target and not budget.exhausted():
        optuna.storages.fail_stale_trials(study)
        if workers.claimed_trials(study) < target:
            study.optimize(claimed_objective, timeout=budget.seconds_left(),
                           catch=(TrainingDiverged, TrainingStopped, workers.Surplus), callbacks=[after_trial])
        else:
            workers.wait(workers.POLL_SECONDS, budget.seconds_left())
