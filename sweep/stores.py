"""What the two stores (the Optuna storage and the MLflow tracking store) share: URLs fit to
print, a check that a server answers, and a first open that survives racing workers."""

from __future__ import annotations

import random
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import sqlalchemy
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from sweep.errors import SweepError

T = TypeVar("T")
SERVERS = ("postgresql", "mysql", "mssql")  # database servers, as SQLAlchemy names them


def folder_stores(folder: Path) -> tuple[str, str]:
    """The Optuna storage and the MLflow tracking URI of a sweep run in `folder` with the default
    stores: its optuna.db and mlflow.db."""
    return f"sqlite:///{folder / 'optuna.db'}", f"sqlite:///{folder / 'mlflow.db'}"


def hide_password(url: str) -> str:
    """The URL with its password, if any, replaced by ***: fit to print or record."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:  # no scheme (a folder such as ./mlruns): no password either
        return url


def password(url: str | None) -> str | None:
    """The password inside a URL, if any: so that no message quotes it."""
    try:
        return make_url(url).password if url else None
    except ArgumentError:
        return None


def is_server(url: str) -> bool:
    return urlsplit(url).scheme.split("+")[0] in SERVERS


def check_reachable(url: str) -> None:
    """Fail in seconds: MLflow itself retries an unreachable store for about two minutes."""
    scheme = urlsplit(url).scheme.split("+")[0]
    if scheme in ("http", "https"):
        urllib.request.urlopen(url.rstrip("/") + "/health", timeout=10).close()
    elif scheme in SERVERS:
        engine = sqlalchemy.create_engine(url)
        try:
            engine.connect().close()
        finally:
            engine.dispose()


def retry_first_use(open_store: Callable[[], T], attempts: int = 4) -> T:
    """Open a store, again after a pause if the first try fails: workers that start together
    on an empty database race to create its tables, and all but one lose that race."""
    for attempt in range(attempts - 1):
        try:
            return open_store()
        except Exception:  # noqa: BLE001  the losers' errors vary by database; the last try raises
            time.sleep(1 + attempt + random.random())
    return open_store()


def missing_sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL, if it does not exist (opening it would create it)."""
    path = Path(url.removeprefix("sqlite:///"))
    return path if url.startswith("sqlite:///") and not path.is_file() else None


def require_file(url: str, what: str, flag: str) -> None:
    """Commands that only read must not leave an empty SQLite store behind where there was none."""
    if (path := missing_sqlite_file(url)) is not None:
        raise SweepError(f"no {what} at {path}: nothing to read here (run a sweep first, or see {flag})")


def first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
