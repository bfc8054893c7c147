"""The model registry: the chosen trial's model as a version of the registered model `<study>`,
under the alias `best`, so that `models:/<study>@best` loads the current choice."""

from __future__ import annotations

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

from sweep.tracking import queries
from sweep.tracking.schema import ALIAS_BEST, ROLE_CONFIRM
from sweep.tracking.store import fluent


def register_choice(client: MlflowClient, study_name: str, trial_number: int, run_id: str, by_confirm: bool) -> str:
    """Register a chosen trial's model as `models:/<study>@best` (`register_best`); what was done,
    as a line. A choice over seeds (confirm's) outweighs one seed's: once confirm has chosen in a
    study, a sweep leaves the alias alone."""
    if not by_confirm and queries.seed_runs(client, study_name, ROLE_CONFIRM):
        return f"models:/{study_name}@{ALIAS_BEST} stays confirm's choice; `python sweep.py confirm` weighs new trials"
    version = register_best(client, study_name, run_id)
    if version is None:
        return (
            f"trial {trial_number} logged no MLflow model (a run from before the stock Keras model): nothing registered"
        )
    return f"registered: models:/{study_name}@{ALIAS_BEST} (version {version}, trial {trial_number})"


def register_best(client: MlflowClient, study_name: str, run_id: str) -> str | None:
    """Register the run's logged model as a version of the registered model `<study>` and point
    its alias `best` at it; the registry page links back to the run. Each run is registered once,
    even by workers finishing together (`_register`). The version, or None for a run that logged
    no MLflow model (runs from before the stock Keras model)."""
    experiment = client.get_experiment_by_name(study_name)
    models = client.search_logged_models([experiment.experiment_id], filter_string=f"source_run_id = '{run_id}'")
    if not models:
        return None
    version = _versions(client, study_name, run_id)[:1] or [_register(client, study_name, run_id, models[0].model_id)]
    try:
        client.set_registered_model_alias(study_name, ALIAS_BEST, version[0])
    except MlflowException:  # two workers inserted the alias at once; now it exists, so this updates it
        client.set_registered_model_alias(study_name, ALIAS_BEST, version[0])
    return version[0]


def _versions(client: MlflowClient, study_name: str, run_id: str) -> list[str]:
    """The versions registered for this run, oldest first."""
    found = client.search_model_versions(f"name = '{study_name}' and run_id = '{run_id}'")
    return sorted((v.version for v in found), key=int)


def _register(client: MlflowClient, study_name: str, run_id: str, model_id: str) -> str:
    """A new version for the run. Workers that register the same run at once each create one;
    then each keeps only the oldest, deleting its own if another came first: whatever the
    interleaving, exactly one stays (version numbers are handed out in order, so every worker
    sees the oldest once its own exists)."""
    try:
        client.create_registered_model(study_name)
    except MlflowException as e:
        if e.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
            raise
    with fluent(client):  # the registry looks the logged model up in the global tracking store
        mine = client.create_model_version(
            study_name, source=f"models:/{model_id}", run_id=run_id, model_id=model_id
        ).version
    first = _versions(client, study_name, run_id)[0]
    if first != mine:
        client.delete_model_version(study_name, mine)
    return first
