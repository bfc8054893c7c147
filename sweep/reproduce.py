"""Reproduction: train a logged trial again from its MLflow run alone, and compare.

The run is the whole record: its params rebuild the TrainConfig, so neither the Optuna storage
nor the study file (which may have changed since) is read. Agreement means the same number of
correct images on every set, exactly: training is seeded and deterministic on CPU.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass

import keras
import numpy as np
from mlflow import MlflowClient
from mlflow.entities import Run, RunTag
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

import sweep.model  # noqa: F401  registers the custom layer for keras.models.load_model
from sweep.data import Mnist
from sweep.errors import SweepError
from sweep.stats import Accuracy
from sweep.tracking import ROLE, config_run, environment, git_commit
from sweep.train import TrainConfig, accuracy, test_accuracies, train

METRICS = ("val_accuracy", "test_accuracy", "test_accuracy_first128")


@dataclass(frozen=True)
class Comparison:
    run: Run  # the logged trial
    reproduction_id: str
    logged: dict[str, Accuracy]
    reproduced: dict[str, Accuracy]
    environment_changes: list[str]
    weights_max_difference: float | None  # against the logged model; None when only evaluated

    @property
    def agrees(self) -> bool:
        return self.logged == self.reproduced


def find_run(client: MlflowClient, run_id: str | None, study_name: str | None, trial: int | None) -> Run:
    """The trial's run, by id or by study name and trial number."""
    if run_id is not None:
        try:
            run = client.get_run(run_id)
        except MlflowException:
            raise SweepError(f"no MLflow run with id {run_id} in this tracking store (see --tracking-uri)") from None
    else:
        experiment = client.get_experiment_by_name(study_name)
        if experiment is None:
            raise SweepError(f"no study '{study_name}' in this tracking store (see --tracking-uri)")
        query = f"tags.`{ROLE}` = 'trial' and tags.`optuna.trial_number` = '{trial}'"
        runs = client.search_runs([experiment.experiment_id], query, order_by=["attributes.start_time DESC"])
        if not runs:
            raise SweepError(f"study '{study_name}' has no run for trial {trial}")
        run = next((r for r in runs if r.info.status == "FINISHED"), runs[0])
    if run.data.tags.get(ROLE) != "trial":
        raise SweepError(f"run {run.info.run_id} is not a trial run of a sweep")
    if run.info.status != "FINISHED":
        raise SweepError(f"run {run.info.run_id} did not finish (status {run.info.status}): there is no result to reproduce")
    return run


def config_from_run(run: Run) -> TrainConfig:
    """The run's configuration; a field it lacks was added to TrainConfig after it was logged,
    and takes its default, which keeps the earlier behaviour."""
    types, params = TrainConfig.field_types(), run.data.params
    return TrainConfig(**{k: None if params[k] == "None" else types[k](params[k]) for k in types if k in params})


def logged_accuracies(run: Run) -> dict[str, Accuracy]:
    m = run.data.metrics
    try:
        return {k: Accuracy(int(m[f"{k}_correct"]), int(m[f"{k}_total"])) for k in METRICS}
    except KeyError as e:
        raise SweepError(f"run {run.info.run_id} lacks the metric {e.args[0]}; there is no result to compare") from None


def environment_changes(run: Run, md5: dict[str, str]) -> list[str]:
    """What differs between the run's environment and this one, one phrase each."""
    now = environment(md5)
    changes = [f"{k} {run.data.params[k]} logged, {v} here" for k, v in now.items() if run.data.params.get(k, v) != v]
    logged_commit, commit = run.data.tags.get("sweep.git_commit"), git_commit() or "unknown"
    if logged_commit and logged_commit != commit:
        short = lambda c: c[:12] + ("-dirty" if c.endswith("-dirty") else "")  # noqa: E731
        changes.append(f"tool commit {short(logged_commit)} logged, {short(commit)} here")
    return changes


def reproduce(client: MlflowClient, run: Run, mnist: Mnist, evaluate_only: bool, warn=print) -> Comparison:
    """Re-train the run's configuration (or re-evaluate its logged model) and record the
    reproduction as a run nested under the original, tagged `sweep.reproduces=<run id>`."""
    config = config_from_run(run)
    logged = logged_accuracies(run)
    changes = environment_changes(run, mnist.md5)
    for change in changes:
        warn(f"warning: environment differs: {change}")
    data = mnist.limit(config.train_limit, config.val_limit, config.test_limit)
    mode = "evaluate-only" if evaluate_only else "train"
    tags = {
        MLFLOW_PARENT_RUN_ID: run.info.run_id,
        ROLE: "reproduction",
        "sweep.reproduces": run.info.run_id,
        "sweep.reproduction.mode": mode,
    }
    name = f"reproduce-{run.info.run_name}"
    with config_run(client, run.info.experiment_id, name, config, mnist.md5, tags) as record:
        logged_model = load_logged_model(client, run)
        if evaluate_only:
            reproduced = {"val_accuracy": accuracy(logged_model, data.val), **test_accuracies(logged_model, data)}
            record.log_accuracies(reproduced, config.final_point(len(data.train.y)))
            difference = None
        else:
            result = train(config, mnist, on_eval=record.log_curve_point)
            reproduced = result.accuracies
            record.log_result(result)
            pairs = zip(logged_model.get_weights(), result.model.get_weights())
            difference = max(float(np.max(np.abs(a - b))) for a, b in pairs)
            record.client.log_metric(record.run_id, "weights_max_abs_difference", difference)
        comparison = Comparison(run, record.run_id, logged, reproduced, changes, difference)
        verdict = "agrees" if comparison.agrees else "differs"
        record.client.log_batch(record.run_id, tags=[
            RunTag("sweep.reproduction.result", verdict),
            RunTag("sweep.reproduction.environment", "; ".join(changes) or "same"),
        ])
    client.set_tag(run.info.run_id, "sweep.reproduced", f"{verdict} ({mode}, run {record.run_id})")
    return comparison


def load_logged_model(client: MlflowClient, run: Run) -> keras.Model:
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(run.info.run_id, "model/model.keras", tmp)
        except (MlflowException, OSError):
            raise SweepError(f"run {run.info.run_id} has no model/model.keras artifact") from None
        return keras.models.load_model(path)


def comparison_lines(c: Comparison) -> list[str]:
    lines = [f"{'':24} {'logged':34} {'reproduced':34}"]
    for k in METRICS:
        mark = "same" if c.logged[k] == c.reproduced[k] else "DIFFERENT"
        lines.append(f"{k:24} {str(c.logged[k]):34} {str(c.reproduced[k]):34} {mark}")
    if c.weights_max_difference == 0:
        lines.append("weights: bitwise identical to the logged model")
    elif c.weights_max_difference is not None:
        lines.append(f"weights: differ from the logged model by up to {c.weights_max_difference:.3g}")
    if c.agrees:
        lines.append(f"reproduced: the same correct counts on every set (recorded as run {c.reproduction_id})")
    else:
        lines.append(f"NOT reproduced (recorded as run {c.reproduction_id})")
    if c.environment_changes:
        lines.append("the environment differed: " + "; ".join(c.environment_changes))
    return lines
