"""What a result depends on besides its configuration, recorded with every run and compared by
`reproduce`: library versions, the CPU, the LSTM backend, the MNIST files, the tool's commit."""

from __future__ import annotations

import functools
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from sweep.tracking.schema import PARAM_CPU
from sweep.training.config import cpu_model

LIBRARIES = ("tensorflow", "keras", "numpy", "optuna", "mlflow")  # whose versions a result may depend on


@functools.cache
def git_commit() -> str | None:
    """The tool's own commit (with "-dirty" for local edits), when it runs from a git checkout.
    Read once per process: the code a process runs does not change under it."""
    here = Path(__file__).parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "."], cwd=here, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def library_version(distribution: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:  # installed under another name (tensorflow-cpu, say)
        return "unknown"


def environment(md5: dict[str, str], backend: dict[str, str]) -> dict[str, str]:
    """What a result depends on besides its configuration; `backend`: the LSTM backend's own
    record (`Backend.params`)."""
    env = {f"version.{name}": library_version(name) for name in LIBRARIES}
    env["version.python"] = platform.python_version()
    env[PARAM_CPU] = cpu_model()
    env.update(backend)
    env.update({f"mnist_md5.{name}": digest for name, digest in md5.items()})
    return env
