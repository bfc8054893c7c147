"""Sweeps that survive: pruning, divergence, --timeout, Ctrl-C, SIGTERM, kill -9, a damaged
checkpoint, many workers. A trial that stops for any reason resumes from its checkpoint and
ends bitwise identical to one that never stopped.

Every test runs the real command line against real stores: in this process, or in a process
of its own where the process is the point (signals, kill -9, workers)."""

from __future__ import annotations

import signal
import tempfile
from pathlib import Path

import keras
import mlflow
import numpy as np
import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from sweep.tracking import schema
from sweep.training.checkpoint import Checkpoint
from tests.conftest import PG_PASSWORD, SMOKE, cli, finish, free_port, output, wait_for

pytestmark = pytest.mark.slow

SLICES = """
[fixed]
train_steps = {steps}
eval_every = {every}
train_limit = 1000
val_limit = 200
test_limit = 200
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


def write_spec(folder, name, steps=60, every=20, low=1e-3, high=2e-2, baseline="", extra=""):
    """A small study; trial 0 has 16 units and, unless given, the tutorial's learning rate."""
    path = folder / f"{name}.toml"
    text = (
        f'name = "{name}"\n'
        + SLICES.format(steps=steps, every=every)
        + f"[baseline]\nnum_units = 16\n{baseline}\n"
        + extra
    )
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


def assert_no_checkpoint_left(client, experiment_id):
    for run in client.search_runs([experiment_id]):
        assert schema.TAG_CHECKPOINT not in run.data.tags and not client.list_artifacts(
            run.info.run_id, schema.ARTIFACT_CHECKPOINTS
        ), run.info.run_name


def test_pruned_trials_are_recorded_and_count_toward_the_target(tmp_path):
    pruner = '[pruner]\ntype = "median"\nn_startup_trials = 1\n'
    spec = write_spec(tmp_path, "prune", low=1e-6, high=0.02, baseline="learning_rate = 0.02", extra=pruner)
    result = cli("--study", str(spec), "--trials", "4", cwd=tmp_path)
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
        assert trial.user_attrs["train_images"] == 20 * trial.params.get("batch_size", 128)  # what it cost
    assert_nothing_left_running(study, client, experiment_id)
    assert_no_checkpoint_left(client, experiment_id)


def test_diverging_trials_fail_with_reason_and_the_sweep_stops_after_five(tmp_path):
    spec = write_spec(tmp_path, "diverge", low=1e37, high=1e38, baseline="learning_rate = 1e37")
    result = cli("--study", str(spec), "--trials", "2", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("sweep.py: error: 5 trials in a row failed")
    study, client, experiment_id = stores(tmp_path, "diverge")
    assert [t.state for t in study.trials] == [TrialState.FAIL] * 5
    for trial in study.trials:
        assert trial.user_attrs["failure"].startswith("diverged: loss is ")
        run = client.get_run(trial.user_attrs["mlflow_run_id"])
        assert run.info.status == "FAILED" and "TrainingDiverged" in run.data.tags["sweep.failure"]
    assert_nothing_left_running(study, client, experiment_id)


# Resuming. A trial of 30 curve points (1,200 steps) that takes seconds: stopped after its
# second point, it has most of its steps ahead, so no stop can arrive after its end.
RESUME = dict(steps=1200, every=40)


def final_model(client, run_id):
    """The weights of the MLflow model the run logged."""
    run = client.get_run(run_id)
    [model] = client.search_logged_models([run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'")
    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(
            artifact_uri=f"{model.artifact_location}/data/model.keras", dst_path=tmp, tracking_uri=client.tracking_uri
        )
        return [np.array(w) for w in keras.models.load_model(path).get_weights()]


def record_of(client, run_id):
    """Everything a trial's run logged that does not depend on the clock: every curve and final
    metric at every step (not train_seconds, samples_per_second), and the final weights."""
    run = client.get_run(run_id)
    metrics = {
        k: [(m.step, m.value) for m in client.get_metric_history(run_id, k)]
        for k in sorted(run.data.metrics)
        if k not in ("train_seconds", "samples_per_second")
    }
    return metrics, final_model(client, run_id)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The resume study's trial 0, trained straight through: what every resumed one must equal."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    spec = write_spec(folder, "resume", **RESUME)
    result = cli("--study", str(spec), "--trials", "1", cwd=folder)
    assert result.returncode == 0, result.stderr
    study, client, _ = stores(folder, "resume")
    return spec, study.trials[0], record_of(client, study.trials[0].user_attrs["mlflow_run_id"])


def checkpoint_step(run) -> int:
    """The step of the run's latest checkpoint (0: none), from the artifact its tag names."""
    path = run.data.tags.get(schema.TAG_CHECKPOINT)
    return int(path.removeprefix(f"{schema.ARTIFACT_CHECKPOINTS}/step-").removesuffix(".npz")) if path else 0


def checkpointed(folder, name, at_least: int, role: str = "trial"):
    """A run in `role`, once it holds a checkpoint of `at_least` steps or more."""
    client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name(name).experiment_id], f"tags.`sweep.role` = '{role}'")
    return next((run for run in runs if checkpoint_step(run) >= at_least), None)


def assert_resumed_as_if_never_stopped(folder, uninterrupted, stopped_number: int, rerun) -> optuna.trial.FrozenTrial:
    """The rerun's trial continued the stopped one from its checkpoint and ended with the same
    weights, metrics and pruner's curve as the uninterrupted trial; no checkpoint is left."""
    _, reference, (metrics, weights) = uninterrupted
    assert rerun.returncode == 0, rerun.stderr
    study, client, experiment_id = stores(folder, "resume")
    stopped = study.trials[stopped_number]
    assert stopped.state == TrialState.FAIL
    [resumed] = [t for t in study.trials if t.user_attrs.get("resumes") == stopped_number]
    assert resumed.state == TrialState.COMPLETE and resumed.params == reference.params
    run = client.get_run(resumed.user_attrs["mlflow_run_id"])
    assert run.data.tags[schema.TAG_RESUMED_FROM] == stopped.user_attrs["mlflow_run_id"]
    at = int(run.data.tags[schema.TAG_RESUMED_AT])
    assert 0 < at < 1200 and resumed.user_attrs["resumed"]["step"] == at
    assert f"Resumed at step {at}" in run.data.tags["mlflow.note.content"]
    assert f"(resumed at step {at})" in rerun.stdout
    assert f"trial {resumed.number} resumes trial {stopped_number} from its checkpoint at step {at}" in rerun.stdout
    got_metrics, got_weights = record_of(client, run.info.run_id)
    assert got_metrics == metrics  # every point of every curve, and the final metrics
    assert all(np.array_equal(a, b) for a, b in zip(got_weights, weights, strict=True))  # bitwise
    assert resumed.intermediate_values == reference.intermediate_values  # the pruner saw the whole curve
    assert resumed.user_attrs["train_images"] == reference.user_attrs["train_images"]
    assert_no_checkpoint_left(client, experiment_id)
    assert_nothing_left_running(study, client, experiment_id)
    return stopped


@pytest.mark.parametrize("stop, code", [(signal.SIGKILL, -9), (signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stopped_trial_resumes_from_its_checkpoint_bitwise(tmp_path, uninterrupted, procs, stop, code):
    """kill -9 leaves the checkpoint of the last curve point; Ctrl-C and SIGTERM write one where
    they stop. The next run of the same command resumes the trial first."""
    spec = write_spec(tmp_path, "resume", **RESUME)
    worker = procs.sweep(tmp_path, "--study", str(spec), "--trials", "1")
    wait_for(lambda: checkpointed(tmp_path, "resume", at_least=80), worker, what="the trial's second curve point")
    worker.send_signal(stop)
    assert worker.wait(timeout=120) == code, output(worker)
    err = finish(worker)
    study, client, _ = stores(tmp_path, "resume")
    stopped = study.trials[0]
    run = client.get_run(stopped.user_attrs["mlflow_run_id"])
    if stop == signal.SIGKILL:
        assert stopped.state == TrialState.RUNNING and run.info.status == "RUNNING"  # nothing ran in the worker
    else:
        assert "checkpointed and queued again" in err and "Traceback" not in err
        assert stopped.state == TrialState.FAIL and stopped.user_attrs["stopped"] and run.info.status == "KILLED"
        assert stopped.user_attrs["failure"] == f"stopped by {signal.Signals(stop).name}"
        assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.WAITING]  # queued again
    assert run.data.tags[schema.TAG_CHECKPOINT].startswith("checkpoint/step-")
    rerun = cli("--study", str(spec), "--trials", "1", cwd=tmp_path)
    assert_resumed_as_if_never_stopped(tmp_path, uninterrupted, 0, rerun)


def test_timeout_checkpoints_the_running_trial_and_the_next_run_resumes_it(tmp_path, uninterrupted):
    spec = write_spec(tmp_path, "resume", **RESUME)
    result = cli("--study", str(spec), "--trials", "3", "--timeout", "0.5", cwd=tmp_path)  # it stops the first trial
    assert result.returncode == 0, result.stderr
    study, client, _experiment_id = stores(tmp_path, "resume")
    stopped = study.trials[0]
    assert stopped.state == TrialState.FAIL and stopped.user_attrs["stopped"]
    assert "stopped by --timeout 0.5" in stopped.user_attrs["failure"]
    assert [t.state for t in study.trials] == [
        TrialState.FAIL,
        TrialState.WAITING,
    ]  # no trial starts after the deadline
    run = client.get_run(stopped.user_attrs["mlflow_run_id"])
    assert run.info.status == "KILLED" and run.data.tags["sweep.trial_state"] == "FAIL"
    step = checkpoint_step(run)
    assert stopped.user_attrs["train_images"] == step * 128  # what the stopped trial cost
    curve = client.get_metric_history(run.info.run_id, "val_accuracy")
    assert [m.step for m in curve] == list(range(40, 40 * len(curve) + 1, 40)) and 40 * len(curve) <= step
    assert "0/3 trials finished" in result.stdout
    assert "stopped by --timeout 0.5" in result.stdout and "it resumes from its checkpoint" in result.stdout
    assert "of the 0 s budget" in result.stderr and "0/3 trials" in result.stderr  # the bar counts toward the budget
    rerun = cli("--study", str(spec), "--trials", "1", cwd=tmp_path)
    assert_resumed_as_if_never_stopped(tmp_path, uninterrupted, 0, rerun)


def test_max_images_stops_the_running_trial_checkpointed_and_a_larger_budget_resumes_it(tmp_path, uninterrupted):
    """The study's budget in training images: trial 0 (1,200 steps of 128) is stopped once the
    study has spent 50,000, checkpointed and queued again; the same budget starts nothing; a
    larger one resumes it, ending as if it had never stopped."""
    spec = write_spec(tmp_path, "resume", **RESUME)
    result = cli("--study", str(spec), "--trials", "3", "--max-images", "50k", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    study, client, _ = stores(tmp_path, "resume")
    stopped = study.trials[0]
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.WAITING]  # no trial starts after the budget
    assert stopped.user_attrs["stopped"] and "stopped by --max-images 0.05 M" in stopped.user_attrs["failure"]
    step = checkpoint_step(client.get_run(stopped.user_attrs["mlflow_run_id"]))
    assert (
        stopped.user_attrs["train_images"] == step * 128 and 50_000 <= step * 128 < 50_000 + 2048
    )  # at most one call past
    assert (
        "study 'resume': 0/3 trials finished, 0.05 M training images spent; stopped by --max-images 0.05 M: run again "
        "with a larger budget to continue"
    ) in result.stdout
    assert "it resumes from its checkpoint" in result.stdout
    again = cli("--study", str(spec), "--trials", "3", "--max-images", "50k", cwd=tmp_path)  # the budget is spent
    assert again.returncode == 0 and "stopped by --max-images 0.05 M" in again.stdout
    assert len(stores(tmp_path, "resume")[0].trials) == 2
    rerun = cli("--study", str(spec), "--trials", "1", "--max-images", "1M", cwd=tmp_path)
    assert_resumed_as_if_never_stopped(tmp_path, uninterrupted, 0, rerun)


def damage(client, run, how: str) -> None:
    """Spoil the run's checkpoint: bytes that are no checkpoint, no file, or another configuration's."""
    path = (
        Path(client.get_run(run.info.run_id).info.artifact_uri.removeprefix("file://"))
        / run.data.tags[schema.TAG_CHECKPOINT]
    )
    if how == "corrupt":
        path.write_bytes(path.read_bytes()[:1000])
    elif how == "missing":
        path.unlink()
    else:
        checkpoint = Checkpoint.from_bytes(path.read_bytes())
        path.write_bytes(
            Checkpoint(
                checkpoint.config.__class__(**{**checkpoint.config.__dict__, "seed": 1}),
                *list(checkpoint.__dict__.values())[1:],
            ).to_bytes()
        )


@pytest.mark.parametrize(
    "how, why",
    [("corrupt", "unreadable"), ("missing", "cannot be read"), ("other", "of another configuration (seed differ)")],
)
def test_a_damaged_checkpoint_is_not_used_and_the_trial_trains_from_scratch(tmp_path, uninterrupted, how, why):
    spec = write_spec(tmp_path, "resume", **RESUME)
    assert cli("--study", str(spec), "--trials", "1", "--timeout", "0.5", cwd=tmp_path).returncode == 0
    study, client, _experiment_id = stores(tmp_path, "resume")
    damage(client, client.get_run(study.trials[0].user_attrs["mlflow_run_id"]), how)
    rerun = cli("--study", str(spec), "--trials", "1", cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    [line] = [line for line in rerun.stdout.splitlines() if "trains from scratch" in line]
    assert line.startswith("trial 1 trains from scratch: the checkpoint of trial 0 is of no use (") and why in line
    study, client, _ = stores(tmp_path, "resume")
    run = client.get_run(study.trials[1].user_attrs["mlflow_run_id"])
    assert schema.TAG_RESUMED_FROM not in run.data.tags
    _, _, (metrics, weights) = uninterrupted
    got_metrics, got_weights = record_of(client, run.info.run_id)
    assert got_metrics == metrics and all(np.array_equal(a, b) for a, b in zip(got_weights, weights, strict=True))


def test_a_baseline_enqueued_twice_runs_once(tmp_path):
    """Workers creating a study together can each enqueue the baseline (seen on PostgreSQL)."""
    spec = write_spec(tmp_path, "twice", steps=10, every=10)
    assert cli("--study", str(spec), "--trials", "1", cwd=tmp_path).returncode == 0
    study, _, _ = stores(tmp_path, "twice")
    study.enqueue_trial(study.trials[0].params, user_attrs={"baseline": True})  # the racing worker's copy
    result = cli("--study", str(spec), "--trials", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    study, _, _ = stores(tmp_path, "twice")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    assert "second copy of trial 0" in study.trials[1].user_attrs["failure"]
    assert study.trials[2].params != study.trials[0].params
    assert [line.split()[1] for line in result.stdout.splitlines() if line.startswith("trial ")] == ["2"]


def test_n_jobs_runs_worker_processes_that_find_the_stores_in_their_environment(tmp_path, procs):
    """Both workers train (the parent trains nothing itself), on the stores the parent was given
    by flag: the workers get them by environment, never on their command line."""
    spec = write_spec(tmp_path, "jobs", steps=200, extra='[pruner]\ntype = "none"\n')
    storage, tracking = f"sqlite:///{tmp_path}/given-optuna.db", f"sqlite:///{tmp_path}/given-mlflow.db"
    parent = procs.sweep(
        tmp_path,
        "--study",
        str(spec),
        "--trials",
        "6",
        "--n-jobs",
        "2",
        "--storage",
        storage,
        "--tracking-uri",
        tracking,
    )
    out = finish(parent, timeout=600)
    assert parent.returncode == 0, out[-3000:]
    assert not (tmp_path / "optuna.db").exists() and not (tmp_path / "mlflow.db").exists()
    study = optuna.load_study(study_name="jobs", storage=storage)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    pids = {t.user_attrs["worker"]["pid"] for t in complete}
    assert len(complete) == 6 and len(pids) == 2 and str(parent.pid) not in pids
    assert sorted(line.split()[1] for line in out.splitlines() if line.startswith("trial ")) == [
        "0",
        "1",
        "2",
        "3",
        "4",
        "5",
    ]
    client = MlflowClient(tracking)
    assert_one_finished_run_per_complete_trial(study, client, client.get_experiment_by_name("jobs").experiment_id)


def test_unreachable_storage_is_one_line_with_the_password_masked(tmp_path, postgres):
    closed = postgres.rsplit(":", 1)[0] + f":{free_port()}/optuna"  # bound and released: nothing listens there
    result = cli("--study", str(SMOKE), "--storage", closed, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("sweep.py")]
    assert "cannot open Optuna storage postgresql://postgres:***@127.0.0.1" in line
    assert PG_PASSWORD not in result.stderr + result.stdout
