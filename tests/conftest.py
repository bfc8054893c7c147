"""Shared fixtures and helpers: the real MNIST files (../shared/data/mnist unless SWEEP_DATA_DIR
says otherwise), the command line run in this process or in a fresh one, processes that are
always cleaned up, waits that fail fast, and a PostgreSQL server.

Two tiers: `python -m pytest -m "not slow"` runs what answers in seconds (specs, data, the
model, short trainings, records, reports, the command line in this process); a test is `slow`
when it starts a server, a subprocess sweep or a full training (marked here by fixture, or in
its module)."""

from __future__ import annotations

import atexit
import contextlib
import functools
import glob
import io
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from mlflow import MlflowClient

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("SWEEP_DATA_DIR", REPO.parent / "shared" / "data" / "mnist"))
SMOKE = REPO / "studies" / "smoke.toml"
SLOW_FIXTURES: set[str] = set()  # filled by @slow_fixture where each is defined
# What the tool runs in passing (its commit, the op's build, platform probes): no process a test starts.
QUICK_TOOLS = {"git", "c++", "g++", "gcc", "cc", "uname", "ldconfig", "nvidia-smi"}


def slow_fixture(*args, **kwargs):
    """@pytest.fixture for a fixture that starts a server, a process or a sweep: every test that
    uses it is slow. (Declared where the fixture is defined, so the list cannot drift from it.)"""

    def declare(function):
        SLOW_FIXTURES.add(function.__name__)
        return pytest.fixture(function, **kwargs)

    return declare(args[0]) if args and callable(args[0]) else declare


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@contextlib.contextmanager
def _watching_for_processes(item):
    """A test that starts a process (a server, a sweep, a browser) must be marked slow: the
    fast tier is what runs in this process alone. Checked, not trusted."""
    started, popen = [], subprocess.Popen.__init__

    def noting(self, args, *rest, **kwargs):
        program = Path(str(args[0] if isinstance(args, (list, tuple)) else str(args).split()[0])).name
        if program not in QUICK_TOOLS:
            started.append(" ".join(map(str, args)) if isinstance(args, (list, tuple)) else str(args))
        popen(self, args, *rest, **kwargs)

    subprocess.Popen.__init__ = noting
    try:
        yield
    finally:
        subprocess.Popen.__init__ = popen
    if started and not item.get_closest_marker("slow"):
        pytest.fail(
            f"{item.nodeid} starts a process ({started[0][:120]}): mark it slow, or start it from a @slow_fixture",
            pytrace=False,
        )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    with _watching_for_processes(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    with _watching_for_processes(item):
        return (yield)


@pytest.fixture(autouse=True)
def _outside_the_checkout(tmp_path, monkeypatch):
    """Every test stands in a folder of its own: what MLflow and Optuna write where the process
    stands (./mlruns, ./mlflow.db) lands there, never in the repository."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA_DIR.is_dir():
        pytest.fail(f"MNIST not found at {DATA_DIR}; set SWEEP_DATA_DIR")
    return DATA_DIR


@pytest.fixture(scope="session")
def mnist(data_dir):
    from sweep.training.data import load_mnist

    return load_mnist(data_dir)


def cli_command(*args: str) -> list[str]:
    return [sys.executable, str(REPO / "sweep.py"), *args]


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of a user with the data in SWEEP_DATA_DIR and default stores. (MLflow's
    set_tracking_uri exports MLFLOW_TRACKING_URI, which must not leak from one test into the next.)"""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "OPTUNA_STORAGE")}
    return {**env, "SWEEP_DATA_DIR": str(DATA_DIR), **extra}


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """`python sweep.py ARGS` in a fresh process, as a user would run it: for tests where the
    process is the point (signals, kill -9, start-up, the environment a process sees)."""
    return subprocess.run(
        cli_command(*args), cwd=cwd, env=env or cli_env(), capture_output=True, text=True, timeout=timeout
    )


def forget_mlflow_stores() -> None:
    """MLflow keeps one store, and one database engine, per tracking URI for the life of a
    process; a relative sqlite:///mlflow.db names another file in each test's folder."""
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    from mlflow.tracking._model_registry import utils as registry
    from mlflow.tracking._tracking_service import utils as tracking

    tracking._tracking_store_registry._get_store_with_resolved_uri.cache_clear()
    registry._get_store_registry()._get_store_with_resolved_uri.cache_clear()
    tracking._tracking_uri = None
    for store in (SqlAlchemyStore, RegistryStore):
        for uri in [u for u in store._engine_map if u.startswith("sqlite:///") and not u.startswith("sqlite:////")]:
            store._engine_map.pop(uri).dispose()


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`sweep.py ARGS` run in this process (TensorFlow is imported once per test session, not
    once per command), in `cwd`, with the user's environment: the same exit code and output."""
    from sweep.cli import main

    return in_process(main, "sweep.py", *args, cwd=cwd, env=env)


def in_process(
    main: Callable[[list[str]], int], name: str, *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """A command line's `main(ARGS)` run in this process, in `cwd`, with the user's environment.
    What the command sets for its process (environment, logging, signal handlers, MLflow's
    tracking URI) is put back after, so that nothing leaks into the next test."""
    out, err = io.StringIO(), io.StringIO()
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    logger = logging.getLogger("sweep")
    saved_logging = (list(logger.handlers), logger.level, logger.propagate)
    saved_signals = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    os.environ.clear()
    os.environ.update(env or cli_env())
    forget_mlflow_stores()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as e:  # argparse's errors
                code = e.code
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        logger.handlers[:], logger.level, logger.propagate = saved_logging
        for signum, handler in saved_signals.items():
            signal.signal(signum, handler)
        forget_mlflow_stores()
    return subprocess.CompletedProcess([name, *args], code, out.getvalue(), err.getvalue())


@pytest.fixture
def messages() -> list[str]:
    """The tool's log messages while the test runs, a line each."""
    found: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            found.append(record.getMessage())

    logger, handler = logging.getLogger("sweep"), Keep()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield found
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.fixture(scope="session")
def op_cache(tmp_path_factory) -> Path:
    """The LSTM op, built once per test session; its cache folder, which tests copy into each
    "machine" they start (every worker would otherwise compile it again)."""
    from sweep.training.lstm_op import library

    return library().parent


class Processes:
    """The processes a test starts: each in a session of its own, its output in a log file (a
    pipe nobody reads fills up and blocks a chatty server), and all killed, with their
    children (a server's workers), when the test ends, passed, failed or timed out."""

    def __init__(self):
        self.started: list[subprocess.Popen] = []
        self.logs = Path(tempfile.mkdtemp(prefix="sweep-test-logs-"))

    def start(self, command: list[str], **kwargs) -> subprocess.Popen:
        log = self.logs / f"{len(self.started)}.log"
        with open(log, "w") as out:
            process = subprocess.Popen(
                command, start_new_session=True, stdout=out, stderr=subprocess.STDOUT, text=True, **kwargs
            )
        process.log = log
        self.started.append(process)
        return process

    def sweep(self, cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        return self.start(cli_command(*args), cwd=cwd, env=env or cli_env())

    def kill_all(self, *keep: subprocess.Popen) -> None:
        """SIGKILL every process started (but `keep`), with its whole process group."""
        for process in self.started:
            if process.poll() is None and process not in keep:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)


@slow_fixture
def procs():
    processes = Processes()
    yield processes
    processes.kill_all()
    shutil.rmtree(processes.logs, ignore_errors=True)


def finish(process: subprocess.Popen, timeout: float = 900) -> str:
    """Wait for a process started by `Processes`; what it printed (stdout and stderr together)."""
    process.wait(timeout=timeout)
    return process.log.read_text(errors="replace")


def quoted(text: str) -> str:
    """What a failure message quotes of a process's output: its last traceback whole (its last
    lines alone would cut off the cause), else its last 3,000 characters."""
    start = text.rfind("Traceback (most recent call last)")
    return text[start : start + 12_000] if start >= 0 else text[-3000:]


def output(process: subprocess.Popen) -> str:
    """A finished process's exit code and the end of what it printed, for a failure message."""
    return f"exit {process.poll()}\n{quoted(finish(process, 30))}"


def wait_for(
    condition: Callable[[], object], *children: subprocess.Popen, timeout: float = 300, what: str = "the event"
):
    """Poll `condition` until it returns something true, and return that. Fails at once, with
    its output, if one of `children` exits first; fails after `timeout` seconds, saying what the
    condition last raised (the stores may not exist yet at first: that is why it may raise)."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            found = condition()
        except Exception as e:  # noqa: BLE001  kept, and reported if it never stops
            found, last = None, e
        if found:
            return found
        for child in children:
            if child.poll() is not None:
                raise AssertionError(f"a process exited before {what}:\n{output(child)}")
        time.sleep(0.05)
    met = f"; the condition last raised {type(last).__name__}: {last}" if last is not None else ""
    raise AssertionError(f"timed out after {timeout} s waiting for {what}{met}")


def serve(processes: Processes, command: list[str], url: str, cwd: Path, timeout: float = 120) -> subprocess.Popen:
    """Start a server and wait until `url` answers (failing at once, with its output, if it exits)."""
    import urllib.request

    server = processes.start(command, cwd=cwd)

    def answers() -> bool:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status == 200

    wait_for(answers, server, timeout=timeout, what=f"the server to answer at {url}")
    return server


def tracking_server(procs: Processes, backend: str, artifacts: Path, port: int, cwd: Path) -> subprocess.Popen:
    """A real `mlflow server` on this backend store, holding the artifacts in `artifacts`."""
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        backend,
        "--artifacts-destination",
        str(artifacts),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    return serve(procs, command, f"http://127.0.0.1:{port}/health", cwd)


@functools.cache
def _empty_tracking_store() -> Path:
    from mlflow import MlflowClient

    folder = Path(tempfile.mkdtemp(prefix="empty-tracking-store-"))
    atexit.register(shutil.rmtree, folder, True)
    MlflowClient(f"sqlite:///{folder}/mlflow.db").search_experiments()
    return folder / "mlflow.db"


def tracking_store(folder: Path) -> str:
    """The folder's MLflow tracking store (sqlite:///…/mlflow.db); a new one is a copy of an empty
    store MLflow made once this session: what MLflow makes each time, less its ~50 schema
    migrations (1.5-3 s per new store; 18 fast tests used to make one each)."""
    db = folder / "mlflow.db"
    if not db.exists():
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_empty_tracking_store(), db)
    return f"sqlite:///{db}"


def recorded_experiment(folder: Path, name: str) -> tuple[MlflowClient, str]:
    """A study's MLflow experiment and parent run as a sweep makes them, in the folder's store,
    with their artifacts beside it (MLflow's default is wherever the process stands). Returns the
    client and the experiment's id."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_store(folder))
    experiment = client.create_experiment(name, artifact_location=str(folder / "mlruns"))
    client.create_run(experiment, run_name=f"study-{name}", tags={"sweep.role": "study", "optuna.study_name": name})
    return client, experiment


def log_counts(client, run_id: str, val: int, test: int, first128: int = 127) -> None:
    """A finished run's three accuracies as the tool logs them (value, correct, total) of 5,000
    validation, 10,000 test and the first 128 test images: a record made with no training."""
    for metric, (right, total) in {
        "val_accuracy": (val, 5000),
        "test_accuracy": (test, 10000),
        "test_accuracy_first128": (first128, 128),
    }.items():
        for key, value in ((metric, right / total), (f"{metric}_correct", right), (f"{metric}_total", total)):
            client.log_metric(run_id, key, value)
    client.set_terminated(run_id)


def trial_runs(client, experiment_id):
    """A study's trial runs, in trial order."""
    runs = client.search_runs([experiment_id], "tags.`sweep.role` = 'trial'")
    return sorted(runs, key=lambda r: int(r.data.tags["optuna.trial_number"]))


@slow_fixture(scope="session")
def swept(tmp_path_factory):
    """A finished 3-trial smoke study in its own folder, with the default store names. Tests
    read it; a test that adds to it works on a copy (`copy_of_swept`)."""
    folder = tmp_path_factory.mktemp("sweep")
    result = cli("--study", str(SMOKE), "--trials", "3", cwd=folder)
    assert result.returncode == 0, result.stderr
    return folder, result


@pytest.fixture
def copy_of_swept(swept, tmp_path) -> Path:
    """The swept study's folder, copied, with its MLflow artifacts where the copy's store says."""
    import sqlite3

    folder = tmp_path / "study"
    shutil.copytree(swept[0], folder)
    with sqlite3.connect(folder / "mlflow.db") as db:  # artifact locations are absolute paths
        for table, column in (
            ("experiments", "artifact_location"),
            ("runs", "artifact_uri"),
            ("logged_models", "artifact_location"),
            ("model_versions", "source"),
            ("model_versions", "storage_location"),
        ):
            db.execute(f"UPDATE {table} SET {column} = REPLACE({column}, ?, ?)", (str(swept[0]), str(folder)))
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PG_PASSWORD = "pw-s3cret-9431"


@slow_fixture(scope="session")
def postgres():
    """A real PostgreSQL server on 127.0.0.1 with databases `optuna` and `mlflow`; yields the
    server URL with a password in it (trust auth ignores it), to test that it never leaks. It
    logs every connection, so tests can count them from the server's own record."""
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
    with open(root / "data" / "postgresql.conf", "a") as conf:
        conf.write("log_connections = on\nlog_disconnections = on\nlog_line_prefix = '%m|%p|%d|'\n")
    pg(f"{bindir}/pg_ctl -D {root}/data -l {root}/log -w -o '-p {port} -k {root} -c listen_addresses=127.0.0.1' start")
    try:
        for db in ("optuna", "mlflow"):
            pg(f"{bindir}/createdb -h 127.0.0.1 -p {port} -U postgres {db}")
        server = f"postgresql://postgres:{PG_PASSWORD}@127.0.0.1:{port}"
        os.environ["SWEEP_TEST_PG_LOG"] = str(root / "log")
        yield server
    finally:
        pg(f"{bindir}/pg_ctl -D {root}/data -m immediate stop")
        shutil.rmtree(root, ignore_errors=True)


def new_database(server: str, name: str) -> str:
    """A fresh database on the test server (so tests never share a study); its URL."""
    import psycopg

    with psycopg.connect(f"{server}/postgres", autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
        connection.execute(f'CREATE DATABASE "{name}"')
    return f"{server}/{name}"


def postgres_log_size() -> int:
    """Where the test server's log ends now: `sessions` reads from there on."""
    return Path(os.environ["SWEEP_TEST_PG_LOG"]).stat().st_size


@dataclass
class Session:
    """One client connection, as the server logged it: who opened it, where, when, until when."""

    application: str
    database: str
    opened: datetime
    closed: datetime


def sessions(databases: set[str], since: int = 0) -> list[Session]:
    """Every client connection to these databases, from the server's own log of each connection
    and disconnection (no sampling: no connection slips between samples), read from byte
    `since` on. A client names itself by PGAPPNAME. A connection still open counts as closed
    at the log's last line."""
    with open(os.environ["SWEEP_TEST_PG_LOG"], "rb") as log:
        log.seek(since)
        lines = log.read().decode(errors="replace").splitlines()
    opened: dict[str, tuple[str, str, datetime]] = {}  # by server process id
    closed: dict[str, datetime] = {}
    at = datetime.min
    for line in lines:
        parts = line.split("|", 3)
        if len(parts) < 4 or parts[2] not in databases:
            continue
        at = datetime.strptime(parts[0].rsplit(" ", 1)[0], "%Y-%m-%d %H:%M:%S.%f")
        if "connection authorized" in parts[3]:
            name = re.search(r"application_name=(\S+)", parts[3])
            opened[parts[1]] = (name.group(1) if name else "", parts[2], at)
        elif "disconnection:" in parts[3]:
            closed[parts[1]] = at
    return [Session(*start, closed.get(pid, at)) for pid, start in opened.items()]


def peak(sessions: list[Session]) -> int:
    """The most of these connections the server held at once."""
    # A close (-1) and an open (+1) in one millisecond sort with the close first.
    events = sorted([(s.opened, 1) for s in sessions] + [(s.closed, -1) for s in sessions])
    held = most = 0
    for _, change in events:
        held += change
        most = max(most, held)
    return most
