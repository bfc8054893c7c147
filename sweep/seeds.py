"""One configuration trained with other seeds: the runs of `baseline`, and of `confirm`, which
then chooses among the top trials on mean validation accuracy (`sweep.confirm`).

Recorded in MLflow only (nested under the study's `baseline` or `confirm` parent run), not in
the Optuna study, so the sampler never sees them. A seed that was stopped resumes from its
checkpoint when the same command runs again; a seed already recorded is never trained again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import optuna
from mlflow import MlflowClient

from sweep import records
from sweep.config import TrainConfig, TrainResult
from sweep.confirm import Confirmed, by_mean_validation, confirmed, seed_runs, top_trials
from sweep.data import Mnist
from sweep.model import Backend, resumed_backend
from sweep.spec import Spec
from sweep.train import train

Job = tuple[int | None, TrainConfig]  # (the trial whose configuration it is, for confirm; the configuration and its seed)


def train_seeds(client: MlflowClient, spec: Spec, role: str, jobs: list[Job], mnist: Mnist, backend: Backend,
                on_seed: Callable[[int | None, int, TrainResult], None], on_step: Callable | None = None,
                say: Callable[[str], None] = print) -> None:
    """Train each job in order, as a run under the study's `role` parent (records.BASELINE or
    records.CONFIRM), each resuming a stopped run of the same seed if one left a checkpoint.
    `on_seed(trial number, seed, result)` follows each; `on_step`: see `sweep.train.train`."""
    note = records.SEED_NOTES[role].format(study=spec.name)
    parent_id = records.open_parent_run(client, spec, role, role, note)
    try:
        for number, config in jobs:
            stopped = (run.info.run_id for run in records.stopped_seed_runs(client, spec.name, role, number, config.seed))
            found = records.resumable(client, stopped, config, f"seed {config.seed}", "its stopped run", say)
            holder, checkpoint = found or (None, None)
            runs_on = backend if checkpoint is None else resumed_backend(checkpoint.backend, backend, say)
            with records.seed_run(client, spec, parent_id, role, number, config, mnist, runs_on.params()) as run:
                if checkpoint is not None:
                    run.log_resumed(holder, checkpoint)
                result = train(config, mnist, runs_on, on_eval=run.log_curve_point, on_step=on_step, resume=checkpoint,
                               on_checkpoint=run.save_checkpoint)
                run.log_result(result)
            on_seed(number, config.seed, result)
    finally:
        client.set_terminated(parent_id, status=records.FINISHED)


def baseline(client: MlflowClient, spec: Spec, mnist: Mnist, backend: Backend, seeds: int,
             on_seed: Callable[[int | None, int, TrainResult], None], on_step: Callable | None = None,
             say: Callable[[str], None] = print) -> None:
    """The spec's baseline (trial 0's configuration) with the seeds 0..seeds-1 not yet recorded:
    what the recipe itself reaches, and how often it lands on 127/128 as the tutorial did."""
    done = {int(r.data.params["seed"]) for r in records.seed_runs(client, spec.name, records.BASELINE)}
    jobs = [(None, replace(spec.baseline, seed=seed)) for seed in range(seeds) if seed not in done]
    train_seeds(client, spec, records.BASELINE, jobs, mnist, backend, on_seed, on_step, say)


def confirm(
    client: MlflowClient, spec: Spec, study: optuna.Study, mnist: Mnist, backend: Backend, top: int, seeds: int,
    on_seed: Callable[[int | None, int, TrainResult], None], on_step: Callable | None = None,
    say: Callable[[str], None] = print,
) -> list[Confirmed]:
    """Train each of the `top` trials' configurations with the seeds 0..seeds-1 it lacks, one
    seed for every configuration before the next seed; the configurations, best mean
    validation accuracy first. `on_seed(trial number, seed, result)` follows each training;
    `on_step`: see `sweep.train.train`."""
    trials = top_trials(study, top)
    recorded = records.seed_runs(client, spec.name, records.CONFIRM)
    have = {t.number: seed_runs(client, t, recorded) for t in trials}
    jobs = [(t.number, replace(records.config_of(have[t.number][min(have[t.number])]), seed=seed))
            for seed in range(seeds) for t in trials  # in rounds: stopped at any point, they differ by one seed at most
            if seed not in have[t.number]]
    train_seeds(client, spec, records.CONFIRM, jobs, mnist, backend, on_seed, on_step, say)
    recorded = records.seed_runs(client, spec.name, records.CONFIRM)  # now with the seeds trained here
    return by_mean_validation([confirmed(client, t, recorded) for t in trials])
