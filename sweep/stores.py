"""Opening the two stores, the Optuna storage and the MLflow tracking store, with errors a
person can act on, and URLs fit to print (passwords masked)."""

from __future__ import annotations

import os
import random
import time
import urllib.request
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import mlflow
import optuna
import sqlalchemy
from mlflow import MlflowClient
from optuna.trial import FrozenTrial

from sweep.attrs import SPEC
from sweep.config import GRACE_PERIOD, HEARTBEAT_INTERVAL
from sweep.errors import SweepError
from sweep.spec import Spec, parse_spec

T = TypeVar("T")
SERVERS = ("postgresql", "mysql", "mssql")  # database servers, as SQLAlchemy names them


def mask_url(url: str) -> str:
    """The URL with any password replaced by ***, fit to print or record."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


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


def check_storage(url: str) -> None:
    """Raise SweepError, writing nothing, if the Optuna storage URL is malformed or its server
    does not answer: checked before any store is created."""
    try:
        sqlalchemy.engine.make_url(url)
        _check_reachable(url)
    except Exception as e:  # SQLAlchemy raises a different type for each way a URL can be wrong
        raise SweepError(f"cannot open Optuna storage {mask_url(url)}: {_first_line(e)}") from None


def missing_sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL, if it does not exist (opening it would create it)."""
    path = Path(url.removeprefix("sqlite:///"))
    return path if url.startswith("sqlite:///") and not path.is_file() else None


def require_file(url: str, what: str, flag: str) -> None:
    """Commands that only read must not leave an empty SQLite store behind where there was none."""
    if (path := missing_sqlite_file(url)) is not None:
        raise SweepError(f"no {what} at {path}: nothing to read here (run a sweep first, or see {flag})")


def optuna_storage(url: str, on_stale: Callable[[optuna.Study, FrozenTrial], None] | None = None,
                   must_exist: bool = False, heartbeat_interval: int = HEARTBEAT_INTERVAL,
                   grace_period: int = GRACE_PERIOD) -> optuna.storages.RDBStorage:
    """The Optuna storage, with heartbeats: a trial whose worker stops beating for `grace_period`
    seconds is handed to `on_stale`. On a database server a worker keeps one connection and
    opens a second only while its heartbeat thread and its trial both write (Optuna's own set-up
    needs two at once), so that many workers fit under the server's connection limit."""
    if must_exist:
        require_file(url, "Optuna storage", "--storage")
    try:
        engine = {} if url.startswith("sqlite") else {"pool_size": 1, "max_overflow": 1, "pool_pre_ping": True}
        sqlalchemy.engine.make_url(url)  # a malformed URL needs no retries
        return retry_first_use(lambda: optuna.storages.RDBStorage(
            url, engine_kwargs=engine, heartbeat_interval=heartbeat_interval, grace_period=grace_period,
            heartbeat_stale_trial_callback=on_stale,
        ))
    except Exception as e:  # SQLAlchemy raises a different type for each way a URL can be wrong
        raise SweepError(f"cannot open Optuna storage {mask_url(url)}: {_first_line(e)}") from None


def mlflow_client(tracking_uri: str, must_exist: bool = False) -> MlflowClient:
    """A client for a tracking store that answers (which a new SQLite store creates)."""
    if must_exist:
        require_file(tracking_uri, "MLflow tracking store", "--tracking-uri")
    if urlsplit(tracking_uri).scheme.split("+")[0] in SERVERS:  # connections per operation, none held idle
        os.environ.setdefault("MLFLOW_SQLALCHEMYSTORE_POOLCLASS", "NullPool")

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


def _check_reachable(uri: str) -> None:
    """Fail in seconds: MLflow itself retries an unreachable store for about two minutes."""
    scheme = urlsplit(uri).scheme.split("+")[0]
    if scheme in ("http", "https"):
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=10).close()
    elif scheme in SERVERS:
        engine = sqlalchemy.create_engine(uri)
        try:
            engine.connect().close()
        finally:
            engine.dispose()


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def study_names(storage_url: str) -> list[str]:
    """The studies in a storage (none where a SQLite storage does not exist: nothing is created)."""
    if missing_sqlite_file(storage_url):
        return []
    return sorted(s.study_name for s in optuna_storage(storage_url).get_all_studies())


def load_study(study_name: str, storage_url: str) -> optuna.Study:
    """An existing study, for reading."""
    storage = optuna_storage(storage_url, must_exist=True)
    if study_name not in {s.study_name for s in storage.get_all_studies()}:
        raise SweepError(f"no study '{study_name}' in Optuna storage {mask_url(storage_url)} (see --storage, --study-name)")
    return optuna.load_study(study_name=study_name, storage=storage)


def the_study(name: str | None, storage_url: str) -> str:
    """The study meant: the one named, else the storage's only one."""
    if name:
        return name
    names = study_names(storage_url)
    if len(names) == 1:
        return names[0]
    if not names:
        raise SweepError("the Optuna storage holds no study yet: run a sweep first (see --storage)")
    raise SweepError(f"the Optuna storage holds {len(names)} studies ({', '.join(names)}): pick one with --study-name")


def kept_spec(name: str | None, storage_url: str) -> Spec:
    """The spec a study (`name`, else the storage's only one) was created from, kept in the
    Optuna storage, under the study's name."""
    name = the_study(name, storage_url)
    source = load_study(name, storage_url).user_attrs.get(SPEC)
    if source is None:
        raise SweepError(f"study '{name}' keeps no study file; give it with --study")
    return replace(parse_spec(source, f"(kept with study '{name}')"), name=name)
