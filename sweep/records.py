"""The MLflow schema: every tag, role and metric name the tool writes or reads is spelled here.

An experiment per study holds one parent run per study, a nested run per trial, and the runs
of `baseline` and `reproduce`, told apart by the tag `sweep.role`. A trial's run holds
everything needed to train it again (every TrainConfig field, the LSTM backend, the MNIST MD5s,
library versions, the tool's git commit) besides its metrics, curves and model. The model is an
MLflow model (Keras flavour) named `model`, linked to the run's final metrics:
`mlflow.pyfunc.load_model("runs:/<run id>/model")` predicts logits with it.
"""

from __future__ import annotations

import functools
import platform
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import mlflow
import optuna
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, Run, RunTag
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NOTE

from sweep.config import CurvePoint, TrainConfig, TrainResult
from sweep.data import Mnist
from sweep.errors import SweepError, TrainingStopped
from sweep.spec import Spec
from sweep.stats import Accuracy
from sweep.stores import mask_url

ROLE = "sweep.role"  # which kind of run: one of the roles below
STUDY, TRIAL, BASELINE, BASELINE_SEED, REPRODUCTION = "study", "trial", "baseline", "baseline-seed", "reproduction"
CONFIRM, CONFIRM_SEED = "confirm", "confirm-seed"  # a top trial's configuration trained again with other seeds
STUDY_NAME, TRIAL_NUMBER = "optuna.study_name", "optuna.trial_number"
TRIAL_STATE = "sweep.trial_state"  # COMPLETE, PRUNED or FAIL, as in Optuna
FAILURE, PRUNED = "sweep.failure", "sweep.pruned"  # why
REPRODUCES, REPRODUCED = "sweep.reproduces", "sweep.reproduced"
GIT_COMMIT = "sweep.git_commit"  # the tool's commit, on every run about a configuration
DATA_DIR = "sweep.data_dir"  # where MNIST was read (absent: downloaded)
NOTE = MLFLOW_RUN_NOTE  # the run's or experiment's description in the UI
ACCURACIES = ("val_accuracy", "test_accuracy", "test_accuracy_first128")  # validation chooses; test reports
BEST_METRICS = (*ACCURACIES, "train_seconds")


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


def environment(md5: dict[str, str], backend: dict[str, str]) -> dict[str, str]:
    """What a result depends on besides its configuration; `backend`: the LSTM backend's own
    record (`sweep.model.Backend.params`)."""
    import keras
    import numpy
    import tensorflow

    env = {f"version.{m.__name__}": m.__version__ for m in (tensorflow, keras, numpy, optuna, mlflow)}
    env["version.python"] = platform.python_version()
    env.update(backend)
    env.update({f"mnist_md5.{name}": digest for name, digest in md5.items()})
    return env


def config_params(config: TrainConfig) -> dict[str, str]:
    """Every field, None included ("None": the whole split), so the run alone can rebuild it."""
    return {key: str(value) for key, value in asdict(config).items()}


def config_of(run: Run) -> TrainConfig:
    """The run's configuration; a field it lacks was added to TrainConfig after it was logged,
    and takes its default, which keeps the earlier behaviour."""
    types, params = TrainConfig.field_types(), run.data.params
    return TrainConfig(**{k: None if params[k] == "None" else types[k](params[k]) for k in types if k in params})


def accuracy_metrics(accuracies: dict[str, Accuracy]) -> dict[str, float]:
    """Each accuracy as metrics: its value, the counts behind it and its 95% interval."""
    values = {}
    for name, acc in accuracies.items():
        low, high = acc.interval()
        values.update({name: acc.value, f"{name}_correct": acc.correct, f"{name}_total": acc.total})
        values.update({f"{name}_ci95_low": low, f"{name}_ci95_high": high})
    return values


def accuracies_of(run: Run) -> dict[str, Accuracy]:
    """The run's final accuracies, read back from their counts."""
    m = run.data.metrics
    try:
        return {k: Accuracy(int(m[f"{k}_correct"]), int(m[f"{k}_total"])) for k in ACCURACIES}
    except KeyError as e:
        raise SweepError(f"run {run.info.run_id} lacks the metric {e.args[0]}; there is no result to compare") from None


def model_signature():
    """The logged model's input and output: (N, 28, 28) float32 images in, (N, 10) logits out."""
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    return ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 28, 28))]),
                          outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 10))]))


class TrialRun:
    """One configuration's MLflow run, written to as it trains."""

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
        self._log(accuracy_metrics(accuracies), step)

    def log_result(self, result: TrainResult) -> None:
        """The final metrics, at the last curve point's step, then the model, which MLflow links
        to the metrics logged at that step (so the Models tab compares trials)."""
        self.log_accuracies(result.accuracies, result.last_point)
        self._log({"train_seconds": result.train_seconds, "samples_per_second": result.samples_per_second}, result.last_point)
        self.log_model(result.model, result.last_point)

    def log_model(self, model, step: int) -> str:
        """The model as an MLflow model (Keras flavour) named `model`; its id (models:/<id>).
        MLflow logs models through its fluent API: `sweep.stores.mlflow_client` points it here."""
        import keras
        import tensorflow

        mlflow.set_experiment(experiment_id=self.experiment_id)
        requirements = [f"tensorflow=={tensorflow.__version__}", f"keras=={keras.__version__}"]  # not inferred: that loads the model in a subprocess
        info = mlflow.models.Model.log(None, name="model", flavor=mlflow.keras, model=model, run_id=self.run_id,
                                       signature=model_signature(), pip_requirements=requirements, step=step)
        return info.model_id

    def log_reproduction(self, original: Run, agrees: bool, mode: str, changes: list[str], weights_difference: float | None) -> None:
        """The verdict, on the reproduction and on the run it reproduces."""
        verdict = "agrees" if agrees else "differs"
        if weights_difference is not None:
            self.client.log_metric(self.run_id, "weights_max_abs_difference", weights_difference)
        self.client.log_batch(self.run_id, tags=[
            RunTag("sweep.reproduction.result", verdict),
            RunTag("sweep.reproduction.environment", "; ".join(changes) or "same"),
        ])
        self.client.set_tag(original.info.run_id, REPRODUCED, f"{verdict} ({mode}, run {self.run_id})")


def mark_failed(client: MlflowClient, run_id: str, reason: str, status: str = "FAILED") -> None:
    """Close a run as a failed trial, saying why (FAILED, or KILLED when stopped from outside)."""
    client.log_batch(run_id, tags=[RunTag(FAILURE, reason[:5000]), RunTag(TRIAL_STATE, "FAIL")])
    client.set_terminated(run_id, status=status)


@contextmanager
def config_run(
    client: MlflowClient, experiment_id: str, name: str, config: TrainConfig, data: Mnist, backend: dict[str, str],
    tags: dict[str, str],
) -> Iterator[TrialRun]:
    """A run about one configuration (a trial, a seed, or a reproduction), its params logged
    first: FINISHED if the body returns, FAILED or KILLED (reason in the tag `sweep.failure`)
    if it raises."""
    found = {GIT_COMMIT: git_commit(), DATA_DIR: data.folder}
    run = client.create_run(experiment_id, run_name=name, tags={**tags, **{k: v for k, v in found.items() if v}})
    run_id = run.info.run_id
    params = {**config_params(config), **environment(data.md5, backend)}
    client.log_batch(run_id, params=[Param(k, v) for k, v in params.items()])
    try:
        yield TrialRun(client, experiment_id, run_id)
    except optuna.TrialPruned as e:
        client.log_batch(run_id, tags=[RunTag(TRIAL_STATE, "PRUNED"), RunTag(PRUNED, str(e))])
        client.set_terminated(run_id, status="KILLED")  # stopped early, on purpose; the partial curve stays
        raise
    except BaseException as e:
        reason = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        mark_failed(client, run_id, reason, "KILLED" if isinstance(e, (KeyboardInterrupt, TrainingStopped)) else "FAILED")
        raise
    client.log_batch(run_id, tags=[RunTag(TRIAL_STATE, "COMPLETE")])
    client.set_terminated(run_id, status="FINISHED")


def experiment_id(client: MlflowClient, spec: Spec) -> str:
    """The study's experiment, created on first use."""
    experiment = client.get_experiment_by_name(spec.name)
    if experiment is not None:
        return experiment.experiment_id
    return client.create_experiment(spec.name, tags={NOTE: spec.description})


def runs_of(client: MlflowClient, study_name: str, role: str, where: str = "", **search) -> list[Run]:
    """The study's runs in one role (none if the study has no experiment yet)."""
    experiment = client.get_experiment_by_name(study_name)
    if experiment is None:
        return []
    query = f"tags.`{ROLE}` = '{role}'" + (f" and {where}" if where else "")
    return client.search_runs([experiment.experiment_id], query, **search)


def study_names(client: MlflowClient) -> list[str]:
    """The studies this tracking store holds: experiments with a study's parent run."""
    experiments = client.search_experiments()
    found = client.search_runs([e.experiment_id for e in experiments], f"tags.`{ROLE}` = '{STUDY}'") if experiments else []
    return sorted({run.data.tags[STUDY_NAME] for run in found})


def study_run(client: MlflowClient, study_name: str) -> Run | None:
    """The study's parent run: the oldest, if workers starting together made several."""
    found = runs_of(client, study_name, STUDY, order_by=["attributes.start_time ASC"], max_results=1)
    return found[0] if found else None


def trial_runs(client: MlflowClient, study_name: str, number: int | None = None) -> list[Run]:
    """The study's trial runs (of one trial number, newest first, when given)."""
    where = "" if number is None else f"tags.`{TRIAL_NUMBER}` = '{number}'"
    return runs_of(client, study_name, TRIAL, where, order_by=["attributes.start_time DESC"])


def data_dir(run: Run) -> str | None:
    """Where the run read MNIST, if it read files."""
    return run.data.tags.get(DATA_DIR)


def is_trial(run: Run) -> bool:
    return run.data.tags.get(ROLE) == TRIAL


def trial_number(run: Run) -> int:
    return int(run.data.tags[TRIAL_NUMBER])


def baseline_runs(client: MlflowClient, study_name: str) -> list[Run]:
    """The finished seed runs of a study's baseline, by seed."""
    runs = runs_of(client, study_name, BASELINE_SEED, "attributes.status = 'FINISHED'")
    return sorted(runs, key=lambda r: int(r.data.params["seed"]))


def parent_run(client: MlflowClient, spec: Spec, role: str, note: str) -> str:
    """The id of the study's parent run in `role` (named after it), created on first use,
    marked RUNNING."""
    found = runs_of(client, spec.name, role, max_results=1)
    if found:
        run_id = found[0].info.run_id
        client.update_run(run_id, status="RUNNING")
        return run_id
    return client.create_run(experiment_id(client, spec), run_name=role, tags={ROLE: role, NOTE: note}).info.run_id


def baseline_run(client: MlflowClient, spec: Spec) -> str:
    note = f"The study's baseline (trial 0's configuration) trained with seeds 0, 1, 2, ... ({spec.name})."
    return parent_run(client, spec, BASELINE, note)


def confirm_run(client: MlflowClient, spec: Spec) -> str:
    note = (f"The study's top trials by validation accuracy, each trained again with seeds 0, 1, 2, ...; "
            f"`python sweep.py confirm` chooses among them on mean validation accuracy ({spec.name}).")
    return parent_run(client, spec, CONFIRM, note)


def confirm_runs(client: MlflowClient, study_name: str) -> list[Run]:
    """The finished seed runs of `confirm`, every trial's."""
    return runs_of(client, study_name, CONFIRM_SEED, "attributes.status = 'FINISHED'")


def confirm_seed_run(client: MlflowClient, spec: Spec, parent_id: str, number: int, config: TrainConfig, data: Mnist,
                     backend: dict[str, str]):
    tags = {MLFLOW_PARENT_RUN_ID: parent_id, ROLE: CONFIRM_SEED, STUDY_NAME: spec.name, TRIAL_NUMBER: str(number)}
    return config_run(client, experiment_id(client, spec), f"trial-{number:04d}-seed-{config.seed}", config, data,
                      backend, tags)


def baseline_seed_run(client: MlflowClient, spec: Spec, parent_id: str, config: TrainConfig, data: Mnist, backend: dict[str, str]):
    tags = {MLFLOW_PARENT_RUN_ID: parent_id, ROLE: BASELINE_SEED, STUDY_NAME: spec.name}
    return config_run(client, experiment_id(client, spec), f"baseline-seed-{config.seed}", config, data, backend, tags)


def reproduction_run(client: MlflowClient, original: Run, config: TrainConfig, data: Mnist, backend: dict[str, str], mode: str):
    """A run nested under the one it reproduces, tagged `sweep.reproduces=<its id>`."""
    tags = {MLFLOW_PARENT_RUN_ID: original.info.run_id, ROLE: REPRODUCTION, REPRODUCES: original.info.run_id,
            "sweep.reproduction.mode": mode}
    return config_run(client, original.info.experiment_id, f"reproduce-{original.info.run_name}", config, data, backend, tags)


class StudyTracker:
    """The study's experiment and parent run, found again when the study continues."""

    def __init__(self, client: MlflowClient, spec: Spec, storage_url: str):
        self.client, self.spec = client, spec
        self.experiment_id = experiment_id(client, spec)
        self.parent_id = self._parent_run(storage_url)

    def _parent_run(self, storage_url: str) -> str:
        found = study_run(self.client, self.spec.name)
        if found:
            self.client.update_run(found.info.run_id, status="RUNNING")
            return found.info.run_id
        run = self.client.create_run(
            self.experiment_id,
            run_name=f"study-{self.spec.name}",
            tags={ROLE: STUDY, STUDY_NAME: self.spec.name, NOTE: self.spec.description},
        )
        params = {"optuna.storage": mask_url(storage_url), "sampler": self.spec.sampler, "sampler_seed": self.spec.sampler_seed}
        params.update({f"fixed.{k}": v for k, v in config_params(self.spec.fixed).items() if k not in self.spec.search})
        params.update({f"search.{p.name}": f"{p.type} [{p.low}, {p.high}]{' log' if p.log else ''}" for p in self.spec.search.values()})
        self.client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()])
        self.client.log_text(run.info.run_id, self.spec.source, "study.toml")
        first = study_run(self.client, self.spec.name).info.run_id  # workers starting together may each have made one
        if first != run.info.run_id:
            self.client.delete_run(run.info.run_id)
        return first

    def trial_run(self, number: int, config: TrainConfig, data: Mnist, backend: dict[str, str]):
        """The trial's run, nested under the study's parent run."""
        tags = {MLFLOW_PARENT_RUN_ID: self.parent_id, ROLE: TRIAL, STUDY_NAME: self.spec.name, TRIAL_NUMBER: str(number)}
        return config_run(self.client, self.experiment_id, f"trial-{number:04d}", config, data, backend, tags)

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


def log_report(client: MlflowClient, study_name: str, folder: Path, summary: list[str]) -> None:
    """The report as artifacts (`report/`) of the study's parent run, whose description becomes
    what the study is and where it stands against the claim."""
    parent = study_run(client, study_name)
    if parent is None:
        return
    client.log_artifacts(parent.info.run_id, str(folder), artifact_path="report")
    about = client.get_experiment_by_name(study_name).tags.get(NOTE, "")
    client.set_tag(parent.info.run_id, NOTE, "\n\n".join([about, *summary, "Full report: artifacts, report/report.html."]).strip())


BEST = "best"  # the registered model's alias for the validation-chosen trial


def register_best(client: MlflowClient, study_name: str, run_id: str) -> str | None:
    """Register the run's logged model as version of the registered model `<study>` and point
    its alias `best` at it: `models:/<study>@best` loads the current choice, and the registry
    page links back to the run. Safe for workers finishing at once: a run already registered is
    not registered again, and the alias is set again if another worker's write collided with
    ours. The version, or None for a run that logged no MLflow model (runs from before the
    stock Keras model)."""
    experiment = client.get_experiment_by_name(study_name)
    models = client.search_logged_models([experiment.experiment_id], filter_string=f"source_run_id = '{run_id}'")
    if not models:
        return None
    registered = client.search_model_versions(f"name = '{study_name}' and run_id = '{run_id}'")
    version = registered[0].version if registered else mlflow.register_model(f"models:/{models[0].model_id}", study_name).version
    try:
        client.set_registered_model_alias(study_name, BEST, version)
    except MlflowException:  # two workers inserted the alias at once; now it exists, so this updates it
        client.set_registered_model_alias(study_name, BEST, version)
    return version
