"""Reading the record back: which runs a study has, in which role, and what each holds (its
configuration, accuracies, cost, predictions). No TensorFlow: the report and `confirm`'s choice
read it too."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.exceptions import MlflowException

from sweep.errors import SweepError
from sweep.stats import ACCURACIES, Accuracy
from sweep.tracking.schema import (
    ARTIFACT_PREDICTIONS,
    COUNT_SUFFIXES,
    PARAM_SEED,
    PARAM_VAL_FOLD,
    ROLE_STUDY,
    ROLE_TRIAL,
    SEED_ROLES,
    STATUS_FINISHED,
    STATUS_KILLED,
    TAG_DATA_DIR,
    TAG_ROLE,
    TAG_STUDY_NAME,
    TAG_TRIAL_NUMBER,
)
from sweep.training.config import TrainConfig
from sweep.training.data import TRAIN_SIZE


def config_of(run: Run) -> TrainConfig:
    """The run's configuration; a field it lacks was added to TrainConfig after it was logged,
    and takes its default, which keeps the earlier behaviour (runs from before validation folds
    validated on fold 0)."""
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


def seed_of(run: Run) -> int:
    return int(run.data.params[PARAM_SEED])


def fold_of(run: Run) -> int:
    """The run's validation fold (0 for runs logged before folds)."""
    return int(run.data.params.get(PARAM_VAL_FOLD, 0))


def accuracies_of(run: Run) -> dict[str, Accuracy]:
    """The run's final accuracies, read back from their counts (Optuna keeps only the
    validation accuracy, as the trial's value)."""
    m, (correct, total) = run.data.metrics, COUNT_SUFFIXES
    try:
        return {k: Accuracy(int(m[f"{k}{correct}"]), int(m[f"{k}{total}"])) for k in ACCURACIES}
    except KeyError as e:
        raise SweepError(f"run {run.info.run_id} lacks the metric {e.args[0]}; there is no result to compare") from None


def final_accuracies(client: MlflowClient, run_id: str) -> dict[str, Accuracy]:
    return accuracies_of(client.get_run(run_id))


def predictions_of(client: MlflowClient, run_id: str) -> dict[str, np.ndarray] | None:
    """Each validation and test image's predicted class and label ("val", "val_labels", "test",
    "test_labels"), or None for a run logged before they were."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = client.download_artifacts(run_id, ARTIFACT_PREDICTIONS, tmp)
        except (MlflowException, OSError):
            return None
        with np.load(io.BytesIO(Path(local).read_bytes())) as arrays:
            return {name: arrays[name] for name in arrays.files}


def data_dir(run: Run) -> str | None:
    """Where the run read MNIST, if it read files."""
    return run.data.tags.get(TAG_DATA_DIR)


def is_trial(run: Run) -> bool:
    return run.data.tags.get(TAG_ROLE) == ROLE_TRIAL


def trial_number(run: Run) -> int:
    return int(run.data.tags[TAG_TRIAL_NUMBER])


def runs_of(client: MlflowClient, study_name: str, role: str, where: str = "", **search) -> list[Run]:
    """The study's runs in one role (none if the study has no experiment yet)."""
    experiment = client.get_experiment_by_name(study_name)
    if experiment is None:
        return []
    query = f"tags.`{TAG_ROLE}` = '{role}'" + (f" and {where}" if where else "")
    return client.search_runs([experiment.experiment_id], query, **search)


def tracked_study_names(client: MlflowClient) -> list[str]:
    """The studies this tracking store holds: experiments with a study's parent run."""
    experiments = client.search_experiments()
    if not experiments:
        return []
    found = client.search_runs([e.experiment_id for e in experiments], f"tags.`{TAG_ROLE}` = '{ROLE_STUDY}'")
    return sorted({run.data.tags[TAG_STUDY_NAME] for run in found})


def trial_runs(client: MlflowClient, study_name: str, number: int | None = None) -> list[Run]:
    """The study's trial runs (of one trial number, newest first, when given)."""
    where = "" if number is None else f"tags.`{TAG_TRIAL_NUMBER}` = '{number}'"
    return runs_of(client, study_name, ROLE_TRIAL, where, order_by=["attributes.start_time DESC"])


def parent_run(client: MlflowClient, study_name: str, role: str) -> Run | None:
    """The study's parent run in `role` (study, baseline or confirm): the oldest, if workers
    starting together made several."""
    found = runs_of(client, study_name, role, order_by=["attributes.start_time ASC"], max_results=1)
    return found[0] if found else None


def seed_runs(client: MlflowClient, study_name: str, role: str, status: str = STATUS_FINISHED) -> list[Run]:
    """The seed runs under the study's `role` parent (baseline or confirm) with this status, by
    trial number (confirm's) and seed."""
    runs = runs_of(client, study_name, SEED_ROLES[role], f"attributes.status = '{status}'")
    return sorted(runs, key=lambda r: (int(r.data.tags.get(TAG_TRIAL_NUMBER, -1)), seed_of(r)))


def stopped_seed_runs(client: MlflowClient, study_name: str, role: str, number: int | None, seed: int) -> list[Run]:
    """Runs of this seed (of this trial, for confirm) that were stopped before their end, newest
    first: where a checkpoint to resume from may be."""
    where = f"attributes.status = '{STATUS_KILLED}' and params.{PARAM_SEED} = '{seed}'"
    if number is not None:
        where += f" and tags.`{TAG_TRIAL_NUMBER}` = '{number}'"
    return runs_of(client, study_name, SEED_ROLES[role], where, order_by=["attributes.start_time DESC"])
