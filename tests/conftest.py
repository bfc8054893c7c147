"""Shared fixtures: the real MNIST files (../shared/data/mnist unless SWEEP_DATA_DIR says
otherwise), loaded once per test session, and a runner for the real command line."""

from __future__ import annotations

import os
import subprocess
import sys
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


def run_cli(*args: str, cwd: Path, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python sweep.py ARGS` in a fresh process, as a user would run it."""
    full_env = {**os.environ, "SWEEP_DATA_DIR": str(DATA_DIR), **(env or {})}
    return subprocess.run(
        [sys.executable, str(REPO / "sweep.py"), *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )


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
