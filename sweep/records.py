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
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import mlflow
import optuna
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, Run, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NOTE
from optuna.trial import TrialState

from sweep.checkpoint import Checkpoint, CheckpointError
from sweep.config import CurvePoint, TrainConfig, TrainResult, cpu_model
from sweep.data import TRAIN_SIZE, Mnist
from sweep.errors import SweepError, TrainingDiverged, TrainingStopped
from sweep.spec import Spec
from sweep.stats import Accuracy
from sweep.stores import mask_url

ROLE = "sweep.role"  # which kind of run: one of the roles below
STUDY, TRIAL, BASELINE, BASELINE_SEED, REPRODUCTION = "study", "trial", "baseline", "baseline-seed", "reproduction"
CONFIRM, CONFIRM_SEED = "confirm", "confirm-seed"  # a top trial's configuration trained again with other seeds
STUDY_NAME, TRIAL_NUMBER = "optuna.study_name", "optuna.trial_number"
TRIAL_STATE = "sweep.trial_state"  # COMPLETE, PRUNED or FAIL: the trial's state in Optuna
COMPLETE, PRUNED_STATE, FAIL = (s.name for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))
FINISHED, FAILED, KILLED, RUNNING = (RunStatus.to_string(s) for s in (RunStatus.FINISHED, RunStatus.FAILED, RunStatus.KILLED,
                                                                     RunStatus.RUNNING))  # an MLflow run's status
FAILURE, PRUNED = "sweep.failure", "sweep.pruned"  # why
REPRODUCES, REPRODUCED = "sweep.reproduces", "sweep.reproduced"
GIT_COMMIT = "sweep.git_commit"  # the tool's commit, on every run about a configuration
DATA_DIR = "sweep.data_dir"  # where MNIST was read (absent: downloaded)
NOTE = MLFLOW_RUN_NOTE  # the run's or experiment's description in the UI
CHECKPOINT = "sweep.checkpoint"  # the artifact path of the run's latest checkpoint, while it has one
CHECKPOINTS = "checkpoint"  # the artifact folder that holds it
RESUMED_FROM, RESUMED_AT = "sweep.resumed_from", "sweep.resumed_at"  # the run whose checkpoint it continued, and where
WARM_START = "sweep.warm_start"  # "<study>#<trial>": where an enqueued configuration came from
CPU = "cpu"  # param: the CPU's model name (minutes and the last bits of weights depend on it)
ACCURACIES = ("val_accuracy", "test_accuracy", "test_accuracy_first128")  # validation chooses; test reports
TRAIN_SECONDS, TRAIN_IMAGES = "train_seconds", "train_images"  # so far, at each curve point; in all, at the last
BEST_METRICS = (*ACCURACIES, TRAIN_SECONDS, TRAIN_IMAGES)


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
    env[CPU] = cpu_model()
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


def steps_of(run: Run) -> int:
    """The optimizer steps of one training of the run's configuration, from its params."""
    config = config_of(run)
    return config.steps(min(config.train_limit or TRAIN_SIZE, TRAIN_SIZE))


def images_of(run: Run) -> int:
    """Training images one training of the run's configuration goes through (steps x batch),
    from its params: runs logged before the metric existed have them too."""
    return steps_of(run) * config_of(run).batch_size


def accuracy_metrics(accuracies: dict[str, Accuracy]) -> dict[str, float]:
    """Each accuracy as metrics: its value, the counts behind it and its 95% interval."""
    values = {}
    for name, acc in accuracies.items():
        low, high = acc.interval()
        values.update({name: acc.value, f"{name}_correct": acc.correct, f"{name}_total": acc.total})
        values.update({f"{name}_ci95_low": low, f"{name}_ci95_high": high})
    return values


def final_accuracies(client: MlflowClient, run_id: str) -> dict[str, Accuracy]:
    """A finished run's final accuracies: the one record of them (Optuna keeps only the
    validation accuracy, as the trial's value)."""
    return accuracies_of(client.get_run(run_id))


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


class ConfigRun:
    """One configuration's MLflow run (a trial's, a seed's or a reproduction's), written to as
    it trains, with its latest checkpoint as an artifact that every worker can read."""

    def __init__(self, client: MlflowClient, experiment_id: str, run_id: str, resumed_from: str | None = None):
        self.client, self.experiment_id, self.run_id = client, experiment_id, run_id
        self.resumed_from = resumed_from  # the run holding the checkpoint this one continued, if any
        self.checkpoint: str | None = None  # the artifact path of this run's latest checkpoint
        self._logged: set[tuple[str, int, float]] = set()  # the last curve point is also a final metric

    def _log(self, values: dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        new = {(k, step, float(v)) for k, v in values.items()} - self._logged
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, step, v in sorted(new)])
        self._logged |= new

    def log_curve_point(self, p: CurvePoint) -> None:
        values = {"val_accuracy": p.val.value, "val_accuracy_total": p.val.total}  # the total: see curve_val_limit
        self._log({**values, "train_loss": p.train_loss, TRAIN_SECONDS: p.train_seconds, TRAIN_IMAGES: p.train_images}, p.point)

    def log_accuracies(self, accuracies: dict[str, Accuracy], step: int) -> None:
        self._log(accuracy_metrics(accuracies), step)

    def log_result(self, result: TrainResult) -> None:
        """The final metrics, at the last curve point's step, then the model, which MLflow links
        to the metrics logged at that step (so the Models tab compares trials)."""
        self.log_accuracies(result.accuracies, result.last_point)
        self._log({TRAIN_SECONDS: result.train_seconds, TRAIN_IMAGES: result.train_images,
                   "samples_per_second": result.samples_per_second}, result.last_point)
        self.log_model(result.model, result.last_point)

    def log_resumed(self, holder: str, checkpoint: Checkpoint) -> None:
        """Say that this run continues `holder`'s checkpoint, and log the curve up to it, so the
        run shows one unbroken curve."""
        last = checkpoint.curve[-1].point if checkpoint.curve else None
        where = f"step {checkpoint.step}" + (f" (after {checkpoint.config.point_name(last)})" if last is not None else "")
        self.client.log_batch(self.run_id, tags=[RunTag(RESUMED_FROM, holder), RunTag(RESUMED_AT, str(checkpoint.step)),
                                                 RunTag(NOTE, f"Resumed at {where} from the checkpoint of run {holder}.")])
        for point in checkpoint.curve:
            self.log_curve_point(point)
        self.resumed_from = holder

    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Upload the checkpoint under a new name, point the tag at it, then delete the one it
        replaces: a worker dying at any moment leaves a tag naming a complete checkpoint."""
        name = f"step-{checkpoint.step:09d}.npz"
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / name).write_bytes(checkpoint.to_bytes())
            self.client.log_artifact(self.run_id, str(Path(tmp) / name), CHECKPOINTS)
        previous, self.checkpoint = self.checkpoint, f"{CHECKPOINTS}/{name}"
        self.client.set_tag(self.run_id, CHECKPOINT, self.checkpoint)
        if previous is not None and previous != self.checkpoint:
            self._artifacts.delete_artifacts(previous)
        elif previous is None and self.resumed_from is not None:  # the checkpoint this run continued is superseded
            delete_checkpoints(self.client, self.resumed_from)

    def discard_checkpoints(self) -> None:
        """The training ended for good (finished, pruned or diverged): no checkpoint of it stays."""
        for run_id in filter(None, (self.run_id if self.checkpoint else None, self.resumed_from)):
            delete_checkpoints(self.client, run_id)
        self.checkpoint = None

    @functools.cached_property
    def _artifacts(self):
        return get_artifact_repository(self.client.get_run(self.run_id).info.artifact_uri, tracking_uri=self.client.tracking_uri)

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


def delete_checkpoints(client: MlflowClient, run_id: str) -> None:
    """Delete a run's checkpoints and the tag that names them."""
    run = client.get_run(run_id)
    if CHECKPOINT in run.data.tags:
        client.delete_tag(run_id, CHECKPOINT)
    get_artifact_repository(run.info.artifact_uri, tracking_uri=client.tracking_uri).delete_artifacts(CHECKPOINTS)


def find_checkpoint(client: MlflowClient, run_id: str) -> tuple[str, Checkpoint] | None:
    """The latest checkpoint of a run's training: its own, else (if it stopped before writing
    one) that of the run it resumed from, and so on back. With the run that holds it. Raises
    CheckpointError if the named checkpoint cannot be read."""
    while run_id:
        run = client.get_run(run_id)
        if (path := run.data.tags.get(CHECKPOINT)) is not None:
            with tempfile.TemporaryDirectory() as tmp:
                try:
                    local = client.download_artifacts(run_id, path, tmp)
                except (MlflowException, OSError) as e:
                    raise CheckpointError(f"run {run_id}'s checkpoint {path} cannot be read ({type(e).__name__})") from None
                return run_id, Checkpoint.from_bytes(Path(local).read_bytes())
        run_id = run.data.tags.get(RESUMED_FROM)
    return None


def resumable(client: MlflowClient, run_ids: Iterable[str], config: TrainConfig, who: str, source: str,
              say: Callable[[str], None]) -> tuple[str, Checkpoint] | None:
    """The first checkpoint found among these runs (each followed back along the runs it
    resumed), with the run holding it, and one line saying that `who` resumes `source` from it.
    One that cannot be read, or is of another configuration than `config`, is not used: `who`
    trains from scratch, and the line says why."""
    try:
        found = next(filter(None, (find_checkpoint(client, run_id) for run_id in run_ids)), None)
        if found is not None:
            found[1].check_fits(config)
    except CheckpointError as e:
        say(f"{who} trains from scratch: the checkpoint of {source} is of no use ({e})")
        return None
    if found is not None:
        say(f"{who} resumes {source} from its checkpoint at step {found[1].step}")
    return found


def mark_failed(client: MlflowClient, run_id: str, reason: str, status: str = FAILED) -> None:
    """Close a run as a failed trial, saying why (FAILED, or KILLED when stopped from outside)."""
    client.log_batch(run_id, tags=[RunTag(FAILURE, reason[:5000]), RunTag(TRIAL_STATE, FAIL)])
    client.set_terminated(run_id, status=status)


@contextmanager
def config_run(
    client: MlflowClient, experiment_id: str, name: str, config: TrainConfig, data: Mnist, backend: dict[str, str],
    tags: dict[str, str],
) -> Iterator[ConfigRun]:
    """A run about one configuration (a trial, a seed, or a reproduction), its params logged
    first: FINISHED if the body returns, FAILED or KILLED (reason in the tag `sweep.failure`)
    if it raises."""
    found = {GIT_COMMIT: git_commit(), DATA_DIR: data.folder}
    run = client.create_run(experiment_id, run_name=name, tags={**tags, **{k: v for k, v in found.items() if v}})
    run_id = run.info.run_id
    params = {**config_params(config), **environment(data.md5, backend)}
    client.log_batch(run_id, params=[Param(k, v) for k, v in params.items()])
    record = ConfigRun(client, experiment_id, run_id)
    try:
        yield record
    except optuna.TrialPruned as e:
        record.discard_checkpoints()
        client.log_batch(run_id, tags=[RunTag(TRIAL_STATE, PRUNED_STATE), RunTag(PRUNED, str(e))])
        client.set_terminated(run_id, status=KILLED)  # stopped early, on purpose; the partial curve stays
        raise
    except BaseException as e:
        if isinstance(e, TrainingDiverged):  # nothing to resume
            record.discard_checkpoints()
        reason = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        mark_failed(client, run_id, reason, KILLED if isinstance(e, (KeyboardInterrupt, TrainingStopped)) else FAILED)
        raise
    record.discard_checkpoints()
    client.log_batch(run_id, tags=[RunTag(TRIAL_STATE, COMPLETE)])
    client.set_terminated(run_id, status=FINISHED)


def experiment_id(client: MlflowClient, spec: Spec) -> str:
    """The study's experiment, created on first use. Race-safe: of workers that start together,
    one creates it, and the others' inserts fail on its unique name; they take the one made."""
    experiment = client.get_experiment_by_name(spec.name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(spec.name, tags={NOTE: spec.description})
    except MlflowException:
        experiment = client.get_experiment_by_name(spec.name)
        if experiment is None:
            raise
        return experiment.experiment_id


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


def parent_run(client: MlflowClient, study_name: str, role: str) -> Run | None:
    """The study's parent run in `role` (STUDY, BASELINE or CONFIRM): the oldest, if workers
    starting together made several."""
    found = runs_of(client, study_name, role, order_by=["attributes.start_time ASC"], max_results=1)
    return found[0] if found else None


def open_parent_run(client: MlflowClient, spec: Spec, role: str, name: str, note: str,
                    params: dict[str, str] | None = None) -> str:
    """The id of the study's parent run in `role`, marked RUNNING; created on first use with
    these params. Race-safe: of runs created at once by several workers, the oldest is kept."""
    found = parent_run(client, spec.name, role)
    if found is not None:
        client.update_run(found.info.run_id, status=RUNNING)
        return found.info.run_id
    run = client.create_run(experiment_id(client, spec), run_name=name, tags={ROLE: role, STUDY_NAME: spec.name, NOTE: note})
    if params:
        client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()])
    first = parent_run(client, spec.name, role).info.run_id
    if first != run.info.run_id:
        client.delete_run(run.info.run_id)
    return first


SEED_ROLES = {BASELINE: BASELINE_SEED, CONFIRM: CONFIRM_SEED}  # a parent's role -> its seed runs' role
SEED_NOTES = {
    BASELINE: "The study's baseline (trial 0's configuration) trained with seeds 0, 1, 2, ... ({study}).",
    CONFIRM: "The study's top trials by validation accuracy, each trained again with seeds 0, 1, 2, ...; "
             "`python sweep.py confirm` chooses among them on mean validation accuracy ({study}).",
}


def seed_runs(client: MlflowClient, study_name: str, role: str, status: str = FINISHED) -> list[Run]:
    """The seed runs under the study's `role` parent (BASELINE or CONFIRM) with this status,
    by trial number (confirm's) and seed."""
    runs = runs_of(client, study_name, SEED_ROLES[role], f"attributes.status = '{status}'")
    return sorted(runs, key=lambda r: (int(r.data.tags.get(TRIAL_NUMBER, -1)), int(r.data.params["seed"])))


def seed_run(client: MlflowClient, spec: Spec, parent_id: str, role: str, number: int | None, config: TrainConfig,
             data: Mnist, backend: dict[str, str]):
    """A run of one configuration with one seed, nested under the `role` parent: the
    baseline's (`baseline-seed-S`), or a trial's for confirm (`trial-NNNN-seed-S`)."""
    tags = {MLFLOW_PARENT_RUN_ID: parent_id, ROLE: SEED_ROLES[role], STUDY_NAME: spec.name}
    if number is not None:
        tags[TRIAL_NUMBER] = str(number)
    name = f"{role}-seed-{config.seed}" if number is None else f"trial-{number:04d}-seed-{config.seed}"
    return config_run(client, experiment_id(client, spec), name, config, data, backend, tags)


def stopped_seed_runs(client: MlflowClient, study_name: str, role: str, number: int | None, seed: int) -> list[Run]:
    """Runs of this seed (of this trial, for confirm) that were stopped before their end, newest
    first: where a checkpoint to resume from may be."""
    where = f"attributes.status = '{KILLED}' and params.seed = '{seed}'"
    if number is not None:
        where += f" and tags.`{TRIAL_NUMBER}` = '{number}'"
    return runs_of(client, study_name, SEED_ROLES[role], where, order_by=["attributes.start_time DESC"])


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
        params = {"optuna.storage": mask_url(storage_url), "sampler": self.spec.sampler, "sampler_seed": self.spec.sampler_seed}
        params.update({f"fixed.{k}": v for k, v in config_params(self.spec.fixed).items() if k not in self.spec.search})
        params.update({f"search.{p.name}": str(p) for p in self.spec.search.values()})
        run_id = open_parent_run(self.client, self.spec, STUDY, f"study-{self.spec.name}", self.spec.description, params)
        if not self.client.list_artifacts(run_id, "study.toml"):
            self.client.log_text(run_id, self.spec.source, "study.toml")
        return run_id

    def trial_run(self, number: int, config: TrainConfig, data: Mnist, backend: dict[str, str],
                  warm_start: dict | None = None):
        """The trial's run, nested under the study's parent run (`warm_start`: the other study's
        trial it was enqueued from, if any)."""
        tags = {MLFLOW_PARENT_RUN_ID: self.parent_id, ROLE: TRIAL, STUDY_NAME: self.spec.name, TRIAL_NUMBER: str(number)}
        if warm_start is not None:
            tags[WARM_START] = f"{warm_start['study']}#{warm_start['trial']}"
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
    parent = parent_run(client, study_name, STUDY)
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
