"""The tutorial configuration over several seeds: what the recipe itself reaches, and how often
it lands on 127/128 on the first 128 test images as the tutorial did.

Recorded in MLflow only (experiment `<study>`, parent run `baseline`, one nested run per seed),
not in the Optuna study, so the sampler never sees them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NOTE

from sweep.data import Mnist
from sweep.model import Backend
from sweep.spec import Spec
from sweep.tracking import ROLE, config_run, experiment_id
from sweep.train import TrainResult, train


def baseline_runs(client: MlflowClient, study_name: str) -> list[Run]:
    """The finished seed runs of a study's baseline, by seed."""
    experiment = client.get_experiment_by_name(study_name)
    if experiment is None:
        return []
    runs = client.search_runs([experiment.experiment_id], f"tags.`{ROLE}` = 'baseline-seed' and attributes.status = 'FINISHED'")
    return sorted(runs, key=lambda r: int(r.data.params["seed"]))


def run_baseline(
    client: MlflowClient, spec: Spec, mnist: Mnist, backend: Backend, seeds: int,
    on_seed: Callable[[int, TrainResult], None],
) -> None:
    """Train the spec's baseline with seeds 0..seeds-1, skipping seeds already recorded."""
    done = {int(r.data.params["seed"]) for r in baseline_runs(client, spec.name)}
    exp_id = experiment_id(client, spec)
    parents = client.search_runs([exp_id], f"tags.`{ROLE}` = 'baseline'", max_results=1)
    if parents:
        parent_id = parents[0].info.run_id
    else:
        note = f"The study's baseline (trial 0's configuration) trained with seeds 0, 1, 2, ... ({spec.name})."
        parent_id = client.create_run(exp_id, run_name="baseline", tags={ROLE: "baseline", MLFLOW_RUN_NOTE: note}).info.run_id
    client.update_run(parent_id, status="RUNNING")
    try:
        for seed in range(seeds):
            if seed in done:
                continue
            config = replace(spec.baseline, seed=seed)
            tags = {MLFLOW_PARENT_RUN_ID: parent_id, ROLE: "baseline-seed", "optuna.study_name": spec.name}
            with config_run(client, exp_id, f"baseline-seed-{seed}", config, mnist.md5, backend, tags) as record:
                result = train(config, mnist, backend, on_eval=record.log_curve_point)
                record.log_result(result)
            on_seed(seed, result)
    finally:
        client.set_terminated(parent_id, status="FINISHED")
