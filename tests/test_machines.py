"""Workers on machines that share no disk: PostgreSQL for the Optuna storage and the MLflow
backend store, an `mlflow server` that holds the artifacts, and "machines" that are separate
folders with their own HOME, cache and copy of MNIST; a lost machine recovered by Optuna's
heartbeat; many workers on one server.

Every worker is a real process running the real command line."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import mlflow
import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from sweep import records
from tests.conftest import DATA_DIR, PG_PASSWORD, REPO, SMOKE, connections, free_port, new_database
from tests.test_faults import write_spec
from tests.test_ui import serve


def machine(root: Path, name: str, storage: str, tracking: str) -> tuple[Path, dict[str, str]]:
    """A folder standing for a machine: its own HOME, cache and MNIST copy; the stores reach it
    by environment variable only (a password never stands on a command line)."""
    folder = root / name
    (folder / "home").mkdir(parents=True)
    shutil.copytree(DATA_DIR, folder / "mnist")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(folder / "home"), "XDG_CACHE_HOME": str(folder / "cache"),
           "OPTUNA_STORAGE": storage, "MLFLOW_TRACKING_URI": tracking, "SWEEP_DATA_DIR": str(folder / "mnist"),
           "KERAS_HOME": str(folder / "keras"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    return folder, env


def sweep(folder: Path, env: dict[str, str], *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "sweep.py"), *args], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def tracking_server(postgres, tmp_path):
    """`mlflow server` on a fresh PostgreSQL database, serving artifacts from its own folder."""
    backend = new_database(postgres, "mlflow_server")
    artifacts = tmp_path / "server-artifacts"
    port = free_port()
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend, "--artifacts-destination",
               str(artifacts), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    server = serve(command, f"http://127.0.0.1:{port}/health", tmp_path)
    yield f"http://127.0.0.1:{port}", artifacts
    server.terminate()
    server.wait(timeout=30)


def test_two_machines_sharing_no_disk_and_a_third_that_reads_everything(tmp_path, postgres, tracking_server):
    tracking, artifacts = tracking_server
    storage = new_database(postgres, "optuna_machines")
    machines = [machine(tmp_path, f"machine-{k}", storage, tracking) for k in (1, 2)]
    workers = [subprocess.Popen([sys.executable, str(REPO / "sweep.py"), "--study", "smoke", "--trials", "4",
                                 "--lstm-backend", "keras"], cwd=folder, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for folder, env in machines]
    outputs = [w.communicate(timeout=900) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], [err[-3000:] for _, err in outputs]

    study = optuna.load_study(study_name="smoke", storage=storage)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 4 and not study.get_trials(states=(TrialState.RUNNING,))
    for folder, _ in machines:
        assert not (folder / "mlruns").exists() and not (folder / "mlflow.db").exists()  # nothing stored locally
    assert len(list(artifacts.rglob("model.keras"))) == 4  # every model reached the server's artifact store

    reader, env = machine(tmp_path, "reader", storage, tracking)  # a third machine, empty
    report = sweep(reader, env, "report")
    assert report.returncode == 0, report.stderr
    assert "Trial " in (reader / "reports" / "smoke" / "report.md").read_text()
    client = MlflowClient(tracking)
    run_id = complete[-1].user_attrs["mlflow_run_id"]
    retrained = sweep(reader, env, "reproduce", run_id, "--data-dir", str(reader / "mnist"))
    assert retrained.returncode == 0 and "weights: bitwise identical" in retrained.stdout, retrained.stdout + retrained.stderr
    evaluated = sweep(reader, env, "reproduce", run_id, "--evaluate-only", "--data-dir", str(reader / "mnist"))
    assert evaluated.returncode == 0, evaluated.stderr
    load = subprocess.run([sys.executable, "-c", (
        "import sys, mlflow, numpy as np\n"
        "model = mlflow.pyfunc.load_model(f'runs:/{sys.argv[1]}/model')\n"
        "print('shape', np.asarray(model.predict(np.zeros((3, 28, 28), np.float32))).shape)\n"
    ), run_id], cwd=reader, env=env, capture_output=True, text=True, timeout=300)
    assert "shape (3, 10)" in load.stdout, load.stderr[-2000:]
    assert client.get_model_version_by_alias("smoke", "best").run_id == study.best_trial.user_attrs["mlflow_run_id"]
    for _, err in outputs:
        assert PG_PASSWORD not in err


def test_a_lost_machines_trial_is_recovered_by_the_heartbeat(tmp_path, postgres):
    """A worker on another host (its own UTS namespace, hostname other-host) holds a trial and
    is killed with SIGKILL. A worker on this host fails that trial once its heartbeat is older
    than the grace period, queues its parameters again, closes its MLflow run as KILLED, and
    carries the study to its target."""
    if shutil.which("unshare") is None:
        pytest.fail("unshare (util-linux) is needed to give a worker another hostname")
    storage, tracking = new_database(postgres, "optuna_lost"), new_database(postgres, "mlflow_lost")
    spec = write_spec(tmp_path, "lost", steps=400)
    beat = ("--heartbeat-interval", "1", "--grace-period", "4")
    lost_folder, lost_env = machine(tmp_path, "other-host", storage, tracking)
    command = " ".join([sys.executable, str(REPO / "sweep.py"), "--study", str(spec), "--trials", "2", *beat])
    lost = subprocess.Popen(["unshare", "--uts", "sh", "-c", f"hostname other-host && exec {command}"], cwd=lost_folder,
                            env=lost_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    client = MlflowClient(tracking)
    trial = first_curve_point(storage, client, "lost")
    assert trial.user_attrs["worker"]["host"] == "other-host"
    lost.send_signal(signal.SIGKILL)
    lost.wait(timeout=60)
    killed_at = time.time()

    here_folder, here_env = machine(tmp_path, "this-host", storage, tracking)
    survivor = sweep(here_folder, here_env, "--study", str(spec), "--trials", "2", *beat)
    assert survivor.returncode == 0, survivor.stderr[-3000:]
    study = optuna.load_study(study_name="lost", storage=storage)
    dead = study.trials[trial.number]
    assert dead.state == TrialState.FAIL
    assert dead.datetime_complete.timestamp() - killed_at >= 0  # failed after the kill, by the survivor
    retried = [t for t in study.trials if t.system_attrs.get("failed_trial") == trial.number]
    assert len(retried) == 1 and retried[0].state == TrialState.COMPLETE and retried[0].params == dead.params
    assert retried[0].user_attrs["worker"]["host"] != "other-host"
    run = client.get_run(dead.user_attrs["mlflow_run_id"])
    assert run.info.status == "KILLED" and "worker died" in run.data.tags["sweep.failure"]
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 2 and not study.get_trials(states=(TrialState.RUNNING,))
    for t in study.trials:  # the timeline, in seconds after the kill (for the record; -s shows it)
        print(f"trial {t.number} {t.state.name} on {t.user_attrs['worker']['host']}: started {t.datetime_start.timestamp() - killed_at:+.1f} s, "
              f"ended {t.datetime_complete.timestamp() - killed_at:+.1f} s")


def first_curve_point(storage: str, client: MlflowClient, name: str, timeout: float = 300):
    """The first RUNNING trial, once its run has logged a curve point: the worker is mid-trial.
    One Optuna storage serves every poll: a storage per poll keeps its pooled connections until
    collected, and hundreds of polls left the server too few for the tests after this one."""
    deadline, rdb = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            rdb = rdb or optuna.storages.RDBStorage(storage)
            for trial in optuna.load_study(study_name=name, storage=rdb).get_trials(states=(TrialState.RUNNING,)):
                run_id = trial.user_attrs.get("mlflow_run_id")
                if run_id and client.get_metric_history(run_id, "val_accuracy"):
                    return trial
        except Exception:  # noqa: BLE001  the worker may still be creating the study or its tables
            pass
        time.sleep(0.2)
    raise AssertionError("no trial reached its first curve point")


def test_eight_workers_on_one_postgresql_lose_no_trial_and_hold_few_connections(tmp_path, postgres):
    storage, tracking = new_database(postgres, "optuna_eight"), new_database(postgres, "mlflow_eight")
    folder, env = machine(tmp_path, "eight", storage, tracking)
    samples, done = [], threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append(connections(postgres, "optuna_eight", "mlflow_eight"))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        workers = [subprocess.Popen([sys.executable, str(REPO / "sweep.py"), "--study", str(SMOKE), "--trials", "24"],
                                    cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                   for _ in range(8)]
        errors = [w.communicate(timeout=1500)[1] for w in workers]
    finally:
        done.set()
        sampler.join()
    assert [w.returncode for w in workers] == [0] * 8, [e[-2000:] for e in errors]
    study = optuna.load_study(study_name="smoke", storage=storage)
    finished = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(finished) == 24 and not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    assert len({tuple(sorted(t.params.items())) for t in finished}) == 24  # none lost, none run twice
    runs = [r for r in MlflowClient(tracking).search_runs([MlflowClient(tracking).get_experiment_by_name("smoke").experiment_id],
                                                          "tags.`sweep.role` = 'trial' and attributes.status = 'FINISHED'")]
    assert sorted(r.info.run_id for r in runs) == sorted(t.user_attrs["mlflow_run_id"] for t in finished)
    busy = [n for n in samples if n]
    print(f"8 workers: peak {max(samples)} connections, mean {sum(busy) / len(busy):.1f} while any was open")
    # A worker keeps one Optuna connection, opens a second only while its heartbeat and its trial
    # write at once, and holds no MLflow connection between operations: 2 a worker at the most.
    assert max(samples) <= 2 * 8 + 4, max(samples)


def register_at_once(tracking: str, study: str, run_id: str, workers: int = 8) -> list[str]:
    """`register_best` from that many threads released together; the errors they raised."""
    ready, failures = threading.Barrier(workers), []

    def finish() -> None:
        ready.wait()
        try:
            records.register_best(MlflowClient(tracking), study, run_id)
        except Exception as e:  # noqa: BLE001  collected for the caller to assert on
            failures.append(repr(e))

    threads = [threading.Thread(target=finish) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return failures


def test_workers_registering_the_best_model_at_once_all_succeed(postgres, monkeypatch):
    """Workers that finish together each point `<study>@best` at the best trial's model; their
    first writes of the alias collide in the database (in some of these rounds), and none may
    fail for it."""
    tracking = new_database(postgres, "mlflow_alias")
    monkeypatch.setattr(mlflow.tracking._tracking_service.utils, "_tracking_uri", tracking)  # as the CLI sets it
    client = MlflowClient(tracking)
    for study in (f"race-{n}" for n in range(10)):
        experiment = client.create_experiment(study)
        run = client.create_run(experiment)
        client.create_logged_model(experiment, name="model", source_run_id=run.info.run_id)
        assert register_at_once(tracking, study, run.info.run_id) == []
        assert client.get_model_version_by_alias(study, records.BEST).run_id == run.info.run_id
