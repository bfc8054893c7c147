"""Writing the record: the study's experiment and parent runs, and one run per configuration
trained (a trial's, a seed's or a reproduction's) with everything needed to train it again,
written to as it trains. Names are `sweep.tracking.schema`'s.

The model is an MLflow model (Keras flavour) named `model`, linked to the run's final metrics:
`mlflow.pyfunc.load_model("runs:/<run id>/model")` predicts logits with it.
"""

from __future__ import annotations

import io
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import numpy as np
import optuna
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from sweep.errors import TrainingDiverged, TrainingStopped
from sweep.stats import VAL_ACCURACY, Accuracy
from sweep.tracking import checkpoints
from sweep.tracking.environment import environment, git_commit, library_version
from sweep.tracking.schema import (
    ARTIFACT_MODEL,
    ARTIFACT_PREDICTIONS,
    COUNT_SUFFIXES,
    INTERVAL_SUFFIXES,
    METRIC_SAMPLES_PER_SECOND,
    METRIC_TRAIN_IMAGES,
    METRIC_TRAIN_LOSS,
    METRIC_TRAIN_SECONDS,
    STATE_COMPLETE,
    STATE_FAIL,
    STATE_PRUNED,
    STATUS_FAILED,
    STATUS_FINISHED,
    STATUS_KILLED,
    TAG_DATA_DIR,
    TAG_FAILURE,
    TAG_GIT_COMMIT,
    TAG_NOTE,
    TAG_PRUNED,
    TAG_RESUMED_AT,
    TAG_RESUMED_FROM,
    TAG_TRIAL_STATE,
)
from sweep.tracking.store import fluent, retried
from sweep.training.checkpoint import Checkpoint
from sweep.training.config import CurvePoint, TrainConfig, TrainResult
from sweep.training.data import Mnist


def config_params(config: TrainConfig) -> dict[str, str]:
    """Every field, None included ("None": the whole split), so the run alone can rebuild it."""
    return {key: str(value) for key, value in asdict(config).items()}


def accuracy_metrics(accuracies: dict[str, Accuracy]) -> dict[str, float]:
    """Each accuracy as metrics: its value, the counts behind it and its 95% interval."""
    values = {}
    for name, acc in accuracies.items():
        values[name] = acc.value
        values.update(zip((f"{name}{s}" for s in COUNT_SUFFIXES), (acc.correct, acc.total), strict=True))
        values.update(zip((f"{name}{s}" for s in INTERVAL_SUFFIXES), acc.interval(), strict=True))
    return values


def model_signature():
    """The logged model's input and output: (N, 28, 28) float32 images in, (N, 10) logits out."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 28, 28))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 10))]),
    )


class ConfigRun:
    """One configuration's MLflow run (a trial's, a seed's or a reproduction's), written to as
    it trains, with its latest checkpoint as an artifact that every worker can read."""

    def __init__(self, client: MlflowClient, experiment_id: str, run_id: str):
        self.client, self.experiment_id, self.run_id = client, experiment_id, run_id
        self.resumed_from: str | None = None  # the run holding the checkpoint this one continued, if any
        self.checkpoint: str | None = None  # the artifact path of this run's latest checkpoint
        self._logged: set[tuple[str, int, float]] = set()  # the last curve point is also a final metric

    def _log(self, values: dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        new = {(k, step, float(v)) for k, v in values.items()} - self._logged
        retried(self.client.log_batch)(self.run_id, metrics=[Metric(k, v, now, step) for k, step, v in sorted(new)])
        self._logged |= new

    def log_curve_point(self, p: CurvePoint) -> None:
        """A point of the curves; its validation total says how many images it used (curve_val_limit)."""
        self._log(
            {
                VAL_ACCURACY: p.val.value,
                f"{VAL_ACCURACY}{COUNT_SUFFIXES[1]}": p.val.total,
                METRIC_TRAIN_LOSS: p.train_loss,
                METRIC_TRAIN_SECONDS: p.train_seconds,
                METRIC_TRAIN_IMAGES: p.train_images,
            },
            p.point,
        )

    def log_accuracies(self, accuracies: dict[str, Accuracy], step: int) -> None:
        self._log(accuracy_metrics(accuracies), step)

    def log_result(self, result: TrainResult) -> None:
        """The final metrics, at the last curve point's step, each image's predicted class beside
        its label, then the model, which MLflow links to the metrics logged at that step (so the
        Models tab compares trials)."""
        self.log_accuracies(result.accuracies, result.last_point)
        self._log(
            {
                METRIC_TRAIN_SECONDS: result.train_seconds,
                METRIC_TRAIN_IMAGES: result.train_images,
                METRIC_SAMPLES_PER_SECOND: result.samples_per_second,
            },
            result.last_point,
        )
        self.log_predictions(result.predictions)
        self.log_model(result.model, result.last_point)

    def log_predictions(self, predictions: dict[str, np.ndarray]) -> None:
        """Each image's predicted class and label, compressed (a few KB): two models scored on the
        same images are compared image by image (`sweep.stats.Paired`)."""
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **predictions)
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / ARTIFACT_PREDICTIONS).write_bytes(buffer.getvalue())
            retried(self.client.log_artifact)(self.run_id, str(Path(tmp) / ARTIFACT_PREDICTIONS))

    def log_resumed(self, holder: str, checkpoint: Checkpoint) -> None:
        """Say that this run continues `holder`'s checkpoint, and log the curve up to it, so the
        run shows one unbroken curve."""
        last = checkpoint.curve[-1].point if checkpoint.curve else None
        where = f"step {checkpoint.step}" + (
            f" (after {checkpoint.config.point_name(last)})" if last is not None else ""
        )
        retried(self.client.log_batch)(
            self.run_id,
            tags=[
                RunTag(TAG_RESUMED_FROM, holder),
                RunTag(TAG_RESUMED_AT, str(checkpoint.step)),
                RunTag(TAG_NOTE, f"Resumed at {where} from the checkpoint of run {holder}."),
            ],
        )
        for point in checkpoint.curve:
            self.log_curve_point(point)
        self.resumed_from = holder

    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        """This run's latest checkpoint; the first one also supersedes the one it resumed from."""
        first = self.checkpoint is None
        self.checkpoint = checkpoints.save_checkpoint(self.client, self.run_id, checkpoint, self.checkpoint)
        if first and self.resumed_from is not None:
            checkpoints.delete_checkpoints(self.client, self.resumed_from)

    def discard_checkpoints(self) -> None:
        """The training ended for good (finished, pruned or diverged): no checkpoint of it stays."""
        for run_id in filter(None, (self.run_id if self.checkpoint else None, self.resumed_from)):
            checkpoints.delete_checkpoints(self.client, run_id)
        self.checkpoint = None

    def log_model(self, model, step: int) -> str:
        """The model as an MLflow model (Keras flavour) named `model`, in this run's experiment,
        with the run's params; its id (models:/<id>)."""
        import mlflow

        params = self.client.get_run(self.run_id).data.params
        logged = self.client.create_logged_model(
            self.experiment_id, name=ARTIFACT_MODEL, source_run_id=self.run_id, params=params
        )
        requirements = [
            f"tensorflow=={library_version('tensorflow')}",
            f"keras=={library_version('keras')}",
        ]  # not inferred: that loads the model in a subprocess
        with fluent(self.client):
            mlflow.models.Model.log(
                None,
                name=ARTIFACT_MODEL,
                flavor=mlflow.keras,
                model=model,
                run_id=self.run_id,
                model_id=logged.model_id,
                signature=model_signature(),
                pip_requirements=requirements,
                step=step,
            )
        return logged.model_id


@retried
def mark_failed(client: MlflowClient, run_id: str, reason: str, status: str = STATUS_FAILED) -> None:
    """Close a run as a failed trial, saying why (FAILED, or KILLED when stopped from outside)."""
    client.log_batch(run_id, tags=[RunTag(TAG_FAILURE, reason[:5000]), RunTag(TAG_TRIAL_STATE, STATE_FAIL)])
    client.set_terminated(run_id, status=status)


@contextmanager
def config_run(
    client: MlflowClient,
    experiment_id: str,
    name: str,
    config: TrainConfig,
    data: Mnist,
    backend: dict[str, str],
    tags: dict[str, str],
) -> Iterator[ConfigRun]:
    """A run about one configuration (a trial, a seed, or a reproduction), its params logged
    first: FINISHED if the body returns, FAILED or KILLED (reason in the failure tag) if it
    raises."""
    found = {TAG_GIT_COMMIT: git_commit(), TAG_DATA_DIR: data.folder}
    run = client.create_run(experiment_id, run_name=name, tags={**tags, **{k: v for k, v in found.items() if v}})
    run_id = run.info.run_id
    params = {**config_params(config), **environment(data.md5, backend)}
    client.log_batch(run_id, params=[Param(k, v) for k, v in params.items()])
    record = ConfigRun(client, experiment_id, run_id)
    try:
        yield record
    except optuna.TrialPruned as e:
        record.discard_checkpoints()
        client.log_batch(run_id, tags=[RunTag(TAG_TRIAL_STATE, STATE_PRUNED), RunTag(TAG_PRUNED, str(e))])
        client.set_terminated(run_id, status=STATUS_KILLED)  # stopped early, on purpose; the partial curve stays
        raise
    except BaseException as e:
        if isinstance(e, TrainingDiverged):  # nothing to resume
            record.discard_checkpoints()
        reason = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        mark_failed(
            client,
            run_id,
            reason,
            STATUS_KILLED if isinstance(e, (KeyboardInterrupt, TrainingStopped)) else STATUS_FAILED,
        )
        raise
    record.discard_checkpoints()
    _finish(client, run_id)


@retried
def _finish(client: MlflowClient, run_id: str) -> None:
    """Close a run as a complete trial."""
    client.log_batch(run_id, tags=[RunTag(TAG_TRIAL_STATE, STATE_COMPLETE)])
    client.set_terminated(run_id, status=STATUS_FINISHED)
