"""The tutorial configuration over several seeds: what the recipe itself reaches, and how often
it lands on 127/128 on the first 128 test images as the tutorial did.

Recorded in MLflow only (experiment `<study>`, parent run `baseline`, one nested run per seed),
not in the Optuna study, so the sampler never sees them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from mlflow import MlflowClient

from sweep import records
from sweep.data import Mnist
from sweep.model import Backend
from sweep.spec import Spec
from sweep.config import TrainResult
from sweep.train import train


def run_baseline(
    client: MlflowClient, spec: Spec, mnist: Mnist, backend: Backend, seeds: int,
    on_seed: Callable[[int, TrainResult], None], on_step: Callable | None = None,
) -> None:
    """Train the spec's baseline with seeds 0..seeds-1, skipping seeds already recorded
    (`on_step`: see `sweep.train.train`)."""
    done = {int(r.data.params["seed"]) for r in records.baseline_runs(client, spec.name)}
    parent_id = records.baseline_run(client, spec)
    try:
        for seed in range(seeds):
            if seed in done:
                continue
            config = replace(spec.baseline, seed=seed)
            with records.baseline_seed_run(client, spec, parent_id, config, mnist, backend.params()) as record:
                result = train(config, mnist, backend, on_eval=record.log_curve_point, on_step=on_step)
                record.log_result(result)
            on_seed(seed, result)
    finally:
        client.set_terminated(parent_id, status="FINISHED")
