"""The Optuna side: open the study, enqueue the baseline, run the objective up to the target.

`--trials N` is a target for the study, not a count for this process: workers stop starting
trials once finished plus running trials reach it, so re-running a command after an
interruption, or running it in several processes or machines, only adds what is missing.

Trials left RUNNING by a dead worker are failed and their parameters queued again: by
Optuna's heartbeat from any machine after the grace period, and at once by a worker that
starts on the same host and finds the recorded process gone.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import sqlalchemy
from mlflow import MlflowClient
from mlflow.entities import RunTag
from optuna.trial import FrozenTrial, TrialState

from sweep.config import HYPERPARAMETERS, CurvePoint
from sweep.data import Mnist
from sweep.errors import SweepError, TrainingDiverged, TrainingStopped
from sweep.model import Backend
from sweep.spec import Spec
from sweep.tracking import StudyTracker, mask_url, retry_first_use
from sweep.train import train

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
HEARTBEAT_INTERVAL = 20  # seconds between a running trial's heartbeats
GRACE_PERIOD = 120  # a trial silent this long belongs to a dead worker
MAX_RETRY = 2  # a dead worker's trial is queued again at most this often
MAX_FAILURES_IN_A_ROW = 5  # then the study's ranges, not bad luck, are the problem


class Surplus(Exception):
    """Other workers already claimed the target; this trial is not run."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM, raised where stopping is safe (between optimizer steps or trials);
    Optuna then fails the running trial as it does for Ctrl-C."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_stop_signal: list[int] = []  # set by request_stop, from the signal handler


def request_stop(signum: int, frame=None) -> None:
    """A signal handler: TensorFlow must not be interrupted mid-call, so the first signal is only
    noted and acted on at the next safe point; a second one stops at once."""
    if _stop_signal:
        raise Interrupted(signum)
    _stop_signal.append(signum)


def check_stop() -> None:
    if _stop_signal:
        raise Interrupted(_stop_signal[0])


def connect_storage(storage_url: str, on_stale: Callable[[optuna.Study, FrozenTrial], None] | None = None):
    try:
        sqlalchemy.engine.make_url(storage_url)  # a malformed URL needs no retries
        return retry_first_use(lambda: optuna.storages.RDBStorage(
            storage_url, heartbeat_interval=HEARTBEAT_INTERVAL, grace_period=GRACE_PERIOD, heartbeat_stale_trial_callback=on_stale
        ))
    except Exception as e:  # SQLAlchemy raises a different type for each way a URL can be wrong
        raise SweepError(f"cannot open Optuna storage {mask_url(storage_url)}: {str(e).splitlines()[0]}") from None


def load_study(study_name: str, storage_url: str) -> optuna.Study:
    """An existing study, for reading."""
    storage = connect_storage(storage_url)
    if study_name not in {s.study_name for s in storage.get_all_studies()}:
        raise SweepError(f"no study '{study_name}' in Optuna storage {mask_url(storage_url)} (see --storage, --study-name)")
    return optuna.load_study(study_name=study_name, storage=storage)


def stale_trial_callback(client: MlflowClient) -> Callable[[optuna.Study, FrozenTrial], None]:
    """For a trial whose worker died: queue its parameters again, close its MLflow run KILLED."""
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)

    def on_stale(study: optuna.Study, trial: FrozenTrial) -> None:
        retry(study, trial)
        run_id = trial.user_attrs.get("mlflow_run_id")
        if run_id and client.get_run(run_id).info.status == "RUNNING":
            reason = "worker died (no heartbeat, or its process is gone); parameters queued again"
            client.log_batch(run_id, tags=[RunTag("sweep.failure", reason), RunTag("sweep.trial_state", "FAIL")])
            client.set_terminated(run_id, status="KILLED")

    return on_stale


def open_study(spec: Spec, storage_url: str, client: MlflowClient) -> optuna.Study:
    """Load or create the study; a new one gets the baseline as trial 0, then the spec's
    `[[enqueue]]` trials."""
    on_stale = stale_trial_callback(client)
    storage = connect_storage(storage_url, on_stale)
    study = optuna.create_study(
        storage=storage, study_name=spec.name, direction="maximize", pruner=spec.make_pruner(), load_if_exists=True
    )
    recorded = study.user_attrs.get("spec_digest")
    if recorded is None:
        study.set_user_attr("spec_digest", spec.digest)
        study.set_user_attr("spec", spec.source)
    elif recorded != spec.digest:
        raise SweepError(f"study '{spec.name}' was created from a different study file; give this one a new --study-name")
    if not study.get_trials(deepcopy=False):
        study.enqueue_trial(spec.params(spec.baseline), user_attrs={"baseline": True}, skip_if_exists=True)
        for config in spec.enqueue:
            study.enqueue_trial(spec.params(config), user_attrs={"enqueued": True}, skip_if_exists=True)
    fail_dead_local_trials(study, on_stale)
    return study


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


def fail_dead_local_trials(study: optuna.Study, on_stale: Callable[[optuna.Study, FrozenTrial], None]) -> None:
    """RUNNING trials recorded by this host whose process is gone: failed and queued again now,
    instead of after the heartbeat's grace period."""
    host = socket.gethostname()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get("worker", {})
        if worker.get("host") != host or _process_start(int(worker["pid"])) == worker["started"]:
            continue
        try:
            study._storage.set_trial_user_attr(trial._trial_id, "failure", "worker process died")
            if study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
                on_stale(study, study._storage.get_trial(trial._trial_id))
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # another worker got there first


def finished_trials(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def claimed_trials(study: optuna.Study, below: int | None = None) -> int:
    """Finished trials plus those running now, here or in another worker (numbered below `below`)."""
    trials = study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING))
    return len([t for t in trials if below is None or t.number < below])


def earlier_copy(study: optuna.Study, number: int) -> int | None:
    """Workers that create a study at the same moment may each enqueue the baseline (and the
    spec's [[enqueue]] trials): enqueueing checks for an existing copy, but not atomically. The
    earlier copy of an enqueued trial, if this one is a later one. (Retries of a dead worker's
    trial carry `failed_trial` and are not copies.)"""
    trials = study.get_trials(deepcopy=False)
    mine = trials[number].system_attrs
    if "fixed_params" not in mine or "failed_trial" in mine:
        return None
    return next((t.number for t in trials[:number] if t.system_attrs.get("fixed_params") == mine["fixed_params"]
                 and "failed_trial" not in t.system_attrs), None)


def run_study(
    study: optuna.Study,
    spec: Spec,
    tracker: StudyTracker,
    mnist: Mnist,
    backend: Backend,
    target: int,
    timeout: float | None = None,
    on_trial: Callable[[FrozenTrial], None] | None = None,
) -> None:
    """Run trials in this process until the study has `target` finished trials, or until
    `timeout` seconds have passed: then no trial starts, and a running one stops between two
    steps (FAIL in Optuna, KILLED in MLflow, its curve so far kept)."""
    deadline = None if timeout is None else time.monotonic() + timeout

    def on_step() -> None:
        check_stop()
        if deadline is not None and time.monotonic() > deadline:
            raise TrainingStopped(f"stopped by --timeout {timeout:g}: the study's time ran out during training")

    def objective(trial: optuna.Trial) -> float:
        # Trial numbers are handed out atomically by the storage; the trials numbered below
        # this one decide whether it is still needed, so racing workers never overshoot.
        if claimed_trials(study, below=trial.number) >= target:
            trial.set_user_attr("failure", "surplus: the target was reached by other workers; not run")
            raise Surplus
        twin = earlier_copy(study, trial.number)
        if twin is not None:
            trial.set_user_attr("failure", f"surplus: a second copy of trial {twin}, enqueued by workers that created the study together; not run")
            raise Surplus
        trial.set_user_attr("worker", worker_identity())
        # A sampler seeded by the trial's number: reproducible in one process, yet workers (and
        # resumed runs) never replay each other's random proposals. The sampler reads the
        # study's history from the storage, so a fresh one loses nothing.
        study.sampler = spec.make_sampler(trial.number)
        config = spec.suggest(trial)

        def on_eval(p: CurvePoint) -> None:
            run.log_curve_point(p)
            trial.set_user_attr("train_seconds", p.train_seconds)  # so far: what a pruned or stopped trial cost
            trial.report(p.val_accuracy, p.point)
            if trial.should_prune():
                where = f"{'epoch' if config.epochs else 'step'} {p.point}"
                trial.set_user_attr("pruned_at", where)
                trial.set_user_attr("pruned_val", str(p.val))
                raise optuna.TrialPruned(f"validation accuracy {p.val_accuracy:.4f} at {where} is below the median")

        with tracker.trial_run(trial.number, config, mnist.md5, backend) as run:
            trial.set_user_attr("mlflow_run_id", run.run_id)
            try:
                result = train(config, mnist, backend, on_eval=on_eval, on_step=on_step)
            except (TrainingDiverged, TrainingStopped) as e:
                trial.set_user_attr("failure", str(e))
                raise
            run.log_result(result)
        # For reading only (progress lines, optuna-dashboard): Optuna optimises validation accuracy.
        for name, acc in result.accuracies.items():
            trial.set_user_attr(name, str(acc))
        trial.set_user_attr("train_seconds", result.train_seconds)
        return result.val_accuracy

    failures_in_a_row = 0

    def after_trial(study: optuna.Study, trial: FrozenTrial) -> None:
        nonlocal failures_in_a_row
        check_stop()  # no new trial after Ctrl-C
        surplus = "surplus" in trial.user_attrs.get("failure", "")
        failures_in_a_row = failures_in_a_row + 1 if trial.state == TrialState.FAIL and not surplus else 0
        if trial.state == TrialState.COMPLETE and study.best_trial.number == trial.number:
            params = {k: trial.params[k] for k in HYPERPARAMETERS if k in trial.params}
            tracker.record_best(trial.number, params, trial.user_attrs["mlflow_run_id"])
        if on_trial is not None and not surplus:
            on_trial(trial)
        if failures_in_a_row >= MAX_FAILURES_IN_A_ROW:
            raise SweepError(f"{failures_in_a_row} trials in a row failed (last: {trial.user_attrs.get('failure')}); "
                             "check the study file's ranges")
        if claimed_trials(study) >= target:
            study.stop()

    if claimed_trials(study) < target:
        study.optimize(objective, timeout=timeout, catch=(TrainingDiverged, TrainingStopped, Surplus), callbacks=[after_trial])
