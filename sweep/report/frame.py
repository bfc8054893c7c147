"""The study as one pandas table, a row per trial: Optuna's own `trials_dataframe()` (states,
parameters, times) joined with what the trials spent and their MLflow runs (accuracies with
their counts, the configuration's cost per training, the CPU). Everything the report says is
computed from it, the trials' curves and the seed runs of `baseline` and `confirm`."""

from __future__ import annotations

import numpy as np
import optuna
import pandas as pd
from mlflow import MlflowClient

from sweep.search.attributes import (
    ATTR_BASELINE,
    ATTR_ENQUEUED,
    ATTR_MLFLOW_RUN_ID,
    ATTR_RESUMES,
    ATTR_STOPPED,
    ATTR_TRAIN_IMAGES,
    ATTR_TRAIN_SECONDS,
    ATTR_WARM_START,
    spent,
)
from sweep.stats import ACCURACIES, TEST_ACCURACY, VAL_ACCURACY, Accuracy
from sweep.tracking import queries
from sweep.tracking.schema import COUNT_SUFFIXES, PARAM_CPU, ROLE_BASELINE

ACCURACY_COLUMNS = [f"{m}{s}" for m in ACCURACIES for s in ("", *COUNT_SUFFIXES)]
COST_COLUMNS = ["train_images", "spent_images", "spent_seconds", "cpu"]  # per training; spent by the trial itself


def searched(study: optuna.Study) -> dict[str, optuna.distributions.BaseDistribution]:
    """What the study searched, in the order its trials first suggested it: the report's
    parameters are the study's, whatever its spec searched."""
    found = {}
    for trial in study.get_trials(deepcopy=False):
        for name, distribution in trial.distributions.items():
            found.setdefault(name, distribution)
    return found


def origin(trial: optuna.trial.FrozenTrial) -> str:
    """Where a trial's configuration came from."""
    a = trial.user_attrs
    if ATTR_WARM_START in a:
        return f"warm start: {a[ATTR_WARM_START]['study']} trial {a[ATTR_WARM_START]['trial']}"
    return "baseline" if a.get(ATTR_BASELINE) else "enqueued" if a.get(ATTR_ENQUEUED) else "sampler"


def trials_frame(study: optuna.Study, client: MlflowClient) -> pd.DataFrame:
    """One row per trial: number, state, the searched parameters, accuracies with counts, the
    training images of one training of its configuration, what the trial itself spent (images,
    optimizer seconds) and on which CPU, where it came from, when it ran, its MLflow run id."""
    params = list(searched(study))
    frame = study.trials_dataframe(attrs=("number", "state", "params", "datetime_start", "datetime_complete"))
    frame = frame.rename(
        columns={f"params_{p}": p for p in params} | {"datetime_start": "started", "datetime_complete": "completed"}
    )
    runs = {run.info.run_id: run for run in queries.trial_runs(client, study.study_name)}
    rows = []
    for trial in study.get_trials(deepcopy=False):
        run = runs.get(trial.user_attrs.get(ATTR_MLFLOW_RUN_ID))
        metrics = run.data.metrics if run else {}
        spent_images, spent_seconds = spent(trial.user_attrs)
        rows.append(
            {
                **{column: metrics.get(column) for column in ACCURACY_COLUMNS},
                "train_images": queries.images_of(run) if run else None,
                "spent_images": spent_images if ATTR_TRAIN_IMAGES in trial.user_attrs else None,
                "spent_seconds": spent_seconds if ATTR_TRAIN_SECONDS in trial.user_attrs else None,
                "cpu": run.data.params.get(PARAM_CPU) if run else None,
                "stopped": bool(trial.user_attrs.get(ATTR_STOPPED, False)),
                "resumes": trial.user_attrs.get(ATTR_RESUMES),
                "origin": origin(trial),
                ATTR_MLFLOW_RUN_ID: run.info.run_id if run else None,
            }
        )
    numbers = pd.DataFrame(rows).astype({column: float for column in [*ACCURACY_COLUMNS, *COST_COLUMNS[:3]]})
    joined = pd.concat([frame.reset_index(drop=True), numbers], axis=1)  # a trial without a result is NaN
    columns = [
        "number",
        "state",
        *params,
        *ACCURACY_COLUMNS,
        *COST_COLUMNS,
        "stopped",
        "resumes",
        "origin",
        "started",
        "completed",
        ATTR_MLFLOW_RUN_ID,
    ]
    return joined.reindex(columns=columns)


def completed(frame: pd.DataFrame) -> pd.DataFrame:
    """The completed trials with their results, in trial order."""
    return frame[frame["state"] == optuna.trial.TrialState.COMPLETE.name].dropna(subset=[VAL_ACCURACY, TEST_ACCURACY])


def best_row(done: pd.DataFrame) -> pd.Series:
    """The best on validation; a tie goes to the earlier trial, as Optuna's best_trial breaks it."""
    return done.nlargest(1, VAL_ACCURACY, keep="first").iloc[0]


def accuracy_of(row: pd.Series, metric: str) -> Accuracy:
    correct, total = COUNT_SUFFIXES
    return Accuracy(int(row[f"{metric}{correct}"]), int(row[f"{metric}{total}"]))


def cpus(frame: pd.DataFrame) -> str:
    """The CPUs the trials ran on, as the runs recorded them: minutes mean nothing without."""
    found = sorted(set(frame["cpu"].dropna()))
    return (
        "a CPU not recorded"
        if not found
        else found[0]
        if len(found) == 1
        else f"{len(found)} CPUs ({'; '.join(found)})"
    )


def spent_by(frame: pd.DataFrame, moment: pd.Timestamp) -> float:
    """Training images the study's trials had spent by a moment: all of those finished by
    then, and a share by time of those running then (workers in parallel)."""
    total = 0.0
    for _, t in frame.dropna(subset=["spent_images", "started"]).iterrows():
        if pd.notna(t["completed"]) and t["completed"] <= moment:
            total += t["spent_images"]
        elif t["started"] < moment and pd.notna(t["completed"]):
            total += t["spent_images"] * (moment - t["started"]) / (t["completed"] - t["started"])
    return total


def pareto_front(done: pd.DataFrame) -> pd.DataFrame:
    """The trials no other trial beats on both counts: as few training images per training and
    as much validation accuracy, one of them strictly. Equal trials stand on it together."""
    x, y = done["train_images"].to_numpy(), done[VAL_ACCURACY].to_numpy()
    dominated = [bool(np.any((x <= xi) & (y >= yi) & ((x < xi) | (y > yi)))) for xi, yi in zip(x, y, strict=True)]
    return done[~np.array(dominated, dtype=bool)].sort_values(["train_images", "number"])


def baseline_frame(client: MlflowClient, study_name: str) -> pd.DataFrame:
    """The study's baseline seed runs, a row each."""
    rows = []
    for run in queries.seed_runs(client, study_name, ROLE_BASELINE):
        rows.append(
            {
                "seed": queries.seed_of(run),
                "val_fold": queries.fold_of(run),
                "train_steps": queries.steps_of(run),
                **{column: run.data.metrics.get(column) for column in ACCURACY_COLUMNS},
                ATTR_MLFLOW_RUN_ID: run.info.run_id,
            }
        )
    return pd.DataFrame(rows, columns=["seed", "val_fold", "train_steps", *ACCURACY_COLUMNS, ATTR_MLFLOW_RUN_ID])
