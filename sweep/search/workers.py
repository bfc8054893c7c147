"""Many workers on one study: the shared target, signals, dead workers, and `--n-jobs`.

`--trials N` is a target for the study, not a count for this process: a trial starts only while
finished plus running trials are below it, so re-running a command after an interruption, or
running it in several processes or machines, only adds what is missing.

Trials left RUNNING by a dead worker are failed and their parameters queued again: by Optuna's
heartbeat from any machine after the grace period, and at once by a worker that starts on the
same host and finds the recorded process gone.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import optuna
from mlflow import MlflowClient
from optuna.trial import FrozenTrial, TrialState

from sweep.errors import SweepError
from sweep.search.attributes import (
    ATTR_DEATHS,
    ATTR_FAILURE,
    ATTR_MLFLOW_RUN_ID,
    ATTR_RESUMES,
    ATTR_STOPPED,
    ATTR_SURPLUS,
    ATTR_WORKER,
    CARRIED,
    SYSTEM_ATTR_FAILED_TRIAL,
    SYSTEM_ATTR_FIXED_PARAMS,
    SYSTEM_ATTR_RETRY_HISTORY,
)
from sweep.stopping import SafeStop
from sweep.tracking.runs import mark_failed
from sweep.tracking.schema import STATUS_KILLED, STATUS_RUNNING

FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)  # what counts toward --trials
MAX_DEATHS = 2  # a trial whose worker died is queued again this often at most (one stopped on purpose, always)
POLL_SECONDS = 2  # how often a worker with nothing to run looks at the others' trials


class Surplus(Exception):
    """The study needs no more trials (or this one is a second copy of an enqueued one): not run."""


def wait(seconds: float, left: float | None, stop: SafeStop) -> None:
    """Sleep while other workers' trials run, waking for signals (and before the `left` seconds
    of the study's time budget are up)."""
    until = time.monotonic() + (seconds if left is None else min(seconds, left))
    while time.monotonic() < until:
        stop.check()
        time.sleep(min(0.2, max(0.0, until - time.monotonic())))


def finished_trials(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED_STATES))


def claimed_trials(study: optuna.Study, below: int | None = None) -> int:
    """Finished trials plus those running now, here or in another worker (numbered below `below`)."""
    trials = study.get_trials(deepcopy=False, states=(*FINISHED_STATES, TrialState.RUNNING))
    return len([t for t in trials if below is None or t.number < below])


def is_surplus(trial: FrozenTrial) -> bool:
    return trial.user_attrs.get(ATTR_SURPLUS, False)


def retry(study: optuna.Study, trial: FrozenTrial) -> bool:
    """Queue a trial that stopped before its end again, as a new trial that continues it (from
    its checkpoint, see `sweep.study.objective`), the way Optuna's RetryHeartbeatStaleTrialCallback
    does. A trial stopped on purpose (--timeout, Ctrl-C, SIGTERM) is always queued again; one
    whose worker died, at most MAX_DEATHS times. Whether it was queued."""
    deaths = trial.user_attrs.get(ATTR_DEATHS, 0) + (0 if trial.user_attrs.get(ATTR_STOPPED) else 1)
    if deaths > MAX_DEATHS:
        return False
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.WAITING,
            params=trial.params,
            distributions=trial.distributions,
            user_attrs={
                **{k: v for k, v in trial.user_attrs.items() if k in CARRIED},
                ATTR_RESUMES: trial.number,
                ATTR_DEATHS: deaths,
            },
            system_attrs={
                SYSTEM_ATTR_FAILED_TRIAL: trial.system_attrs.get(SYSTEM_ATTR_FAILED_TRIAL, trial.number),
                SYSTEM_ATTR_RETRY_HISTORY: [*trial.system_attrs.get(SYSTEM_ATTR_RETRY_HISTORY, []), trial.number],
            },
        )
    )
    return True


def claim(study: optuna.Study, trial: optuna.Trial, target: int) -> None:
    """Let this trial run, or raise Surplus. Trial numbers are handed out atomically by the
    storage, and the trials numbered below this one decide, so racing workers never overshoot."""
    if claimed_trials(study, below=trial.number) >= target:
        reason = "the target was reached by other workers; not run"
    elif (twin := earlier_copy(study, trial.number)) is not None:
        reason = f"a second copy of trial {twin}, enqueued by workers that created the study together; not run"
    else:
        trial.set_user_attr(ATTR_WORKER, worker_identity())
        return
    trial.set_user_attr(ATTR_SURPLUS, True)
    trial.set_user_attr(ATTR_FAILURE, reason)
    raise Surplus(reason)


def earlier_copy(study: optuna.Study, number: int) -> int | None:
    """Workers that create a study at the same moment may each enqueue the baseline (and the
    spec's [[enqueue]] trials): enqueueing checks for an existing copy, but not atomically. The
    earlier copy of an enqueued trial, if this one is a later one. (Retries of a dead worker's
    trial carry `failed_trial` and are not copies.)"""
    trials = study.get_trials(deepcopy=False)
    mine = trials[number].system_attrs
    if SYSTEM_ATTR_FIXED_PARAMS not in mine or SYSTEM_ATTR_FAILED_TRIAL in mine:
        return None
    return next(
        (
            t.number
            for t in trials[:number]
            if t.system_attrs.get(SYSTEM_ATTR_FIXED_PARAMS) == mine[SYSTEM_ATTR_FIXED_PARAMS]
            and SYSTEM_ATTR_FAILED_TRIAL not in t.system_attrs
        ),
        None,
    )


def worker_identity() -> dict[str, str]:
    """Host, pid and the process's start time: a pid alone may be reused after a reboot."""
    return {"host": socket.gethostname(), "pid": str(os.getpid()), "started": _process_start(os.getpid()) or ""}


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot, or None if there is no such process.
    (Without Linux's /proc: "" for any live process.)"""
    if not Path("/proc/self/stat").exists():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return ""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except OSError:
        return None


def stale_trial_callback(client: MlflowClient) -> Callable[[optuna.Study, FrozenTrial], None]:
    """For a trial whose worker died: queue it again (it resumes from its last checkpoint),
    close its MLflow run KILLED."""

    def on_stale(study: optuna.Study, trial: FrozenTrial) -> None:
        queued = retry(study, trial)
        run_id = trial.user_attrs.get(ATTR_MLFLOW_RUN_ID)
        if run_id and client.get_run(run_id).info.status == STATUS_RUNNING:
            then = (
                "queued again, to resume from its last checkpoint"
                if queued
                else f"not queued again (its worker died {MAX_DEATHS + 1} times)"
            )
            mark_failed(client, run_id, f"worker died (no heartbeat, or its process is gone); {then}", STATUS_KILLED)

    return on_stale


def fail_dead_local_trials(
    study: optuna.Study, storage: optuna.storages.BaseStorage, on_stale: Callable[[optuna.Study, FrozenTrial], None]
) -> None:
    """RUNNING trials recorded by this host whose process is gone: failed and queued again now,
    instead of after the heartbeat's grace period. (Optuna's study has no call that fails
    another worker's trial; its storage has.)"""
    host, study_id = socket.gethostname(), storage.get_study_id_from_name(study.study_name)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get(ATTR_WORKER, {})
        if worker.get("host") != host or _process_start(int(worker["pid"])) == worker["started"]:
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        try:
            storage.set_trial_user_attr(trial_id, ATTR_FAILURE, "worker process died")
            if storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                on_stale(study, storage.get_trial(trial_id))
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # another worker got there first


def worker_argv(argv: list[str]) -> list[str]:
    """This command for one of --n-jobs' workers: its stores come by environment variable, so
    that no password stands on a command line, where `ps` shows it."""
    kept, skip = [], False
    for word in argv:
        if skip:
            skip = False
        elif word in ("--storage", "--tracking-uri"):
            skip = True
        elif not word.startswith(("--storage=", "--tracking-uri=")):
            kept.append(word)
    return [*kept, "--n-jobs", "1", "--worker"]  # their own "--n-jobs 1" comes last and wins


def run_workers(
    worker_args: list[str], n_jobs: int, worker_env: dict[str, str], show_progress: Callable[[], None], stop: SafeStop
) -> None:
    """`--n-jobs K`: K worker processes (TensorFlow training is CPU-bound; threads would share
    one interpreter), each running `python -m sweep WORKER_ARGS` on the same study, with
    `worker_env` added to their environment."""
    command = [sys.executable, "-m", "sweep", *worker_args]
    here = str(Path(__file__).resolve().parent.parent)  # this package, installed or not
    env = {
        **os.environ,
        **worker_env,
        "PYTHONPATH": os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")])),
    }
    # Workers get signals from the parent only (a terminal's Ctrl-C reaches the whole group).
    workers = [subprocess.Popen(command, env=env, start_new_session=True) for _ in range(n_jobs)]
    try:
        while any(w.poll() is None for w in workers):
            time.sleep(1)
            stop.check()
            show_progress()
    except KeyboardInterrupt as e:
        for w in workers:
            w.send_signal(getattr(e, "signum", signal.SIGINT))
        for w in workers:
            w.wait()
        raise
    failed = [w.returncode for w in workers if w.returncode != 0]
    if failed:
        raise SweepError(f"{len(failed)} of {n_jobs} workers failed (exit codes {failed}); their output says why")
