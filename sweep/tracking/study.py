"""The study's own record: its experiment (described by its study file), its parent run (the
study's settings, the best trial so far, the report), and a nested run per trial."""

from __future__ import annotations

import time
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException

from sweep.stats import ACCURACIES
from sweep.stores import hide_password
from sweep.tracking import queries
from sweep.tracking.runs import config_run
from sweep.tracking.schema import (
    ARTIFACT_REPORT,
    ARTIFACT_STUDY_FILE,
    METRIC_TRAIN_IMAGES,
    METRIC_TRAIN_SECONDS,
    ROLE_STUDY,
    ROLE_TRIAL,
    STATUS_FINISHED,
    STATUS_RUNNING,
    TAG_BEST_PARAM,
    TAG_BEST_RUN,
    TAG_BEST_TRIAL,
    TAG_NOTE,
    TAG_PARENT,
    TAG_ROLE,
    TAG_STUDY_NAME,
    TAG_TRIAL_NUMBER,
    TAG_WARM_START,
)
from sweep.training.config import TrainConfig
from sweep.training.data import Mnist

BEST_METRICS = (*ACCURACIES, METRIC_TRAIN_SECONDS, METRIC_TRAIN_IMAGES)  # the best trial's, on the parent run


class StudyTracker:
    """The study's experiment and parent run, found again when the study continues. `settings`:
    the study file's settings, as the parent run's params (`Spec.settings`); `source`: its text."""

    def __init__(
        self, client: MlflowClient, name: str, description: str, source: str, settings: dict[str, str], storage_url: str
    ):
        self.client, self.name = client, name
        self.experiment_id = experiment_id(client, name, description)
        params = {"optuna.storage": hide_password(storage_url), **settings}
        self.parent_id = open_parent_run(client, name, description, ROLE_STUDY, f"study-{name}", description, params)
        if not client.list_artifacts(self.parent_id, ARTIFACT_STUDY_FILE):
            client.log_text(self.parent_id, source, ARTIFACT_STUDY_FILE)

    def trial_run(
        self, number: int, config: TrainConfig, data: Mnist, backend: dict[str, str], warm_start: dict | None = None
    ):
        """The trial's run, nested under the study's parent run (`warm_start`: the other study's
        trial it was enqueued from, if any)."""
        tags = {
            TAG_PARENT: self.parent_id,
            TAG_ROLE: ROLE_TRIAL,
            TAG_STUDY_NAME: self.name,
            TAG_TRIAL_NUMBER: str(number),
        }
        if warm_start is not None:
            tags[TAG_WARM_START] = f"{warm_start['study']}#{warm_start['trial']}"
        return config_run(self.client, self.experiment_id, f"trial-{number:04d}", config, data, backend, tags)

    def record_best(self, number: int, params: dict, run_id: str) -> None:
        """The best trial so far on the parent run, so the study's row and page answer "which
        one, and how good?": its metrics (step = trial number) and its number and params as tags."""
        now = int(time.time() * 1000)
        metrics = self.client.get_run(run_id).data.metrics
        self.client.log_batch(
            self.parent_id,
            metrics=[Metric(k, metrics[k], now, number) for k in BEST_METRICS if k in metrics],
            tags=[RunTag(TAG_BEST_TRIAL, str(number)), RunTag(TAG_BEST_RUN, run_id)]
            + [RunTag(f"{TAG_BEST_PARAM}{k}", str(v)) for k, v in params.items()],
        )

    def close(self, status: str = STATUS_FINISHED) -> None:
        self.client.set_terminated(self.parent_id, status=status)


def log_report(client: MlflowClient, study_name: str, folder: Path, summary: list[str]) -> None:
    """The report as artifacts (`report/`) of the study's parent run, whose description becomes
    what the study is and where it stands against the claim."""
    parent = queries.parent_run(client, study_name, ROLE_STUDY)
    if parent is None:
        return
    client.log_artifacts(parent.info.run_id, str(folder), artifact_path=ARTIFACT_REPORT)
    about = client.get_experiment_by_name(study_name).tags.get(TAG_NOTE, "")
    client.set_tag(
        parent.info.run_id,
        TAG_NOTE,
        "\n\n".join([about, *summary, "Full report: artifacts, report/report.html."]).strip(),
    )


def experiment_id(client: MlflowClient, study_name: str, description: str) -> str:
    """The study's experiment, created on first use. Race-safe: of workers that start together,
    one creates it, and the others' inserts fail on its unique name; they take the one made."""
    experiment = client.get_experiment_by_name(study_name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(study_name, tags={TAG_NOTE: description})
    except MlflowException:
        experiment = client.get_experiment_by_name(study_name)
        if experiment is None:
            raise
        return experiment.experiment_id


def open_parent_run(
    client: MlflowClient,
    study_name: str,
    description: str,
    role: str,
    name: str,
    note: str,
    params: dict[str, str] | None = None,
) -> str:
    """The id of the study's parent run in `role`, marked RUNNING; created on first use with
    these params. Race-safe: of runs created at once by several workers, the oldest is kept."""
    found = queries.parent_run(client, study_name, role)
    if found is not None:
        client.update_run(found.info.run_id, status=STATUS_RUNNING)
        return found.info.run_id
    run = client.create_run(
        experiment_id(client, study_name, description),
        run_name=name,
        tags={TAG_ROLE: role, TAG_STUDY_NAME: study_name, TAG_NOTE: note},
    )
    if params:
        client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()])
    first = queries.parent_run(client, study_name, role).info.run_id
    if first != run.info.run_id:
        client.delete_run(run.info.run_id)
    return first
