"""`sweep.py reproduce`: a logged trial trained again in another process gives the same result."""

import time

from mlflow import MlflowClient
from mlflow.entities import Metric

from tests.conftest import run_cli, trial_runs


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

    from sweep.reproduce import config_from_run
    from sweep.train import TrainConfig

    config = TrainConfig(num_units=64, learning_rate=0.003, val_limit=300)
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    run = client.create_run(client.create_experiment("old"))
    for key, value in asdict(config).items():
        if key != "curve_val_limit":  # added after such runs were logged
            client.log_param(run.info.run_id, key, str(value))
    assert config_from_run(client.get_run(run.info.run_id)) == config
