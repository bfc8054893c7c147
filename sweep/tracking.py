"""MLflow records: an experiment per study, one parent run per study, a nested run per trial.

A trial's run holds everything needed to train it again (every TrainConfig field, the LSTM
backend, the MNIST MD5s, library versions, the tool's git commit) besides its metrics, curves
and model. The model is an MLflow model (Keras flavour) named `model`, linked to the run's final
metrics: `mlflow.pyfunc.load_model("runs:/<run id>/model")` predicts logits with it.
"""

from __future__ import annotations

import functools
import platform
import random
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit, urlunsplit

import mlflow
import optuna
import sqlalchemy
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NOTE

from sweep.config import CurvePoint, TrainConfig
from sweep.errors import SweepError, TrainingStopped
from sweep.spec import Spec
from sweep.stats import Accuracy

if TYPE_CHECKING:  # the trainer imports TensorFlow; reading runs must not wait for it
    from sweep.model import Backend
    from sweep.train import TrainResult

T = TypeVar("T")
ROLE = "sweep.role"  # "study" on a parent run, "trial" on a trial's run
BEST_METRICS = ("val_accuracy", "test_accuracy", "test_accuracy_first128", "train_seconds")


def mask_url(url: str) -> str:
    """The URL with any password replaced by ***, fit to print or record."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


@functools.cache
def git_commit() -> str | None:
    """The tool's own commit (with "-dirty" for local edits), when it runs from a git checkout.
    Read once per process: the code a process runs does not change under it."""
    here = Path(__file__).parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "."], cwd=here, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def environment(md5: dict[str, str], backend: Backend) -> dict[str, str]:
    """What a result depends on besides its configuration."""
    import keras
    import numpy
    import tensorflow

    env = {f"version.{m.__name__}": m.__version__ for m in (tensorflow, keras, numpy, optuna, mlflow)}
    env["version.python"] = platform.python_version()
    env.update(backend.params())
    env.update({f"mnist_md5.{name}": digest for name, digest in md5.items()})
    return env


def config_params(config: TrainConfig) -> dict[str, str]:
    """Every field, None included ("None": the whole split), so the run alone can rebuild it."""
    return {key: str(value) for key, value in asdict(config).items()}


def model_signature():
    """The logged model's input and output: (N, 28, 28) float32 images in, (N, 10) logits out."""
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    return ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 28, 28))]),
                          outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 10))]))


class TrialRun:
    """One trial's MLflow run, written to as the trial trains."""

    def __init__(self, client: MlflowClient, experiment_id: str, run_id: str):
        self.client, self.experiment_id, self.run_id = client, experiment_id, run_id
        self._logged: set[tuple[str, int, float]] = set()  # the last curve point is also a final metric

    def _log(self, values: dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        new = {(k, step, float(v)) for k, v in values.items()} - self._logged
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, step, v in sorted(new)])
        self._logged |= new

    def log_curve_point(self, p: CurvePoint) -> None:
        values = {"val_accuracy": p.val.value, "val_accuracy_total": p.val.total}  # the total: see curve_val_limit
        self._log({**values, "train_loss": p.train_loss, "train_seconds": p.train_seconds}, p.point)

    def log_accuracies(self, accuracies: dict[str, Accuracy], step: int) -> None:
        """Each accuracy metric, with the counts and the 95% interval behind it."""
        values = {}
        for name, acc in accuracies.items():
            low, high = acc.interval()
            values.update({name: acc.value, f"{name}_correct": acc.correct, f"{name}_total": acc.total})
            values.update({f"{name}_ci95_low": low, f"{name}_ci95_high": high})
        self._log(values, step)

    def log_result(self, result: TrainResult) -> None:
        """The final metrics, at the last curve point's step, then the model, which MLflow links
        to the metrics logged at that step (so the Models tab compares trials)."""
        self.log_accuracies(result.accuracies, result.last_point)
        self._log({"train_seconds": result.train_seconds, "samples_per_second": result.samples_per_second}, result.last_point)
        self.log_model(result.model, result.last_point)

    def log_model(self, model, step: int) -> str:
        """The model as an MLflow model (Keras flavour) named `model`; its id (models:/<id>).
        MLflow logs models through its fluent API: `connect` points it at this store."""
        import keras
        import tensorflow

        mlflow.set_experiment(experiment_id=self.experiment_id)
        requirements = [f"tensorflow=={tensorflow.__version__}", f"keras=={keras.__version__}"]  # not inferred: that loads the model in a subprocess
        info = mlflow.models.Model.log(None, name="model", flavor=mlflow.keras, model=model, run_id=self.run_id,
                                       signature=model_signature(), pip_requirements=requirements, step=step)
        return info.model_id


def retry_first_use(open_store: Callable[[], T], attempts: int = 4) -> T:
    """Open a store, again after a pause if the first try fails: workers that start together
    on an empty database race to create its tables, and all but one lose that race."""
    for attempt in range(attempts):
        try:
            return open_store()
        except Exception:  # noqa: BLE001  the losers' errors vary by database; the last try re-raises
            if attempt == attempts - 1:
                raise
            time.sleep(1 + attempt + random.random())
    raise AssertionError("unreachable")


def connect(tracking_uri: str) -> MlflowClient:
    """A client for a store that answers; nothing is written yet."""

    def open_store() -> MlflowClient:
        client = MlflowClient(tracking_uri)
        client.search_experiments(max_results=1)
        mlflow.set_tracking_uri(tracking_uri)  # for MLflow's fluent API, which logs and loads models
        return client

    try:
        _check_reachable(tracking_uri)
        return retry_first_use(open_store)
    except Exception as e:  # MLflow raises many types for an unusable store; all mean the same
        raise SweepError(f"cannot open MLflow tracking store {mask_url(tracking_uri)}: {_first_line(e)}") from None


@contextmanager
def config_run(
    client: MlflowClient, experiment_id: str, name: str, config: TrainConfig, md5: dict[str, str], backend: Backend,
    tags: dict[str, str],
) -> Iterator[TrialRun]:
    """A run about one configuration (a trial, or a reproduction of one), its params logged
    first: FINISHED if the body returns, FAILED or KILLED (reason in the tag `sweep.failure`)
    if it raises."""
    commit = git_commit()
    run = client.create_run(experiment_id, run_name=name, tags={**tags, **({"sweep.git_commit": commit} if commit else {})})
    run_id = run.info.run_id
    params = {**config_params(config), **environment(md5, backend)}
    client.log_batch(run_id, params=[Param(k, v) for k, v in params.items()])
    try:
        yield TrialRun(client, experiment_id, run_id)
    except optuna.TrialPruned as e:
        client.log_batch(run_id, tags=[RunTag("sweep.trial_state", "PRUNED"), RunTag("sweep.pruned", str(e))])
        client.set_terminated(run_id, status="KILLED")  # stopped early, on purpose; the partial curve stays
        raise
    except BaseException as e:
        reason = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        client.log_batch(run_id, tags=[RunTag("sweep.failure", reason[:5000]), RunTag("sweep.trial_state", "FAIL")])
        client.set_terminated(run_id, status="KILLED" if isinstance(e, (KeyboardInterrupt, TrainingStopped)) else "FAILED")
        raise
    client.log_batch(run_id, tags=[RunTag("sweep.trial_state", "COMPLETE")])
    client.set_terminated(run_id, status="FINISHED")


def experiment_id(client: MlflowClient, spec: Spec) -> str:
    """The study's experiment, created on first use."""
    experiment = client.get_experiment_by_name(spec.name)
    if experiment is not None:
        return experiment.experiment_id
    return client.create_experiment(spec.name, tags={"mlflow.note.content": spec.description})


class StudyTracker:
    """The study's experiment and parent run, found again when the study continues."""

    def __init__(self, client: MlflowClient, spec: Spec, storage_url: str):
        self.client, self.spec = client, spec
        self.experiment_id = experiment_id(client, spec)
        self.parent_id = self._parent_run(storage_url)

    def _parent_run(self, storage_url: str) -> str:
        found = self.client.search_runs(
            [self.experiment_id], f"tags.`{ROLE}` = 'study'", order_by=["attributes.start_time ASC"], max_results=1
        )
        if found:
            run_id = found[0].info.run_id
            self.client.update_run(run_id, status="RUNNING")
            return run_id
        run = self.client.create_run(
            self.experiment_id,
            run_name=f"study-{self.spec.name}",
            tags={ROLE: "study", "optuna.study_name": self.spec.name, MLFLOW_RUN_NOTE: self.spec.description},
        )
        params = {"optuna.storage": mask_url(storage_url), "sampler": self.spec.sampler, "sampler_seed": self.spec.sampler_seed}
        params.update({f"fixed.{k}": v for k, v in config_params(self.spec.fixed).items() if k not in self.spec.search})
        params.update({f"search.{p.name}": f"{p.type} [{p.low}, {p.high}]{' log' if p.log else ''}" for p in self.spec.search.values()})
        self.client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()])
        self.client.log_text(run.info.run_id, self.spec.source, "study.toml")
        # Workers starting together may each have created one; all keep the oldest.
        first = self.client.search_runs(
            [self.experiment_id], f"tags.`{ROLE}` = 'study'", order_by=["attributes.start_time ASC"], max_results=1
        )[0].info.run_id
        if first != run.info.run_id:
            self.client.delete_run(run.info.run_id)
        return first

    def trial_run(self, number: int, config: TrainConfig, md5: dict[str, str], backend: Backend):
        """The trial's run, nested under the study's parent run."""
        tags = {MLFLOW_PARENT_RUN_ID: self.parent_id, ROLE: "trial", "optuna.study_name": self.spec.name,
                "optuna.trial_number": str(number)}
        return config_run(self.client, self.experiment_id, f"trial-{number:04d}", config, md5, backend, tags)

    def record_best(self, number: int, params: dict, run_id: str) -> None:
        """The best trial so far on the parent run, so the study's row and page answer "which
        one, and how good?": its metrics (step = trial number) and its number and params as tags."""
        now = int(time.time() * 1000)
        metrics = self.client.get_run(run_id).data.metrics
        self.client.log_batch(
            self.parent_id,
            metrics=[Metric(k, metrics[k], now, number) for k in BEST_METRICS if k in metrics],
            tags=[RunTag("best.trial_number", str(number)), RunTag("best.run_id", run_id)]
            + [RunTag(f"best.{k}", str(v)) for k, v in params.items()],
        )

    def close(self, status: str) -> None:
        self.client.set_terminated(self.parent_id, status=status)


def _check_reachable(uri: str) -> None:
    """Fail in seconds: MLflow itself retries an unreachable store for about two minutes."""
    scheme = urlsplit(uri).scheme.split("+")[0]
    if scheme in ("http", "https"):
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=10).close()
    elif scheme in ("postgresql", "mysql", "mssql"):
        engine = sqlalchemy.create_engine(uri)
        try:
            engine.connect().close()
        finally:
            engine.dispose()


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
