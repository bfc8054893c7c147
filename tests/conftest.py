"""Shared fixtures: the real MNIST files (../shared/data/mnist unless SWEEP_DATA_DIR says
otherwise), loaded once per test session, and a runner for the real command line."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("SWEEP_DATA_DIR", REPO.parent / "shared" / "data" / "mnist"))
SMOKE = REPO / "studies" / "smoke.toml"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA_DIR.is_dir():
        pytest.fail(f"MNIST not found at {DATA_DIR}; set SWEEP_DATA_DIR")
    return DATA_DIR


@pytest.fixture(scope="session")
def mnist(data_dir):
    from sweep.data import load_mnist

    return load_mnist(data_dir)


def cli_command(*args: str) -> list[str]:
    return [sys.executable, str(REPO / "sweep.py"), *args]


def cli_env() -> dict[str, str]:
    """The environment of a user with the data in SWEEP_DATA_DIR and default stores. (MLflow's
    set_tracking_uri, called by some tests, exports MLFLOW_TRACKING_URI to child processes.)"""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "OPTUNA_STORAGE")}
    return {**env, "SWEEP_DATA_DIR": str(DATA_DIR)}


def run_cli(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python sweep.py ARGS` in a fresh process, as a user would run it."""
    return subprocess.run(cli_command(*args), cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def swept(tmp_path_factory):
    """A finished 3-trial smoke study in its own folder, with the default store names."""
    folder = tmp_path_factory.mktemp("sweep")
    result = run_cli("--study", str(SMOKE), "--trials", "3", cwd=folder)
    assert result.returncode == 0, result.stderr
    return folder, result


def trial_runs(client, experiment_id):
    """A study's trial runs, in trial order."""
    runs = client.search_runs([experiment_id], "tags.`sweep.role` = 'trial'")
    return sorted(runs, key=lambda r: int(r.data.tags["optuna.trial_number"]))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server on 127.0.0.1 with databases `optuna` and `mlflow`; yields the
    server URL with a password in it (trust auth ignores it), to test that it never leaks."""
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not bins:
        pytest.fail("PostgreSQL is not installed (apt-get install postgresql); .ci/run installs it")
    bindir = Path(bins[-1]).parent
    root = Path(tempfile.mkdtemp(prefix="sweep-pg-"))
    root.chmod(0o777)
    as_postgres = ["su", "postgres", "-s", "/bin/sh", "-c"] if os.geteuid() == 0 else ["/bin/sh", "-c"]

    def pg(command: str) -> None:
        subprocess.run([*as_postgres, command], check=True, capture_output=True, timeout=120)

    port = free_port()
    pg(f"{bindir}/initdb -D {root}/data -A trust -U postgres")
    pg(f"{bindir}/pg_ctl -D {root}/data -l {root}/log -w -o '-p {port} -k {root} -c listen_addresses=127.0.0.1' start")
    try:
        for db in ("optuna", "mlflow"):
            pg(f"{bindir}/createdb -h 127.0.0.1 -p {port} -U postgres {db}")
        yield f"postgresql://postgres:{PG_PASSWORD}@127.0.0.1:{port}"
    finally:
        pg(f"{bindir}/pg_ctl -D {root}/data -m immediate stop")
        shutil.rmtree(root, ignore_errors=True)


PG_PASSWORD = "pw-s3cret-9431"


def new_database(server: str, name: str) -> str:
    """A fresh database on the test server (so tests never share a study); its URL."""
    import psycopg

    with psycopg.connect(f"{server}/postgres", autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
        connection.execute(f'CREATE DATABASE "{name}"')
    return f"{server}/{name}"


def connections(server: str, *databases: str) -> int:
    """Client connections the server holds now to these databases."""
    import psycopg

    with psycopg.connect(f"{server}/postgres", autocommit=True) as connection:
        query = "select count(*) from pg_stat_activity where backend_type = 'client backend' and datname = any(%s)"
        return connection.execute(query, [list(databases)]).fetchone()[0]
