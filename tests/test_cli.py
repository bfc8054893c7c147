"""The whole slice through the real command line: Optuna storage, MLflow store, resume, errors."""

import os
import sqlite3
import subprocess
import sys

import optuna
import pytest
from mlflow import MlflowClient

from tests.conftest import DATA_DIR, SMOKE, cli_command, cli_env, run_cli, trial_runs


def test_sweep_reaches_target_with_baseline_first(swept):
    folder, result = swept
    study = optuna.load_study(study_name="smoke", storage=f"sqlite:///{folder}/optuna.db")
    trials = study.get_trials()
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 3
    assert trials[0].params == {"num_units": 16, "learning_rate": 0.001, "batch_size": 128, "forget_bias": 1.0}
    assert trials[1].params != trials[0].params
    assert "trial    2" in result.stdout and "3/3 trials finished" in result.stdout
    # where the time went: the sum of the trials' optimizer-step seconds against the wall time
    training = sum(t.user_attrs["train_seconds"] for t in trials) / 60
    assert f"training {training:.1f} min = " in result.stdout and "everything else" in result.stdout


def test_mlflow_has_one_parent_and_a_nested_run_per_trial(swept):
    folder, _ = swept
    client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
    experiment = client.get_experiment_by_name("smoke")
    parents = client.search_runs([experiment.experiment_id], "tags.`sweep.role` = 'study'")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    runs = trial_runs(client, experiment.experiment_id)
    study = optuna.load_study(study_name="smoke", storage=f"sqlite:///{folder}/optuna.db")
    assert [r.info.run_name for r in runs] == ["trial-0000", "trial-0001", "trial-0002"]
    for run, trial in zip(runs, study.get_trials()):
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert trial.user_attrs["mlflow_run_id"] == run.info.run_id
        assert run.data.metrics["val_accuracy"] == pytest.approx(trial.value)  # Optuna optimises validation
        assert int(run.data.params["num_units"]) == trial.params["num_units"]
        assert run.data.params["mnist_md5.t10k-images-idx3-ubyte"] == "2646ac647ad5339dbf082846283269ea"
        assert run.data.params["version.tensorflow"] and run.data.params["train_steps"] == "60"
        curve = client.get_metric_history(run.info.run_id, "val_accuracy")
        assert [m.step for m in curve] == [20, 40, 60]
        for key in ("test_accuracy", "test_accuracy_first128", "train_loss", "train_seconds", "samples_per_second"):
            assert key in run.data.metrics
        assert run.data.metrics["test_accuracy_total"] == 500 and run.data.metrics["test_accuracy_first128_total"] == 128
        low, high = run.data.metrics["test_accuracy_ci95_low"], run.data.metrics["test_accuracy_ci95_high"]
        assert low < run.data.metrics["test_accuracy"] < high


LOAD_WITHOUT_SWEEP = """
import gzip, sys, keras, mlflow, numpy as np
run_id, tracking_uri, data_dir = sys.argv[1:]
mlflow.set_tracking_uri(tracking_uri)
def idx(name, offset):
    return np.frombuffer(gzip.open(f"{data_dir}/{name}.gz").read(), np.uint8, offset=offset)
x = idx("t10k-images-idx3-ubyte", 16).reshape(-1, 28, 28)[:500].astype(np.float32) * np.float32(1 / 255)
y = idx("t10k-labels-idx1-ubyte", 8)[:500]
folder = mlflow.artifacts.download_artifacts(f"runs:/{run_id}/model")
plain = keras.models.load_model(f"{folder}/data/model.keras")
pyfunc = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
assert pyfunc.metadata.get_input_schema().inputs[0].shape == (-1, 28, 28)
assert not [m for m in sys.modules if m == "sweep" or m.startswith("sweep.")]
print("correct:", int((plain.predict(x, verbose=0).argmax(1) == y).sum()), int((np.asarray(pyfunc.predict(x)).argmax(1) == y).sum()))
"""


def test_logged_model_loads_without_this_project_and_reproduces_logged_test_accuracy(swept):
    """In a Python that never imports sweep: plain Keras and mlflow.pyfunc load the trial's
    MLflow model (no compiler, no custom layer), and its predictions give the logged count."""
    folder, _ = swept
    client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
    run = trial_runs(client, client.get_experiment_by_name("smoke").experiment_id)[1]
    result = subprocess.run([sys.executable, "-c", LOAD_WITHOUT_SWEEP, run.info.run_id, f"sqlite:///{folder}/mlflow.db", str(DATA_DIR)],
                            cwd=folder, env={**os.environ, "CXX": "/nonexistent"}, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    correct = int(run.data.metrics["test_accuracy_correct"])
    (counts,) = [line.split()[1:] for line in result.stdout.splitlines() if line.startswith("correct:")]  # pyfunc prints a progress bar
    assert counts == [str(correct), str(correct)]
    (model,) = client.search_logged_models([run.info.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'")
    assert model.name == "model" and {m.key for m in model.metrics} >= {"val_accuracy", "test_accuracy"}


def test_trials_is_a_target_not_a_count(tmp_path):
    args = ("--study", str(SMOKE), "--study-name", "resume")
    assert run_cli(*args, "--trials", "2", cwd=tmp_path).returncode == 0
    again = run_cli(*args, "--trials", "2", cwd=tmp_path)
    assert again.returncode == 0 and not [line for line in again.stdout.splitlines() if line.startswith("trial ")]
    more = run_cli(*args, "--trials", "3", cwd=tmp_path)
    assert more.returncode == 0, more.stderr
    study = optuna.load_study(study_name="resume", storage=f"sqlite:///{tmp_path}/optuna.db")
    assert [t.number for t in study.get_trials()] == [0, 1, 2]
    assert study.get_trials()[2].params != study.get_trials()[1].params  # no replayed proposals
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.get_experiment_by_name("resume")
    assert len(client.search_runs([experiment.experiment_id], "tags.`sweep.role` = 'study'")) == 1
    assert len(trial_runs(client, experiment.experiment_id)) == 3


@pytest.mark.parametrize(
    "args, message",
    [
        (["--trials", "0"], "--trials: 0 must be at least 1"),
        (["--trials", "many"], "'many' is not a whole number"),
        (["--timeout", "-5"], "--timeout: -5 must be a positive"),
        (["--study", "missing.toml"], "study file missing.toml: cannot read it"),
        (["--data-dir", "/nonexistent"], "MNIST directory /nonexistent does not exist"),
        (["--storage", "notaurl"], "cannot open Optuna storage notaurl"),
        (["--tracking-uri", "postgresql://u:hunter2@127.0.0.1:9/x"], "cannot open MLflow tracking store postgresql://u:***@127.0.0.1:9/x"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, message):
    result = run_cli("--study", str(SMOKE), *args, cwd=tmp_path)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("sweep.py")]
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr and "hunter2" not in result.stderr + result.stdout
    for db in tmp_path.glob("*.db"):
        tables = sqlite3.connect(db).execute("select name from sqlite_master where name in ('runs', 'trials')")
        for (table,) in tables:
            assert sqlite3.connect(db).execute(f"select count(*) from {table}").fetchone()[0] == 0


def no_compiler(tmp_path) -> dict[str, str]:
    """No C++ compiler and an empty cache: the native op cannot be built."""
    return {**cli_env(), "CXX": str(tmp_path / "no-such-compiler"), "XDG_CACHE_HOME": str(tmp_path / "cache")}


def test_without_a_compiler_the_sweep_trains_on_the_keras_backend(tmp_path):
    result = subprocess.run(cli_command("--study", str(SMOKE), "--trials", "1"), cwd=tmp_path, env=no_compiler(tmp_path),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    (why,) = [line for line in result.stderr.splitlines() if line.startswith("lstm backend:")]
    assert "keras" in why and "cannot build the LSTM op" in why
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    (run,) = trial_runs(client, client.get_experiment_by_name("smoke").experiment_id)
    assert run.info.status == "FINISHED" and run.data.params["lstm_backend"] == "keras"
    assert "lstm_op.compiler" not in run.data.params


def test_compiled_backend_is_recorded(swept):
    folder, _ = swept
    client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
    for run in trial_runs(client, client.get_experiment_by_name("smoke").experiment_id):
        assert run.data.params["lstm_backend"] == "native" and run.data.params["lstm_op.compiler"]


def test_native_backend_asked_for_without_a_compiler_is_one_line_exit_2_and_writes_nothing(tmp_path):
    result = subprocess.run(cli_command("--study", str(SMOKE), "--trials", "1", "--lstm-backend", "native"), cwd=tmp_path,
                            env=no_compiler(tmp_path), capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("sweep.py")]
    assert len(lines) == 1 and "cannot build the LSTM op" in lines[0] and "install a C++ compiler" in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.glob("*.db"))
