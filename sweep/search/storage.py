"""The Optuna storage: opened with errors a person can act on, heartbeats for lost workers, and
which study a command means."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import optuna
import sqlalchemy
from optuna.trial import FrozenTrial

from sweep.errors import SweepError
from sweep.search.attributes import ATTR_SPEC
from sweep.search.spec import Spec, parse_spec
from sweep.stores import check_reachable, first_line, hide_password, missing_sqlite_file, require_file, retry_first_use

HEARTBEAT_INTERVAL = 20  # seconds between a running trial's heartbeats (--heartbeat-interval)
GRACE_PERIOD = 120  # a trial silent this long belongs to a lost worker (--grace-period)


def check_storage(url: str) -> None:
    """Raise SweepError, writing nothing, if the Optuna storage URL is malformed or its server
    does not answer: checked before any store is created."""
    try:
        sqlalchemy.engine.make_url(url)
        check_reachable(url)
    except Exception as e:  # noqa: BLE001  SQLAlchemy raises a different type for each way a URL can be wrong
        raise SweepError(f"cannot open Optuna storage {hide_password(url)}: {first_line(e)}") from None


def optuna_storage(
    url: str,
    on_stale: Callable[[optuna.Study, FrozenTrial], None] | None = None,
    must_exist: bool = False,
    heartbeat_interval: int = HEARTBEAT_INTERVAL,
    grace_period: int = GRACE_PERIOD,
) -> optuna.storages.RDBStorage:
    """The Optuna storage, with heartbeats: a trial whose worker stops beating for `grace_period`
    seconds is handed to `on_stale`. On a database server a worker keeps one connection and
    opens a second only while its heartbeat thread and its trial both write (Optuna's own set-up
    needs two at once), so that many workers fit under the server's connection limit."""
    if must_exist:
        require_file(url, "Optuna storage", "--storage")
    try:
        engine = {} if url.startswith("sqlite") else {"pool_size": 1, "max_overflow": 1, "pool_pre_ping": True}
        sqlalchemy.engine.make_url(url)  # a malformed URL needs no retries
        return retry_first_use(
            lambda: optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine,
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period,
                heartbeat_stale_trial_callback=on_stale,
            )
        )
    except Exception as e:  # noqa: BLE001  SQLAlchemy raises a different type for each way a URL can be wrong
        raise SweepError(f"cannot open Optuna storage {hide_password(url)}: {first_line(e)}") from None


def study_names(storage_url: str) -> list[str]:
    """The studies in a storage (none where a SQLite storage does not exist: nothing is created)."""
    if missing_sqlite_file(storage_url):
        return []
    return sorted(optuna.get_all_study_names(optuna_storage(storage_url)))


def load_study(study_name: str, storage_url: str) -> optuna.Study:
    """An existing study, for reading."""
    storage = optuna_storage(storage_url, must_exist=True)
    if study_name not in optuna.get_all_study_names(storage):
        raise SweepError(
            f"no study '{study_name}' in Optuna storage {hide_password(storage_url)} (see --storage, --study-name)"
        )
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
    source = load_study(name, storage_url).user_attrs.get(ATTR_SPEC)
    if source is None:
        raise SweepError(f"study '{name}' keeps no study file; give it with --study")
    return replace(parse_spec(source, f"(kept with study '{name}')"), name=name)
