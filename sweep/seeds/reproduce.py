"""Reproduction: train a logged run (a trial's, or a seed's of baseline or confirm) again from its
MLflow run alone, and compare.

The run is the whole record: its params rebuild the TrainConfig (its seed and validation fold
among them), so neither the Optuna storage nor the study file (which may have changed since) is
read. Agreement means the same number of correct images on every set, exactly: training is
seeded and deterministic on CPU, given the backend the run recorded (runs logged before
backends existed use the v1 model and the op).
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, replace

import keras
import mlflow
import numpy as np
from mlflow import MlflowClient
from mlflow.entities import Run, RunTag
from mlflow.exceptions import MlflowException

import sweep.training.model_v1  # noqa: F401  registers the v1 layer, which runs logged before the stock LSTM saved
from sweep.errors import SweepError
from sweep.seeds.train import RunHooks
from sweep.stats import ACCURACIES, VAL_ACCURACY, Accuracy
from sweep.tracking import queries
from sweep.tracking.environment import environment, git_commit
from sweep.tracking.runs import config_run
from sweep.tracking.schema import (
    ARTIFACT_MODEL,
    ARTIFACT_V1_MODEL,
    METRIC_WEIGHTS_DIFFERENCE,
    ROLE_BASELINE_SEED,
    ROLE_CONFIRM_SEED,
    ROLE_REPRODUCTION,
    ROLE_TRIAL,
    STATUS_FINISHED,
    TAG_GIT_COMMIT,
    TAG_PARENT,
    TAG_REPRODUCED,
    TAG_REPRODUCES,
    TAG_REPRODUCTION_ENVIRONMENT,
    TAG_REPRODUCTION_MODE,
    TAG_REPRODUCTION_RESULT,
    TAG_ROLE,
)
from sweep.tracking.store import fluent
from sweep.training.data import Mnist, load_mnist
from sweep.training.evaluate import Predictor, test_accuracies
from sweep.training.model import Backend, usable
from sweep.training.train import train

log = logging.getLogger(__name__)

REPRODUCIBLE = (ROLE_TRIAL, ROLE_BASELINE_SEED, ROLE_CONFIRM_SEED)  # runs of one configuration and seed


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
    """The run, by id, or the trial's by study name and trial number."""
    if run_id is not None:
        try:
            run = client.get_run(run_id)
        except MlflowException:
            raise SweepError(f"no MLflow run with id {run_id} in this tracking store (see --tracking-uri)") from None
    else:
        if study_name is None:
            names = queries.tracked_study_names(client)
            if len(names) != 1:
                held = f"{len(names)} studies ({', '.join(names)})" if names else "no study"
                raise SweepError(f"this tracking store holds {held}: name one with --study-name")
            study_name = names[0]
        if client.get_experiment_by_name(study_name) is None:
            raise SweepError(f"no study '{study_name}' in this tracking store (see --tracking-uri)")
        runs = queries.trial_runs(client, study_name, trial)
        if not runs:
            raise SweepError(f"study '{study_name}' has no run for trial {trial}")
        run = next((r for r in runs if r.info.status == STATUS_FINISHED), runs[0])
    if run.data.tags.get(TAG_ROLE) not in REPRODUCIBLE:
        raise SweepError(f"run {run.info.run_id} is not a trial's or a seed's run")
    if run.info.status != STATUS_FINISHED:
        raise SweepError(
            f"run {run.info.run_id} did not finish (status {run.info.status}): there is no result to reproduce"
        )
    return run


def environment_changes(run: Run, md5: dict[str, str], backend: Backend) -> list[str]:
    """What differs between the run's environment and this one, one phrase each."""
    now = environment(md5, backend.params())
    changes = [f"{k} {run.data.params[k]} logged, {v} here" for k, v in now.items() if run.data.params.get(k, v) != v]
    logged_commit, commit = run.data.tags.get(TAG_GIT_COMMIT), git_commit() or "unknown"
    if logged_commit and logged_commit != commit:
        changes.append(f"tool commit {_short(logged_commit)} logged, {_short(commit)} here")
    return changes


def _short(commit: str) -> str:
    return commit[:12] + ("-dirty" if commit.endswith("-dirty") else "")


def reproduce(
    client: MlflowClient, run: Run, mnist: Mnist, backend: Backend, evaluate_only: bool, progress=None
) -> Comparison:
    """Re-train the run's configuration (or re-evaluate its logged model) with `backend` (see
    `recorded_backend`), and record the reproduction as a run nested under the original, tagged
    `sweep.reproduces=<run id>`."""
    config = queries.config_of(run)
    logged = queries.accuracies_of(run)
    changes = environment_changes(run, mnist.md5, backend)
    for change in changes:
        log.warning(f"warning: environment differs: {change}")
    data = mnist.fold(config.val_fold).limit(config.train_limit, config.val_limit, config.test_limit)
    mode = "evaluate-only" if evaluate_only else "train"
    tags = {
        TAG_PARENT: run.info.run_id,
        TAG_ROLE: ROLE_REPRODUCTION,
        TAG_REPRODUCES: run.info.run_id,
        TAG_REPRODUCTION_MODE: mode,
    }
    with config_run(
        client, run.info.experiment_id, f"reproduce-{run.info.run_name}", config, mnist, backend.params(), tags
    ) as record:
        logged_model = load_logged_model(client, run)
        if evaluate_only:
            predictor = Predictor(logged_model, backend.chains)
            reproduced = {
                VAL_ACCURACY: predictor.accuracy(data.val),
                **test_accuracies(predictor.classes(data.test), data.test),
            }
            record.log_accuracies(reproduced, config.final_point(len(data.train.y)))
            difference = None
        else:
            result = train(config, mnist, backend, RunHooks(record, progress, checkpoints=False))
            reproduced = result.accuracies
            record.log_result(result)
            pairs = zip(logged_model.get_weights(), result.model.get_weights(), strict=True)
            difference = max(float(np.max(np.abs(a - b))) for a, b in pairs)
        comparison = Comparison(run, record.run_id, logged, reproduced, changes, difference)
        _record_verdict(client, record.run_id, run, comparison, mode)
    return comparison


def _record_verdict(
    client: MlflowClient, reproduction_id: str, original: Run, comparison: Comparison, mode: str
) -> None:
    """The verdict, on the reproduction and on the run it reproduces."""
    verdict = "agrees" if comparison.agrees else "differs"
    if comparison.weights_max_difference is not None:
        client.log_metric(reproduction_id, METRIC_WEIGHTS_DIFFERENCE, comparison.weights_max_difference)
    client.log_batch(
        reproduction_id,
        tags=[
            RunTag(TAG_REPRODUCTION_RESULT, verdict),
            RunTag(TAG_REPRODUCTION_ENVIRONMENT, "; ".join(comparison.environment_changes) or "same"),
        ],
    )
    client.set_tag(original.info.run_id, TAG_REPRODUCED, f"{verdict} ({mode}, run {reproduction_id})")


def recorded_data(run: Run, data_dir: str | None) -> Mnist:
    """MNIST for reproducing the run: from `data_dir` if given; else from where the run read it,
    if that folder still holds the canonical files; else from $SWEEP_DATA_DIR; else downloaded."""
    if data_dir is None and (recorded := queries.data_dir(run)):
        try:
            return load_mnist(recorded)
        except SweepError as e:
            log.warning(
                f"warning: the run's MNIST folder is no use here ({e}); trying $SWEEP_DATA_DIR, then a download"
            )
    return load_mnist(data_dir or os.environ.get("SWEEP_DATA_DIR"))


def recorded_backend(run: Run) -> Backend:
    """The backend and chain count the run was trained with. Where that backend cannot run here
    (the native op without a compiler), keras, with a warning: the same model, other rounding."""
    recorded = Backend.from_params(run.data.params)
    try:
        usable(recorded.name)
        return recorded
    except SweepError as e:
        if recorded.name == "v1":  # its BasicLSTM layer is the op
            raise SweepError(
                f"run {run.info.run_id} was logged before the stock Keras LSTM and needs the native op: {e}"
            ) from None
        log.warning(
            f"warning: the run was trained with the {recorded.name} backend, which is not available here ({e}); "
            "using keras: expect small differences"
        )
        return replace(recorded, name="keras")


def load_logged_model(client: MlflowClient, run: Run) -> keras.Model:
    """The run's MLflow model (`runs:/<id>/model`), or for a v1 run its model/model.keras file."""
    run_id = run.info.run_id
    with tempfile.TemporaryDirectory() as tmp:
        try:
            if Backend.from_params(run.data.params).name != "v1":
                with fluent(client):
                    return mlflow.keras.load_model(f"runs:/{run_id}/{ARTIFACT_MODEL}", dst_path=tmp)
            return keras.models.load_model(client.download_artifacts(run_id, ARTIFACT_V1_MODEL, tmp))
        except (MlflowException, OSError):
            raise SweepError(f"run {run_id} has no logged model") from None


def comparison_lines(c: Comparison) -> list[str]:
    lines = [f"{'':24} {'logged':34} {'reproduced':34}"]
    for k in ACCURACIES:
        mark = "same" if c.logged[k] == c.reproduced[k] else "DIFFERENT"
        lines.append(f"{k:24} {c.logged[k]!s:34} {c.reproduced[k]!s:34} {mark}")
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
