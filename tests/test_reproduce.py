"""`sweep.py reproduce`: a logged trial trained again in another process gives the same result."""

import json
import subprocess
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from tests.conftest import cli_command, cli_env, run_cli, trial_runs

V1_RUN = Path(__file__).parent / "fixtures" / "run-v1"


def same_rows(stdout):
    return sum(line.rstrip().endswith(" same") for line in stdout.splitlines())


def store(folder):
    client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
    return client, trial_runs(client, client.get_experiment_by_name("smoke").experiment_id)


def reproductions(client, run):
    query = f"tags.`sweep.reproduces` = '{run.info.run_id}'"
    return client.search_runs([run.info.experiment_id], query, order_by=["attributes.start_time ASC"])


def test_retrained_trial_is_identical_and_recorded(swept):
    folder, _ = swept
    client, runs = store(folder)
    original = runs[1]
    result = run_cli("reproduce", original.info.run_id, cwd=folder)
    assert result.returncode == 0, result.stderr
    assert same_rows(result.stdout) == 3 and "weights: bitwise identical" in result.stdout
    (record,) = reproductions(client, original)
    assert record.info.status == "FINISHED" and record.data.tags["sweep.reproduction.result"] == "agrees"
    assert record.data.tags["mlflow.parentRunId"] == original.info.run_id
    assert record.data.metrics["weights_max_abs_difference"] == 0.0
    for key in ("val_accuracy", "test_accuracy", "test_accuracy_first128"):
        assert record.data.metrics[key] == original.data.metrics[key]
    assert client.get_run(original.info.run_id).data.tags["sweep.reproduced"].startswith("agrees (train")


def test_evaluate_only_by_study_and_trial(swept):
    folder, _ = swept
    client, runs = store(folder)
    result = run_cli("reproduce", "--study-name", "smoke", "--trial", "0", "--evaluate-only", cwd=folder)
    assert result.returncode == 0, result.stderr
    assert same_rows(result.stdout) == 3
    (record,) = reproductions(client, runs[0])
    assert record.data.tags["sweep.reproduction.mode"] == "evaluate-only"
    assert record.data.metrics["test_accuracy_correct"] == runs[0].data.metrics["test_accuracy_correct"]


def test_tampered_result_is_not_reproduced(swept):
    folder, _ = swept
    client, runs = store(folder)
    run = runs[2]
    correct = run.data.metrics["test_accuracy_correct"]
    step = int(run.data.params["train_steps"])
    client.log_batch(run.info.run_id, metrics=[Metric("test_accuracy_correct", correct + 1, int(time.time() * 1000) + 1000, step)])
    result = run_cli("reproduce", run.info.run_id, "--evaluate-only", cwd=folder)
    assert result.returncode == 1, result.stderr
    assert "DIFFERENT" in result.stdout and "NOT reproduced" in result.stdout
    (record,) = reproductions(client, run)
    assert record.data.tags["sweep.reproduction.result"] == "differs"


def test_unknown_run_id_is_exit_2(swept):
    folder, _ = swept
    result = run_cli("reproduce", "0123456789abcdef", cwd=folder)
    assert result.returncode == 2 and "no MLflow run with id 0123456789abcdef" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_run_logged_before_a_config_field_existed_rebuilds_with_its_default(tmp_path):
    from dataclasses import asdict

    from sweep.config import TrainConfig
    from sweep.records import config_of

    config = TrainConfig(num_units=64, learning_rate=0.003, val_limit=300)
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    run = client.create_run(client.create_experiment("old"))
    for key, value in asdict(config).items():
        if key != "curve_val_limit":  # added after such runs were logged
            client.log_param(run.info.run_id, key, str(value))
    assert config_of(client.get_run(run.info.run_id)) == config


@pytest.fixture
def v1_run(tmp_path):
    """A trial run as logged before the stock Keras LSTM (tests/fixtures/run-v1, recorded with
    commit c3bf208): no lstm_backend param, a BasicLSTM layer in model/model.keras."""
    logged = json.loads((V1_RUN / "run.json").read_text())
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    run_id = client.create_run(client.create_experiment("smoke"), run_name=logged["run_name"], tags=logged["tags"]).info.run_id
    now = int(time.time() * 1000)
    metrics = [Metric(k, v, now, step) for k, history in logged["metrics"].items() for step, v in history]
    client.log_batch(run_id, metrics=metrics, params=[Param(k, v) for k, v in logged["params"].items()])
    client.log_artifact(run_id, str(V1_RUN / "model.keras"), artifact_path="model")
    client.log_batch(run_id, tags=[RunTag("sweep.trial_state", "COMPLETE")])
    client.set_terminated(run_id, "FINISHED")
    return tmp_path, client, client.get_run(run_id)


@pytest.mark.parametrize("mode", [[], ["--evaluate-only"]])
def test_a_run_logged_before_the_stock_lstm_still_reproduces(v1_run, mode):
    """Bitwise on the CPU the fixture was recorded on; on another CPU the op's float rounding
    differs (it is built with -march=native), so the weights may differ in their last bits: the
    correct counts must still agree, and reproduce must say that the CPU changed."""
    from sweep.lstm_op import build_info

    folder, client, run = v1_run
    logged_cpu, here = run.data.params["lstm_op.cpu"], build_info()["lstm_op.cpu"]
    result = run_cli("reproduce", run.info.run_id, *mode, cwd=folder)
    assert result.returncode == 0, result.stderr
    assert same_rows(result.stdout) == 3
    if here == logged_cpu:
        assert "lstm_op.cpu" not in result.stderr
        if not mode:
            assert "weights: bitwise identical" in result.stdout
    else:
        assert f"environment differs: lstm_op.cpu {logged_cpu} logged, {here} here" in result.stderr
        if not mode:
            assert "weights: bitwise identical" in result.stdout or "weights: differ from the logged model by up to" in result.stdout
    (record,) = reproductions(client, run)
    assert record.data.params["lstm_backend"] == "v1" and record.data.tags["sweep.reproduction.result"] == "agrees"


def test_a_native_run_reproduces_on_keras_where_the_op_cannot_be_built(swept, tmp_path):
    """No compiler: the recorded backend cannot run, so reproduce says so and uses keras (the
    same model; only the rounding may differ, so the exit code may be 0 or 1)."""
    folder, _ = swept
    client, runs = store(folder)
    env = {**cli_env(), "CXX": str(tmp_path / "no-such-compiler"), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    result = subprocess.run(cli_command("reproduce", runs[0].info.run_id), cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode in (0, 1), result.stderr
    assert "trained with the native backend, which is not available here" in result.stderr and "using keras" in result.stderr
    (record,) = [r for r in reproductions(client, runs[0]) if r.data.params["lstm_backend"] == "keras"]
    client.delete_run(record.info.run_id)  # the other tests count runs[0]'s reproductions
    assert record.data.params["lstm_chains"] == runs[0].data.params["lstm_chains"]


def test_reproduce_finds_the_data_where_the_run_read_it_else_in_sweep_data_dir(swept):
    folder, _ = swept
    client, runs = store(folder)
    run = runs[0]
    earlier = {r.info.run_id for r in reproductions(client, run)}
    without = {k: v for k, v in cli_env().items() if k != "SWEEP_DATA_DIR"}
    try:
        found = subprocess.run(cli_command("reproduce", run.info.run_id, "--evaluate-only"), cwd=folder, env=without,
                               capture_output=True, text=True, timeout=600)
        assert found.returncode == 0 and same_rows(found.stdout) == 3, found.stderr  # from the folder the run recorded
        client.set_tag(run.info.run_id, "sweep.data_dir", str(folder / "moved-away"))
        moved = run_cli("reproduce", run.info.run_id, "--evaluate-only", cwd=folder)  # SWEEP_DATA_DIR is set
        assert moved.returncode == 0 and same_rows(moved.stdout) == 3, moved.stderr
        assert "the run's MNIST folder is no use here" in moved.stderr and "moved-away" in moved.stderr
    finally:
        client.set_tag(run.info.run_id, "sweep.data_dir", run.data.tags["sweep.data_dir"])
        for record in reproductions(client, run):  # the other tests count runs[0]'s reproductions
            if record.info.run_id not in earlier:
                client.delete_run(record.info.run_id)


def test_reproduce_by_trial_number_defaults_to_the_stores_only_study(swept):
    folder, _ = swept
    result = run_cli("reproduce", "--trial", "99", cwd=folder)  # no --study-name: the store holds only 'smoke'
    assert result.returncode == 2 and "study 'smoke' has no run for trial 99" in result.stderr, result.stderr
