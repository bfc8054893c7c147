"""One configuration trained with other seeds: the runs of `baseline`, and of `confirm`, which then
chooses among the top trials (`sweep.seeds.choice`).

Seed s validates on fold s mod 12 of the training file (`Mnist.fold`): each seed carries its own
validation images' luck, so a mean over seeds is not one set's luck over and over. Seed 0 is
fold 0, the tutorial's split, so a trial's own run is its seed 0. A seed run recorded on another
fold (before folds per seed, every run validated on fold 0) does not count for its seed: it stays
in MLflow, and the seed is trained again on its own fold, with one line saying so.

Recorded in MLflow only (nested under the study's `baseline` or `confirm` parent run), not in
the Optuna study, so the sampler never sees them. A seed that was stopped resumes from its
checkpoint when the same command runs again; a seed already recorded is never trained again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

import optuna
from mlflow import MlflowClient
from mlflow.entities import Run

from sweep.search.spec import Spec
from sweep.seeds.choice import Confirmed, by_mean_validation, confirmed, own_run, runs_by_seed, top_trials
from sweep.tracking import queries
from sweep.tracking.checkpoints import resumable
from sweep.tracking.runs import ConfigRun, config_run
from sweep.tracking.schema import (
    ROLE_BASELINE,
    ROLE_CONFIRM,
    SEED_ROLES,
    STATUS_FINISHED,
    TAG_PARENT,
    TAG_ROLE,
    TAG_STUDY_NAME,
    TAG_TRIAL_NUMBER,
)
from sweep.tracking.study import experiment_id, open_parent_run
from sweep.training.checkpoint import Checkpoint
from sweep.training.config import CurvePoint, TrainConfig, TrainResult
from sweep.training.data import FOLDS, Mnist
from sweep.training.hooks import Hooks
from sweep.training.model import Backend, resumed_backend
from sweep.training.train import train

log = logging.getLogger(__name__)

# (the trial whose configuration it is, for confirm; the configuration and its seed)
Job = tuple[int | None, TrainConfig]
PARENT_NOTES = {
    ROLE_BASELINE: "The study's baseline (trial 0's configuration) trained with seeds 0, 1, 2, ..., seed s "
    "validating on fold s mod 12 ({study}).",
    ROLE_CONFIRM: "The study's top trials by validation accuracy, each trained again with seeds 0, 1, 2, ..., seed s "
    "validating on fold s mod 12; `python sweep.py confirm` chooses among them ({study}).",
}


def with_seed(config: TrainConfig, seed: int) -> TrainConfig:
    """The configuration trained with `seed`, validating on that seed's own fold."""
    return replace(config, seed=seed, val_fold=seed % FOLDS)


def on_its_fold(runs: dict[int, Run], who: str) -> dict[int, Run]:
    """The runs (by seed) that validated on their seed's own fold; one line for those that did not."""
    kept = {seed: run for seed, run in runs.items() if queries.fold_of(run) == seed % FOLDS}
    for seed in sorted(set(runs) - set(kept)):
        log.info(
            f"{who} seed {seed}: its recorded run validated on fold {queries.fold_of(runs[seed])}, not on fold "
            f"{seed % FOLDS}; it is trained again on its own fold"
        )
    return kept


class RunHooks(Hooks):
    """A training recorded in its own run (a seed's, or a reproduction's): its curve points and,
    unless `checkpoints` is off, its checkpoints go to the run; its progress to `progress`."""

    def __init__(
        self, run: ConfigRun, progress: Callable[[int, int, CurvePoint | None], None] | None, checkpoints: bool = True
    ):
        self.run, self.progress, self.checkpoints = run, progress, checkpoints

    def on_curve_point(self, point: CurvePoint) -> None:
        self.run.log_curve_point(point)

    def on_checkpoint(self, checkpoint: Checkpoint) -> None:
        if self.checkpoints:
            self.run.save_checkpoint(checkpoint)

    def on_step(self, done: int, steps: int, last: CurvePoint | None) -> None:
        if self.progress is not None:
            self.progress(done, steps, last)


def train_seeds(
    client: MlflowClient,
    spec: Spec,
    role: str,
    jobs: list[Job],
    mnist: Mnist,
    backend: Backend,
    on_seed: Callable[[int | None, TrainConfig, TrainResult], None],
    progress: Callable[[int, int, CurvePoint | None], None] | None = None,
) -> None:
    """Train each job in order, as a run under the study's `role` parent (baseline or confirm),
    each resuming a stopped run of the same seed if one left a checkpoint. `on_seed(trial
    number, configuration, result)` follows each."""
    note = PARENT_NOTES[role].format(study=spec.name)
    parent_id = open_parent_run(client, spec.name, spec.description, role, role, note)
    try:
        for number, config in jobs:
            stopped = (r.info.run_id for r in queries.stopped_seed_runs(client, spec.name, role, number, config.seed))
            holder, checkpoint = resumable(client, stopped, config, f"seed {config.seed}", "its stopped run") or (
                None,
                None,
            )
            runs_on = backend if checkpoint is None else resumed_backend(checkpoint.backend, backend)
            tags = {TAG_PARENT: parent_id, TAG_ROLE: SEED_ROLES[role], TAG_STUDY_NAME: spec.name}
            name = f"{role}-seed-{config.seed}"
            if number is not None:
                tags[TAG_TRIAL_NUMBER], name = str(number), f"trial-{number:04d}-seed-{config.seed}"
            with config_run(
                client, experiment_id(client, spec.name, spec.description), name, config, mnist, runs_on.params(), tags
            ) as run:
                if checkpoint is not None:
                    run.log_resumed(holder, checkpoint)
                result = train(config, mnist, runs_on, RunHooks(run, progress), resume=checkpoint)
                run.log_result(result)
            on_seed(number, config, result)
    finally:
        client.set_terminated(parent_id, status=STATUS_FINISHED)


def train_baseline(
    client: MlflowClient,
    spec: Spec,
    mnist: Mnist,
    backend: Backend,
    seeds: int,
    on_seed: Callable[[int | None, TrainConfig, TrainResult], None],
    progress: Callable[[int, int, CurvePoint | None], None] | None = None,
) -> None:
    """The spec's baseline (trial 0's configuration) with the seeds 0..seeds-1 not yet recorded:
    what the recipe itself reaches, and how often it lands on 127/128 as the tutorial did."""
    recorded = {queries.seed_of(r): r for r in queries.seed_runs(client, spec.name, ROLE_BASELINE)}
    done = on_its_fold(recorded, "baseline")
    jobs = [(None, with_seed(spec.baseline, seed)) for seed in range(seeds) if seed not in done]
    train_seeds(client, spec, ROLE_BASELINE, jobs, mnist, backend, on_seed, progress)


def train_confirm(
    client: MlflowClient,
    spec: Spec,
    study: optuna.Study,
    mnist: Mnist,
    backend: Backend,
    top: int,
    seeds: int,
    on_seed: Callable[[int | None, TrainConfig, TrainResult], None],
    progress: Callable[[int, int, CurvePoint | None], None] | None = None,
) -> list[Confirmed]:
    """Train each of the `top` trials' configurations with the seeds 0..seeds-1 it lacks, one
    seed for every configuration before the next seed (stopped at any point, they differ by one
    seed at most); the configurations, best mean validation accuracy first."""
    trials = top_trials(study, top)
    recorded = queries.seed_runs(client, spec.name, ROLE_CONFIRM)
    have = {
        t.number: on_its_fold(runs_by_seed(client, t, recorded, any_fold=True), f"trial {t.number}") for t in trials
    }
    jobs = [
        (t.number, with_seed(queries.config_of(own_run(client, t)), seed))
        for seed in range(seeds)
        for t in trials
        if seed not in have[t.number]
    ]
    train_seeds(client, spec, ROLE_CONFIRM, jobs, mnist, backend, on_seed, progress)
    recorded = queries.seed_runs(client, spec.name, ROLE_CONFIRM)  # now with the seeds trained here
    return by_mean_validation([confirmed(client, t, recorded) for t in trials])
