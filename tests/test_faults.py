"""Sweeps that survive: pruning, divergence, Ctrl-C, SIGTERM, kill -9, many workers on PostgreSQL.

Every test runs the real command line in real processes against real stores."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import time

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from tests.conftest import PG_PASSWORD, SMOKE, cli_command, cli_env, run_cli

SLICES = """
[fixed]
train_steps = {steps}
eval_every = 20
train_limit = 2000
val_limit = 500
test_limit = 500
"""
SPACE = """
[search.num_units]
type = "int"
low = 8
high = 24
[search.learning_rate]
type = "float"
low = {low}
high = {high}
log = true
"""


def write_spec(folder, name, steps=60, low=1e-3, high=2e-2, baseline="", extra=""):
    """A smoke-sized study; trial 0 has 16 units and, unless given, the tutorial's learning rate."""
    path = folder / f"{name}.toml"
    text = f'name = "{name}"\n' + SLICES.format(steps=steps) + f"[baseline]\nnum_units = 16\n{baseline}\n" + extra
    path.write_text(text + SPACE.format(low=low, high=high))
    return path


def stores(folder, name):
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{folder}/optuna.db")
    client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
    return study, client, client.get_experiment_by_name(name).experiment_id


def runs_by_role(client, experiment_id, role):
    return client.search_runs([experiment_id], f"tags.`sweep.role` = '{role}'")


def assert_nothing_left_running(study, client, experiment_id):
    assert not study.get_trials(states=(TrialState.RUNNING,))
    assert all(r.info.status != "RUNNING" for r in client.search_runs([experiment_id]))


def assert_one_finished_run_per_complete_trial(study, client, experiment_id):
    finished = [r for r in runs_by_role(client, experiment_id, "trial") if r.info.status == "FINISHED"]
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert sorted(r.info.run_id for r in finished) == sorted(t.user_attrs["mlflow_run_id"] for t in complete)


def test_pruned_trials_are_recorded_and_count_toward_the_target(tmp_path):
    pruner = '[pruner]\ntype = "median"\nn_startup_trials = 1\n'
    spec = write_spec(tmp_path, "prune", low=1e-6, high=0.02, baseline="learning_rate = 0.02", extra=pruner)
    result = run_cli("--study", str(spec), "--trials", "4", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    study, client, experiment_id = stores(tmp_path, "prune")
    assert len(study.trials) == 4 and study.trials[0].state == TrialState.COMPLETE  # pruned trials count
    first = study.trials[0].intermediate_values[20]
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert pruned and all(t.intermediate_values[20] < first for t in pruned)
    assert all(t.state == TrialState.PRUNED for t in study.trials[1:] if t.intermediate_values[20] < first)
    assert "pruned at step 20" in result.stderr + result.stdout
    for trial in pruned:
        run = client.get_run(trial.user_attrs["mlflow_run_id"])
        assert run.info.status == "KILLED" and run.data.tags["sweep.trial_state"] == "PRUNED"
        assert [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")] == [20]
        assert "test_accuracy" not in run.data.metrics
    assert_nothing_left_running(study, client, experiment_id)


def test_diverging_trials_fail_with_reason_and_the_sweep_stops_after_five(tmp_path):
    spec = write_spec(tmp_path, "diverge", low=1e37, high=1e38, baseline="learning_rate = 1e37")
    result = run_cli("--study", str(spec), "--trials", "2", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("sweep.py: error: 5 trials in a row failed")
    study, client, experiment_id = stores(tmp_path, "diverge")
    assert [t.state for t in study.trials] == [TrialState.FAIL] * 5
    for trial in study.trials:
        assert trial.user_attrs["failure"].startswith("diverged: loss is ")
        run = client.get_run(trial.user_attrs["mlflow_run_id"])
        assert run.info.status == "FAILED" and "TrainingDiverged" in run.data.tags["sweep.failure"]
    assert_nothing_left_running(study, client, experiment_id)


def test_timeout_stops_the_running_trial_cleanly(tmp_path):
    spec = write_spec(tmp_path, "timeout", steps=100_000)  # hours of training without the timeout
    # The budget must cover start-up, the first trial's build and tracing and its first curve point
    # on this machine: measure them, in a probe run stopped at that point.
    probe_folder = tmp_path / "probe"
    probe_folder.mkdir()
    started = time.monotonic()
    probe = start_sweep(probe_folder, "--study", str(spec), "--trials", "1")
    wait_for_first_curve_point(probe_folder, "timeout")
    budget = math.ceil(2 * (time.monotonic() - started))  # the timeout's clock starts later than the probe's
    probe.send_signal(signal.SIGINT)
    probe.communicate(timeout=120)

    result = run_cli("--study", str(spec), "--trials", "3", "--timeout", str(budget), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    study, client, experiment_id = stores(tmp_path, "timeout")
    [trial] = study.trials  # no trial starts after the deadline
    assert trial.state == TrialState.FAIL and f"stopped by --timeout {budget}" in trial.user_attrs["failure"]
    run = client.get_run(trial.user_attrs["mlflow_run_id"])
    assert run.info.status == "KILLED" and run.data.tags["sweep.trial_state"] == "FAIL"
    curve = client.get_metric_history(run.info.run_id, "val_accuracy")
    assert curve and [m.step for m in curve] == list(range(20, 20 * len(curve) + 1, 20))  # kept up to the stop
    assert "test_accuracy" not in run.data.metrics
    assert trial.user_attrs["train_seconds"] == client.get_metric_history(run.info.run_id, "train_seconds")[-1].value
    assert_nothing_left_running(study, client, experiment_id)
    assert "0/3 trials finished" in result.stdout
    assert f"of the {budget} s budget" in result.stderr and "0/3 trials" in result.stderr  # the bar counts toward the budget


def start_sweep(folder, *args):
    return subprocess.Popen(cli_command(*args), cwd=folder, env=cli_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for_first_curve_point(folder, name, timeout=300):
    """The first RUNNING trial, once its MLflow run has logged a curve point: the worker is
    mid-trial, with the rest of its steps ahead (an event to wait for, not a time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (folder / "optuna.db").exists() and (folder / "mlflow.db").exists():
            try:
                study = optuna.load_study(study_name=name, storage=f"sqlite:///{folder}/optuna.db")
                client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
                for trial in study.get_trials(states=(TrialState.RUNNING,)):
                    run_id = trial.user_attrs.get("mlflow_run_id")
                    if "worker" in trial.user_attrs and run_id and client.get_metric_history(run_id, "val_accuracy"):
                        return trial
            except Exception:  # noqa: BLE001  the sweep may still be creating the tables or the study
                pass
        time.sleep(0.1)
    raise AssertionError("no trial reached its first curve point")


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupted_sweep_closes_its_records_and_continues(tmp_path, sig, code):
    spec = write_spec(tmp_path, "interrupt", steps=400)  # trials long enough to be caught mid-way
    args = ("--study", str(spec), "--trials", "2")
    process = start_sweep(tmp_path, *args)
    trial = wait_for_first_curve_point(tmp_path, "interrupt")
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == code, stderr
    assert "run the same command again" in stderr and "Traceback" not in stderr
    study, client, experiment_id = stores(tmp_path, "interrupt")
    assert study.trials[trial.number].state == TrialState.FAIL
    assert client.get_run(trial.user_attrs["mlflow_run_id"]).info.status == "KILLED"
    assert_nothing_left_running(study, client, experiment_id)

    again = run_cli(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    study, client, experiment_id = stores(tmp_path, "interrupt")
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 2
    assert_nothing_left_running(study, client, experiment_id)
    assert_one_finished_run_per_complete_trial(study, client, experiment_id)


def test_killed_worker_trial_is_failed_and_retried_by_the_next_worker(tmp_path):
    spec = write_spec(tmp_path, "killed", steps=400)
    args = ("--study", str(spec), "--trials", "2")
    process = start_sweep(tmp_path, *args)
    trial = wait_for_first_curve_point(tmp_path, "killed")
    process.kill()  # kill -9: no handler runs, the records stay RUNNING
    process.communicate(timeout=60)
    study, client, _ = stores(tmp_path, "killed")
    assert study.trials[trial.number].state == TrialState.RUNNING

    again = run_cli(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    study, client, experiment_id = stores(tmp_path, "killed")
    killed = study.trials[trial.number]
    assert killed.state == TrialState.FAIL
    retried = [t for t in study.trials if t.system_attrs.get("failed_trial") == trial.number]
    assert len(retried) == 1 and retried[0].state == TrialState.COMPLETE and retried[0].params == killed.params
    assert client.get_run(killed.user_attrs["mlflow_run_id"]).info.status == "KILLED"
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 2
    assert_nothing_left_running(study, client, experiment_id)
    assert_one_finished_run_per_complete_trial(study, client, experiment_id)


def test_a_baseline_enqueued_twice_runs_once(tmp_path):
    """Workers creating a study together can each enqueue the baseline (seen on PostgreSQL)."""
    assert run_cli("--study", str(SMOKE), "--trials", "1", cwd=tmp_path).returncode == 0
    study, _, _ = stores(tmp_path, "smoke")
    study.enqueue_trial(study.trials[0].params, user_attrs={"baseline": True})  # the racing worker's copy
    result = run_cli("--study", str(SMOKE), "--trials", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    study, _, _ = stores(tmp_path, "smoke")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    assert "second copy of trial 0" in study.trials[1].user_attrs["failure"]
    assert study.trials[2].params != study.trials[0].params
    assert [line.split()[1] for line in result.stdout.splitlines() if line.startswith("trial ")] == ["2"]


def test_n_jobs_runs_worker_processes_on_one_study(tmp_path):
    result = run_cli("--study", str(SMOKE), "--trials", "4", "--n-jobs", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    study, client, experiment_id = stores(tmp_path, "smoke")
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    # Both workers ran (the parent exits 0 only if both did); how they split the trials is timing.
    assert len(complete) == 4 and len({t.user_attrs["worker"]["pid"] for t in complete}) in (1, 2)
    assert sorted(line.split()[1] for line in result.stdout.splitlines() if line.startswith("trial ")) == ["0", "1", "2", "3"]
    assert_one_finished_run_per_complete_trial(study, client, experiment_id)


def test_four_workers_share_one_study_on_postgresql(tmp_path, postgres):
    storage, tracking = f"{postgres}/optuna", f"{postgres}/mlflow"
    args = ("--study", str(SMOKE), "--trials", "8", "--storage", storage, "--tracking-uri", tracking)
    workers = [start_sweep(tmp_path, *args) for _ in range(4)]
    outputs = [w.communicate(timeout=900) for w in workers]
    assert [w.returncode for w in workers] == [0, 0, 0, 0], [err[-2000:] for _, err in outputs]

    study = optuna.load_study(study_name="smoke", storage=storage)
    finished = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(finished) == 8 and len({t.number for t in finished}) == 8
    assert len({tuple(sorted(t.params.items())) for t in finished}) == 8  # no worker replays another's proposals
    assert not study.get_trials(states=(TrialState.RUNNING,))
    client = MlflowClient(tracking)
    experiment_id = client.get_experiment_by_name("smoke").experiment_id
    assert_one_finished_run_per_complete_trial(study, client, experiment_id)
    assert len(runs_by_role(client, experiment_id, "study")) == 1

    report = run_cli("report", "--study-name", "smoke", "--storage", storage, "--tracking-uri", tracking, cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    texts = [out + err for out, err in outputs] + [report.stdout + report.stderr]
    texts += [p.read_text(errors="ignore") for p in (tmp_path / "reports").rglob("*") if p.suffix in (".md", ".html", ".csv")]
    for run in client.search_runs([experiment_id]):
        texts += [str(run.data.params), str(run.data.tags)]
    assert not [t for t in texts if PG_PASSWORD in t]
    parent = runs_by_role(client, experiment_id, "study")[0]
    assert parent.data.params["optuna.storage"] == storage.replace(PG_PASSWORD, "***")


def test_unreachable_storage_is_one_line_with_the_password_masked(tmp_path, postgres):
    closed = postgres.rsplit(":", 1)[0] + f":{_closed_port()}/optuna"
    result = run_cli("--study", str(SMOKE), "--storage", closed, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("sweep.py")]
    assert "cannot open Optuna storage postgresql://postgres:***@127.0.0.1" in line
    assert PG_PASSWORD not in result.stderr + result.stdout


def _closed_port() -> int:
    from tests.conftest import free_port

    return free_port()  # bound and released: nothing listens there


def test_bad_n_jobs(tmp_path):
    result = run_cli("--n-jobs", "0", cwd=tmp_path)
    assert result.returncode == 2 and "--n-jobs: 0 must be at least 1" in result.stderr
    assert os.listdir(tmp_path) == []
