"""Opening the MLflow tracking store, with errors a person can act on; asking a tracking server
again when its answer was cut short; and MLflow's fluent API, pointed at a client's store only
for the call that needs it."""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

import mlflow
import requests
from mlflow import MlflowClient

from sweep.errors import SweepError
from sweep.stores import check_reachable, first_line, hide_password, is_server, require_file, retry_first_use

POOL_CLASS = "MLFLOW_SQLALCHEMYSTORE_POOLCLASS"  # MLflow reads its database pool's class from here only
CUT_SHORT_ATTEMPTS = 3  # a call whose answer was cut short is made again after 1 s, then 2 s

log = logging.getLogger(__name__)
P, R = ParamSpec("P"), TypeVar("R")


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


def _cut_short(e: BaseException | None) -> bool:
    """Whether a server's answer broke off after its headers (the server died mid-answer).
    MLflow wraps the `requests` error in an MlflowException by its message; the error itself is
    the context."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, requests.exceptions.ChunkedEncodingError):
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False


def retried(call: Callable[P, R]) -> Callable[P, R]:
    """`call`, made again when a tracking server's answer is cut short. MLflow's HTTP retries
    (MLFLOW_HTTP_REQUEST_MAX_RETRIES) wait out refused connections and error statuses, not a
    body cut off after its headers, and then the server may have done the work: only for calls
    that mean the same done twice (tags, metrics with their timestamps, artifacts by name)."""

    @functools.wraps(call)
    def again(*args: P.args, **kwargs: P.kwargs) -> R:
        for attempt in range(1, CUT_SHORT_ATTEMPTS):
            try:
                return call(*args, **kwargs)
            except Exception as e:  # MLflow raises MlflowException, its artifact stores their own errors
                if not _cut_short(e):
                    raise
                log.warning(f"the tracking server's answer to {call.__name__} was cut short; asking again")
                time.sleep(attempt)
        return call(*args, **kwargs)

    return again


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
