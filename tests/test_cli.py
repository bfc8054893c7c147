"""The whole slice through the command line: Optuna storage, MLflow store, resume, errors."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
from mlflow import MlflowClient
from statsmodels.stats.proportion import proportion_confint

from tests.conftest import DATA_DIR, SMOKE, cli, cli_command, cli_env, run_cli, trial_runs

TINY = """name = "{name}"
[fixed]
train_steps = {steps}
eval_every = 10
train_limit = 1000
val_limit = 200
test_limit = 200
{extra}
[baseline]
num_units = 16
[search.num_units]
type = "int"
low = 8
high = 24
[search.learning_rate]
type = "float"
low = 1e-3
high = 2e-2
log = true
"""


def tiny(folder: Path, name: str = "tiny", steps: int = 20, extra: str = "") -> Path:
    """A study that trains in a second: small slices, few steps, small LSTMs."""
    path = folder / f"{name}.toml"
    path.write_text(TINY.format(name=name, steps=steps, extra=extra))
    return path


def test_the_sweep_shows_progress_run_ids_and_how_to_browse(swept):
    folder, result = swept
    client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
    experiment = client.get_experiment_by_name("smoke")
    for run in trial_runs(client, experiment.experiment_id):
        assert f"run {run.info.run_id}" in result.stdout  # what `reproduce` takes
    assert (
        "  trial 2: " in result.stderr and "/60 [" in result.stderr and "val " in result.stderr
    )  # steps of the running trial
    browse = [line for line in result.stdout.splitlines() if line.startswith("browse: ")]
    assert browse == [
        f"browse: mlflow ui --backend-store-uri sqlite:///mlflow.db   then open "
        f"http://127.0.0.1:5000/#/experiments/{experiment.experiment_id}/runs?workflowType=machine_learning"
    ]


def test_the_validation_best_model_is_registered_as_the_studys_best(swept):
    folder, result = swept
    import mlflow

    client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
    study = optuna.load_study(study_name="smoke", storage=f"sqlite:///{folder}/optuna.db")
    version = client.get_model_version_by_alias("smoke", "best")
    assert version.run_id == study.best_trial.user_attrs["mlflow_run_id"]
    assert (
        f"registered: models:/smoke@best (version {version.version}, trial {study.best_trial.number})" in result.stdout
    )
    mlflow.set_tracking_uri(f"sqlite:///{folder}/mlflow.db")
    model = mlflow.pyfunc.load_model("models:/smoke@best")
    assert np.asarray(model.predict(np.zeros((2, 28, 28), np.float32))).shape == (2, 10)


def test_sweep_reaches_target_with_baseline_first(swept):
    folder, result = swept
    study = optuna.load_study(study_name="smoke", storage=f"sqlite:///{folder}/optuna.db")
    trials = study.get_trials()
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 3
    assert trials[0].params == {"num_units": 16, "learning_rate": 0.001, "batch_size": 128, "forget_bias": 1.0}
    assert trials[1].params != trials[0].params
    assert "trial    2" in result.stdout and "3/3 trials finished" in result.stdout
    # where the time went: the trials' training images and optimizer-step seconds, on this CPU
    images = sum(t.user_attrs["train_images"] for t in trials)
    assert images == sum(60 * t.params["batch_size"] for t in trials)
    minutes = sum(t.user_attrs["train_seconds"] for t in trials) / 60
    from sweep.stats import images as shown
    from sweep.training.config import cpu_model

    assert f" min wall on {cpu_model()}; training {shown(images)} images in {minutes:.1f} min = " in result.stdout


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
        assert run.data.metrics["val_accuracy"] == trial.value  # Optuna optimises validation
        assert int(run.data.params["num_units"]) == trial.params["num_units"]
        assert run.data.params["mnist_md5.t10k-images-idx3-ubyte"] == "2646ac647ad5339dbf082846283269ea"
        assert (
            run.data.params["version.tensorflow"] and run.data.params["train_steps"] == "60" and run.data.params["cpu"]
        )
        curve = client.get_metric_history(run.info.run_id, "val_accuracy")
        assert [m.step for m in curve] == [20, 40, 60]
        images = client.get_metric_history(run.info.run_id, "train_images")
        assert [(m.step, m.value) for m in images] == [(s, s * trial.params["batch_size"]) for s in (20, 40, 60)]
        for key in ("test_accuracy", "test_accuracy_first128", "train_loss", "train_seconds", "samples_per_second"):
            assert key in run.data.metrics
        m = run.data.metrics
        assert m["test_accuracy_total"] == 500 and m["test_accuracy_first128_total"] == 128
        assert m["test_accuracy"] == m["test_accuracy_correct"] / 500
        expected = proportion_confint(m["test_accuracy_correct"], 500, alpha=0.05, method="wilson")
        assert (m["test_accuracy_ci95_low"], m["test_accuracy_ci95_high"]) == pytest.approx(expected, abs=1e-12)
        assert "sweep.checkpoint" not in run.data.tags and not client.list_artifacts(run.info.run_id, "checkpoint")


def test_the_parent_run_follows_the_best_trial_so_far(swept):
    folder, _ = swept
    client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
    study = optuna.load_study(study_name="smoke", storage=f"sqlite:///{folder}/optuna.db")
    [parent] = client.search_runs([client.get_experiment_by_name("smoke").experiment_id], "tags.`sweep.role` = 'study'")
    best, history = study.best_trial, client.get_metric_history(parent.info.run_id, "val_accuracy")
    leaders = [t.number for t in study.trials if t.value == max(u.value for u in study.trials[: t.number + 1])]
    assert [m.step for m in history] == sorted(set(leaders))  # one point per trial that took the lead
    assert history[-1].value == best.value and parent.data.tags["best.trial_number"] == str(best.number)
    assert parent.data.tags["best.run_id"] == best.user_attrs["mlflow_run_id"]
    assert parent.data.tags["best.num_units"] == str(best.params["num_units"])


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
print("correct:", int((plain.predict(x, verbose=0).argmax(1) == y).sum()),
      int((np.asarray(pyfunc.predict(x)).argmax(1) == y).sum()))
"""


def test_logged_model_loads_without_this_project_and_reproduces_logged_test_accuracy(swept):
    """In a Python that never imports sweep: plain Keras and mlflow.pyfunc load the trial's
    MLflow model (no compiler, no custom layer), and its predictions give the logged count."""
    folder, _ = swept
    client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
    run = trial_runs(client, client.get_experiment_by_name("smoke").experiment_id)[1]
    result = subprocess.run(
        [sys.executable, "-c", LOAD_WITHOUT_SWEEP, run.info.run_id, f"sqlite:///{folder}/mlflow.db", str(DATA_DIR)],
        cwd=folder,
        env={**cli_env(), "CXX": "/nonexistent"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    correct = int(run.data.metrics["test_accuracy_correct"])
    (counts,) = [
        line.split()[1:] for line in result.stdout.splitlines() if line.startswith("correct:")
    ]  # pyfunc prints a progress bar
    assert counts == [str(correct), str(correct)]
    (model,) = client.search_logged_models(
        [run.info.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'"
    )
    assert model.name == "model" and {m.key for m in model.metrics} >= {"val_accuracy", "test_accuracy"}


@pytest.mark.slow
def test_trials_is_a_target_not_a_count(tmp_path):
    args = ("--study", str(tiny(tmp_path)), "--study-name", "resume")
    assert cli(*args, "--trials", "2", cwd=tmp_path).returncode == 0
    again = cli(*args, "--trials", "2", cwd=tmp_path)
    assert again.returncode == 0 and not [line for line in again.stdout.splitlines() if line.startswith("trial ")]
    more = cli(*args, "--trials", "3", cwd=tmp_path)
    assert more.returncode == 0, more.stderr
    study = optuna.load_study(study_name="resume", storage=f"sqlite:///{tmp_path}/optuna.db")
    assert [t.number for t in study.get_trials()] == [0, 1, 2]
    assert study.get_trials()[2].params != study.get_trials()[1].params  # no replayed proposals
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.get_experiment_by_name("resume")
    assert len(client.search_runs([experiment.experiment_id], "tags.`sweep.role` = 'study'")) == 1
    assert len(trial_runs(client, experiment.experiment_id)) == 3


@pytest.mark.slow
def test_enqueued_trials_run_right_after_the_baseline_and_best_moves_to_a_later_winner(tmp_path):
    extra = "[[enqueue]]\nnum_units = 24\nlearning_rate = 0.02\n"
    spec = tiny(tmp_path, steps=30, extra="").read_text().replace("[search.num_units]", extra + "[search.num_units]")
    (tmp_path / "tiny.toml").write_text(spec)
    first = cli("--study", "tiny.toml", "--trials", "1", cwd=tmp_path)  # the baseline alone: it is the best
    assert first.returncode == 0, first.stderr
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path}/optuna.db")
    assert client.get_model_version_by_alias("tiny", "best").run_id == study.trials[0].user_attrs["mlflow_run_id"]
    more = cli("--study", "tiny.toml", "--trials", "2", cwd=tmp_path)
    assert more.returncode == 0, more.stderr
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path}/optuna.db")
    assert study.trials[1].params == {"num_units": 24, "learning_rate": 0.02} and study.trials[1].user_attrs["enqueued"]
    assert study.trials[1].value > study.trials[0].value  # 30 steps at 20x the learning rate
    assert client.get_model_version_by_alias("tiny", "best").run_id == study.trials[1].user_attrs["mlflow_run_id"]
    assert "registered: models:/tiny@best (version 2, trial 1)" in more.stdout


@pytest.mark.slow
def test_a_study_refuses_another_study_file_but_not_a_new_comment(tmp_path):
    path = tiny(tmp_path, steps=10)
    assert cli("--study", str(path), "--trials", "1", cwd=tmp_path).returncode == 0
    path.write_text("# a comment, and some space\n\n" + path.read_text())
    assert cli("--study", str(path), "--trials", "1", cwd=tmp_path).returncode == 0
    path.write_text(path.read_text().replace("high = 24", "high = 32"))
    changed = cli("--study", str(path), "--trials", "2", cwd=tmp_path)
    assert changed.returncode == 2
    assert "study 'tiny' was created from a different study file; give this one a new --study-name" in changed.stderr


@pytest.mark.slow
def test_a_study_that_searches_the_recipe_records_it_and_reproduce_rebuilds_it(tmp_path):
    """Categorical and recipe settings (the schedule, the number of epochs) as search dimensions:
    trials carry them as params, and `reproduce` trains them again bitwise from the run alone."""
    spec = tmp_path / "recipe.toml"
    spec.write_text(
        TINY.format(name="recipe", steps=1, extra="eval_points = 2")
        .replace("train_steps = 1\n", "")
        .replace("eval_every = 10\n", "")
        .replace("[baseline]\nnum_units = 16\n", "[baseline]\nnum_units = 16\nepochs = 1\n")
        + '[search.lr_schedule]\ntype = "categorical"\nchoices = ["constant", "one_cycle"]\n'
        + '[search.epochs]\ntype = "int"\nlow = 1\nhigh = 2\n'
        + '[search.clip_norm]\ntype = "categorical"\nchoices = ["none", 1.0]\n'
        + '[sampler]\ntype = "random"\nseed = 3\n'
    )
    result = cli("--study", str(spec), "--trials", "4", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    study = optuna.load_study(study_name="recipe", storage=f"sqlite:///{tmp_path}/optuna.db")
    assert study.trials[0].params == {
        "num_units": 16,
        "learning_rate": 0.001,
        "lr_schedule": "constant",
        "epochs": 1,
        "clip_norm": None,
    }
    assert {t.params["lr_schedule"] for t in study.trials} == {"constant", "one_cycle"}  # the random sampler, seed 3
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    for trial in study.trials:
        run = client.get_run(trial.user_attrs["mlflow_run_id"])
        assert run.data.params["lr_schedule"] == trial.params["lr_schedule"] and run.data.params["epochs"] == str(
            trial.params["epochs"]
        )
        assert [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")] == [
            50,
            100,
        ]  # % of the schedule
        assert (
            trial.user_attrs["train_images"]
            == run.data.metrics["train_images"]
            == trial.params["epochs"] * 1000 // 128 * 128 + (128 if trial.params["epochs"] * 1000 % 128 else 0)
        )
    one_cycle = next(t for t in study.trials if t.params["lr_schedule"] == "one_cycle")
    again = cli("reproduce", "--trial", str(one_cycle.number), cwd=tmp_path)
    assert again.returncode == 0 and "weights: bitwise identical" in again.stdout, again.stdout + again.stderr


def listing(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--trials", "0"], "--trials: 0 must be at least 1"),
        (["--trials", "many"], "'many' is not a whole number"),
        (["--trial", "2"], "unrecognized arguments: --trial 2"),  # no abbreviations: --trial is not --trials
        (["--timeout", "-5"], "--timeout: -5 must be a positive"),
        (["--heartbeat-interval", "0"], "--heartbeat-interval: 0 must be at least 1"),
        (["--grace-period", "soon"], "--grace-period: 'soon' is not a whole number"),
        (["--n-jobs", "0"], "--n-jobs: 0 must be at least 1"),
        (["--max-images", "lots"], "--max-images: 'lots' is not a number of images (e.g. 220000, 500k, 3.3M)"),
        (["--max-images", "3.3X"], "--max-images: '3.3X' is not a number of images"),
        (["--max-images", "0"], "--max-images: 0 must be at least 1 image"),
        (["--max-images=-500k"], "--max-images: -500k must be at least 1 image"),
        (["--max-images", "nan"], "--max-images: nan must be at least 1 image"),
        (["--study", "missing.toml"], "study file missing.toml: cannot read it"),
        (["--study", "BAD_CHOICE"], "choices[1] = 'cosine' is not one of constant, one_cycle"),
        (["--data-dir", "/nonexistent"], "MNIST directory /nonexistent does not exist"),
        (["--storage", "notaurl"], "cannot open Optuna storage notaurl"),
        (
            ["--tracking-uri", "postgresql://u:hunter2@127.0.0.1:9/x"],
            "cannot open MLflow tracking store postgresql://u:***@127.0.0.1:9/x",
        ),
        (
            ["--tracking-uri", "http://u:hunter2@127.0.0.1:9"],
            "cannot open MLflow tracking store http://u:***@127.0.0.1:9",
        ),
        (["report"], "no Optuna storage at optuna.db"),
        (["report", "--storage", "sqlite:///elsewhere.db"], "no Optuna storage at elsewhere.db"),
        (["reproduce", "0123456789abcdef"], "no MLflow tracking store at mlflow.db"),
        (["reproduce", "--trial", "0"], "no MLflow tracking store at mlflow.db"),
        (["baseline", "--study", "missing.toml"], "study file missing.toml: cannot read it"),
        (["confirm"], "no Optuna storage at optuna.db"),
        (["confirm", "--top", "0"], "--top: 0 must be at least 1"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, message):
    bad = tmp_path / "bad.toml"
    bad.write_text(
        SMOKE.read_text() + '\n[search.lr_schedule]\ntype = "categorical"\nchoices = ["constant", "cosine"]\n'
    )
    args = [str(bad) if a == "BAD_CHOICE" else a for a in args]
    before = listing(tmp_path)
    command = args if args[0] in ("report", "reproduce", "baseline", "confirm") else ["--study", str(SMOKE), *args]
    result = cli(*command, cwd=tmp_path)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("sweep.py")]
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr and "hunter2" not in result.stderr + result.stdout
    assert listing(tmp_path) == before


@pytest.mark.slow
def test_stores_default_to_the_ecosystems_environment_variables_and_flags_win(tmp_path):
    env = cli_env(
        MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path}/team-mlflow.db",
        OPTUNA_STORAGE=f"sqlite:///{tmp_path}/team-optuna.db",
    )
    run = cli("--study", str(tiny(tmp_path, steps=10)), "--trials", "1", cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stderr
    assert {"team-mlflow.db", "team-optuna.db"} <= set(listing(tmp_path)) and "optuna.db" not in listing(tmp_path)
    report = cli("report", "--storage", "sqlite:///nowhere.db", cwd=tmp_path, env=env)
    assert report.returncode == 2 and "no Optuna storage at nowhere.db" in report.stderr  # the flag, not the variable


def test_max_images_reads_millions_thousands_and_plain_counts():
    from sweep.cli import image_count

    assert [image_count(t) for t in ("3.3M", "500k", "220000", "2.5K", "1e6", "0.1M")] == [
        3_300_000,
        500_000,
        220_000,
        2_500,
        1_000_000,
        100_000,
    ]


def test_workers_get_no_password_on_their_command_line():
    from sweep.search.workers import worker_argv

    argv = [
        "--trials",
        "9",
        "--storage",
        "postgresql://u:pw-1@h/optuna",
        "--tracking-uri=postgresql://u:pw-2@h/mlflow",
        "--n-jobs",
        "4",
    ]
    assert worker_argv(argv) == ["--trials", "9", "--n-jobs", "4", "--n-jobs", "1", "--worker"]


@pytest.mark.slow
def test_the_installed_command_is_the_command_line(tmp_path):
    command = Path(sys.executable).parent / "lstm-mnist-sweep"
    result = subprocess.run([str(command), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "--trials" in result.stdout and "usage: sweep.py" in result.stdout
    bad = subprocess.run([str(command), "--trials", "0"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--trials: 0 must be at least 1" in bad.stderr


@pytest.mark.slow
def test_without_internet_or_data_the_error_names_the_four_files(tmp_path):
    """No --data-dir, no SWEEP_DATA_DIR, no cached copy: the download fails (here through a proxy on
    a closed local port, so nothing leaves the machine) and the error says what to provide."""
    env = {k: v for k, v in cli_env().items() if k != "SWEEP_DATA_DIR"}
    env.update(
        {
            "KERAS_HOME": str(tmp_path / "keras"),
            "HTTPS_PROXY": "http://127.0.0.1:9",
            "HTTP_PROXY": "http://127.0.0.1:9",
            "https_proxy": "http://127.0.0.1:9",
            "http_proxy": "http://127.0.0.1:9",
        }
    )
    result = subprocess.run(
        cli_command("--study", "smoke", "--trials", "1"),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("sweep.py")]
    assert "cannot download MNIST" in line and "SWEEP_DATA_DIR" in line
    assert all(
        name in line
        for name in (
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        )
    )
    assert not list(tmp_path.glob("*.db"))


def no_compiler(tmp_path) -> dict[str, str]:
    """No C++ compiler and an empty cache: the native op cannot be built."""
    return cli_env(CXX=str(tmp_path / "no-such-compiler"), XDG_CACHE_HOME=str(tmp_path / "cache"))


@pytest.mark.slow
def test_without_a_compiler_the_sweep_trains_on_the_keras_backend(tmp_path):
    result = run_cli("--study", str(tiny(tmp_path, steps=10)), "--trials", "1", cwd=tmp_path, env=no_compiler(tmp_path))
    assert result.returncode == 0, result.stderr
    (why,) = [line for line in result.stderr.splitlines() if line.startswith("lstm backend:")]
    assert "keras" in why and "cannot build the LSTM op" in why
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    (run,) = trial_runs(client, client.get_experiment_by_name("tiny").experiment_id)
    assert run.info.status == "FINISHED" and run.data.params["lstm_backend"] == "keras"
    assert "lstm_op.compiler" not in run.data.params


def test_compiled_backend_is_recorded(swept):
    folder, _ = swept
    client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
    for run in trial_runs(client, client.get_experiment_by_name("smoke").experiment_id):
        assert run.data.params["lstm_backend"] == "native" and run.data.params["lstm_op.compiler"]


@pytest.mark.slow
def test_native_backend_asked_for_without_a_compiler_is_one_line_exit_2_and_writes_nothing(tmp_path):
    result = run_cli(
        "--study", str(SMOKE), "--trials", "1", "--lstm-backend", "native", cwd=tmp_path, env=no_compiler(tmp_path)
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("sweep.py")]
    assert len(lines) == 1 and "cannot build the LSTM op" in lines[0] and "install a C++ compiler" in lines[0], (
        result.stderr
    )
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.glob("*.db"))
