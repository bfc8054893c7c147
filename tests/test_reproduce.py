"""`sweep.py reproduce`: a logged trial trained again gives the same result, bitwise."""

import json
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from tests.conftest import cli, cli_env, run_cli, trial_runs

pytestmark = pytest.mark.slow

V1_RUN = Path(__file__).parent / "fixtures" / "run-v1"


def same_rows(stdout):
    return sum(line.rstrip().endswith(" same") for line in stdout.splitlines())


def store(folder):
    client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
    return client, trial_runs(client, client.get_experiment_by_name("smoke").experiment_id)


def reproductions(client, run):
    query = f"tags.`sweep.reproduces` = '{run.info.run_id}'"
    return client.search_runs([run.info.experiment_id], query, order_by=["attributes.start_time ASC"])


def test_retrained_trial_is_identical_and_recorded(copy_of_swept):
    folder = copy_of_swept
    client, runs = store(folder)
    original = runs[1]
    result = cli("reproduce", original.info.run_id, cwd=folder)
    assert result.returncode == 0, result.stderr
    assert same_rows(result.stdout) == 3 and "weights: bitwise identical" in result.stdout
    (record,) = reproductions(client, original)
    assert record.info.status == "FINISHED" and record.data.tags["sweep.reproduction.result"] == "agrees"
    assert record.data.tags["mlflow.parentRunId"] == original.info.run_id
    assert record.data.metrics["weights_max_abs_difference"] == 0.0
    for key in ("val_accuracy", "test_accuracy", "test_accuracy_first128"):
        assert record.data.metrics[key] == original.data.metrics[key]
    assert client.get_run(original.info.run_id).data.tags["sweep.reproduced"].startswith("agrees (train")


def test_evaluate_only_by_study_and_trial(copy_of_swept):
    folder = copy_of_swept
    client, runs = store(folder)
    result = cli("reproduce", "--study-name", "smoke", "--trial", "0", "--evaluate-only", cwd=folder)
    assert result.returncode == 0, result.stderr
    assert same_rows(result.stdout) == 3
    (record,) = reproductions(client, runs[0])
    assert record.data.tags["sweep.reproduction.mode"] == "evaluate-only"
    assert record.data.metrics["test_accuracy_correct"] == runs[0].data.metrics["test_accuracy_correct"]


def test_tampered_result_is_not_reproduced(copy_of_swept):
    folder = copy_of_swept
    client, runs = store(folder)
    run = runs[2]
    correct = run.data.metrics["test_accuracy_correct"]
    step = int(run.data.params["train_steps"])
    client.log_batch(
        run.info.run_id, metrics=[Metric("test_accuracy_correct", correct + 1, int(time.time() * 1000) + 1000, step)]
    )
    result = cli("reproduce", run.info.run_id, "--evaluate-only", cwd=folder)
    assert result.returncode == 1, result.stderr
    assert "DIFFERENT" in result.stdout and "NOT reproduced" in result.stdout
    (record,) = reproductions(client, run)
    assert record.data.tags["sweep.reproduction.result"] == "differs"


def test_unknown_run_id_is_exit_2(swept):
    folder, _ = swept
    result = cli("reproduce", "0123456789abcdef", cwd=folder)
    assert result.returncode == 2 and "no MLflow run with id 0123456789abcdef" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_run_logged_before_a_config_field_existed_rebuilds_with_its_default(tmp_path):
    from dataclasses import asdict

    from sweep.tracking.queries import config_of
    from sweep.training.config import TrainConfig

    config = TrainConfig(num_units=64, learning_rate=0.003, val_limit=300)
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    run = client.create_run(client.create_experiment("old"))
    for key, value in asdict(config).items():
        if key != "curve_val_limit":  # added after such runs were logged
            client.log_param(run.info.run_id, key, str(value))
    assert config_of(client.get_run(run.info.run_id)) == config


def logged_run(folder, name="v1", params=None, tags=None):
    """A trial run as logged before the stock Keras LSTM (tests/fixtures/run-v1, recorded with
    commit c3bf208 on an Intel Xeon): no lstm_backend param, a BasicLSTM layer in
    model/model.keras; `params` and `tags` changed as given."""
    logged = json.loads((V1_RUN / "run.json").read_text())
    client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
    experiment = client.get_experiment_by_name("smoke") or client.get_experiment(client.create_experiment("smoke"))
    run_id = client.create_run(
        experiment.experiment_id, run_name=logged["run_name"], tags={**logged["tags"], **(tags or {})}
    ).info.run_id
    now = int(time.time() * 1000)
    metrics = [Metric(k, v, now, step) for k, history in logged["metrics"].items() for step, v in history]
    params = {**logged["params"], **(params or {})}
    client.log_batch(run_id, metrics=metrics, params=[Param(k, v) for k, v in params.items()])
    client.log_artifact(run_id, str(V1_RUN / "model.keras"), artifact_path="model")
    client.log_batch(run_id, tags=[RunTag("sweep.trial_state", "COMPLETE")])
    client.set_terminated(run_id, "FINISHED")
    return client, client.get_run(run_id)


@pytest.mark.parametrize("mode", [[], ["--evaluate-only"]])
def test_a_run_logged_before_the_stock_lstm_still_reproduces(tmp_path, mode):
    """Bitwise on the CPU the fixture was recorded on; on another CPU the op's float rounding
    may differ (it is built with -march=native), so the weights may differ in their last bits:
    the correct counts must still agree, and reproduce must say that the CPU changed."""
    from sweep.training.lstm_op import build_info

    client, run = logged_run(tmp_path)
    logged_cpu, here = run.data.params["lstm_op.cpu"], build_info()["lstm_op.cpu"]
    result = cli("reproduce", run.info.run_id, *mode, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert same_rows(result.stdout) == 3
    if here == logged_cpu:
        assert "lstm_op.cpu" not in result.stderr
        if not mode:
            assert "weights: bitwise identical" in result.stdout
    else:
        assert f"environment differs: lstm_op.cpu {logged_cpu} logged, {here} here" in result.stderr
        if not mode:
            assert (
                "weights: bitwise identical" in result.stdout
                or "weights: differ from the logged model by up to" in result.stdout
            )
    (record,) = reproductions(client, run)
    assert record.data.params["lstm_backend"] == "v1" and record.data.tags["sweep.reproduction.result"] == "agrees"


def test_reproduce_warns_of_every_difference_in_the_environment(tmp_path):
    _client, run = logged_run(
        tmp_path,
        params={
            "version.tensorflow": "2.20.0",
            "mnist_md5.t10k-images-idx3-ubyte": "0" * 32,
            "lstm_op.compiler": "c++ 99.1",
            "lstm_op.cpu": "Another CPU",
        },
        tags={"sweep.git_commit": "0123456789abcdef0123"},
    )
    result = cli("reproduce", run.info.run_id, "--evaluate-only", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    import tensorflow

    from sweep.training.lstm_op import build_info

    warned = [
        line.removeprefix("warning: environment differs: ")
        for line in result.stderr.splitlines()
        if line.startswith("warning: environment")
    ]
    assert f"version.tensorflow 2.20.0 logged, {tensorflow.__version__} here" in warned
    assert f"mnist_md5.t10k-images-idx3-ubyte {'0' * 32} logged, 2646ac647ad5339dbf082846283269ea here" in warned
    assert f"lstm_op.compiler c++ 99.1 logged, {build_info()['lstm_op.compiler']} here" in warned
    assert f"lstm_op.cpu Another CPU logged, {build_info()['lstm_op.cpu']} here" in warned
    assert [w for w in warned if w.startswith("tool commit 0123456789ab logged, ")]
    assert "the environment differed: " in result.stdout


def test_a_native_run_reproduces_on_keras_where_the_op_cannot_be_built(copy_of_swept, tmp_path):
    """No compiler: the recorded backend cannot run, so reproduce says so and uses keras: the
    same model, other float rounding, so close but not always equal counts, and the exit code
    says which."""
    folder = copy_of_swept
    client, runs = store(folder)
    env = cli_env(CXX=str(tmp_path / "no-such-compiler"), XDG_CACHE_HOME=str(tmp_path / "cache"))
    result = run_cli("reproduce", runs[0].info.run_id, cwd=folder, env=env)
    assert (
        "trained with the native backend, which is not available here" in result.stderr
        and "using keras" in result.stderr
    )
    (record,) = reproductions(client, runs[0])
    assert (
        record.data.params["lstm_backend"] == "keras"
        and record.data.params["lstm_chains"] == runs[0].data.params["lstm_chains"]
    )
    agrees = all(
        record.data.metrics[f"{k}_correct"] == runs[0].data.metrics[f"{k}_correct"]
        for k in ("val_accuracy", "test_accuracy", "test_accuracy_first128")
    )
    assert result.returncode == (0 if agrees else 1), result.stdout
    assert record.data.tags["sweep.reproduction.result"] == ("agrees" if agrees else "differs")
    for k in ("val_accuracy", "test_accuracy", "test_accuracy_first128"):
        assert abs(record.data.metrics[k] - runs[0].data.metrics[k]) <= 0.03, k  # rounding, not another model
    assert 0 <= record.data.metrics["weights_max_abs_difference"] < 0.05


def test_reproduce_finds_the_data_where_the_run_read_it_else_in_sweep_data_dir(copy_of_swept):
    folder = copy_of_swept
    client, runs = store(folder)
    run = runs[0]
    without = {k: v for k, v in cli_env().items() if k != "SWEEP_DATA_DIR"}
    found = cli("reproduce", run.info.run_id, "--evaluate-only", cwd=folder, env=without)
    assert found.returncode == 0 and same_rows(found.stdout) == 3, found.stderr  # from the folder the run recorded
    client.set_tag(run.info.run_id, "sweep.data_dir", str(folder / "moved-away"))
    moved = cli("reproduce", run.info.run_id, "--evaluate-only", cwd=folder)  # SWEEP_DATA_DIR is set
    assert moved.returncode == 0 and same_rows(moved.stdout) == 3, moved.stderr
    assert "the run's MNIST folder is no use here" in moved.stderr and "moved-away" in moved.stderr


def test_reproduce_by_trial_number_defaults_to_the_stores_only_study(swept):
    folder, _ = swept
    result = cli("reproduce", "--trial", "99", cwd=folder)  # no --study-name: the store holds only 'smoke'
    assert result.returncode == 2 and "study 'smoke' has no run for trial 99" in result.stderr, result.stderr


def test_reproduce_of_a_seed_rebuilds_its_own_validation_fold(copy_of_swept, mnist):
    """Seed s of baseline validates on fold s mod 12; its run alone says so (param val_fold), and
    reproduce trains and validates it on that fold again."""
    from sweep.tracking.queries import predictions_of

    folder = copy_of_swept
    assert cli("baseline", "--seeds", "4", cwd=folder).returncode == 0
    client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
    experiment = client.get_experiment_by_name("smoke").experiment_id
    seeds = {
        int(r.data.params["seed"]): r for r in client.search_runs([experiment], "tags.`sweep.role` = 'baseline-seed'")
    }
    assert {s: r.data.params["val_fold"] for s, r in seeds.items()} == {0: "0", 1: "1", 2: "2", 3: "3"}
    assert (predictions_of(client, seeds[3].info.run_id)["val_labels"] == mnist.fold(3).val.y[:500]).all()
    result = cli("reproduce", seeds[3].info.run_id, cwd=folder)
    assert result.returncode == 0 and "reproduced: the same correct counts on every set" in result.stdout, result.stderr
    [copy] = client.search_runs([experiment], f"tags.`sweep.reproduces` = '{seeds[3].info.run_id}'")
    assert (
        copy.data.params["val_fold"] == "3"
        and copy.data.metrics["val_accuracy_correct"] == seeds[3].data.metrics["val_accuracy_correct"]
    )
