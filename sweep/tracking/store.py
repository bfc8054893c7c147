"""Opening the MLflow tracking store, with errors a person can act on; and MLflow's fluent API,
pointed at a client's store only for the call that needs it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import mlflow
from mlflow import MlflowClient

from sweep.errors import SweepError
from sweep.stores import check_reachable, first_line, hide_password, is_server, require_file, retry_first_use

POOL_CLASS = "MLFLOW_SQLALCHEMYSTORE_POOLCLASS"  # MLflow reads its database pool's class from here only


def mlflow_client(tracking_uri: str, must_exist: bool = False) -> MlflowClient:
    """A client for a tracking store that answers (which a new SQLite store creates). On a
    database server, MLflow connects per operation and holds no connection idle: run many
    workers and the server's connection limit is not theirs to exhaust. (Set where the command
    line starts: `sweep.cli`.)"""
    if must_exist:
        require_file(tracking_uri, "MLflow tracking store", "--tracking-uri")

    def open_store() -> MlflowClient:
        client = MlflowClient(tracking_uri)
        client.search_experiments(max_results=1)
        return client

    try:
        check_reachable(tracking_uri)
        return retry_first_use(open_store)
    except Exception as e:  # noqa: BLE001  MLflow raises many types for an unusable store; all mean the same
        raise SweepError(f"cannot open MLflow tracking store {hide_password(tracking_uri)}: {first_line(e)}") from None


def pool_settings(tracking_uri: str) -> dict[str, str]:
    """The environment MLflow needs for this store: no idle connections held on a server."""
    return {POOL_CLASS: "NullPool"} if is_server(tracking_uri) else {}


@contextmanager
def fluent(client: MlflowClient) -> Iterator[None]:
    """MLflow logs and registers models through its fluent API, which reads the global tracking
    URI: pointed at this client's store for the length of the call, then put back as it was
    (MLflow keeps it in the MLFLOW_TRACKING_URI variable, which subprocesses would inherit)."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(client.tracking_uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before)
