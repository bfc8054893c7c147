"""Workers on machines that share no disk: PostgreSQL for the Optuna storage and the MLflow
backend store, an `mlflow server` that holds the artifacts (models, reports, checkpoints), and
"machines" that are separate folders with their own HOME, cache and copy of MNIST; a lost
machine's trial resumed elsewhere from the checkpoint it left on the server; a tracking server
restarted mid-sweep; many workers on one server.

Every worker is a real process running the real command line."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from sweep.tracking import registry, schema
from sweep.tracking.study import experiment_id
from tests.conftest import (
    DATA_DIR,
    PG_PASSWORD,
    REPO,
    cli,
    finish,
    free_port,
    new_database,
    output,
    peak,
    postgres_log_size,
    quoted,
    sessions,
    slow_fixture,
    tracking_server,
    wait_for,
)
from tests.test_faults import RESUME, checkpoint_step, final_model, write_spec

pytestmark = pytest.mark.slow


def machine(root: Path, name: str, storage: str, tracking: str, op_cache: Path) -> tuple[Path, dict[str, str]]:
    """A folder standing for a machine: its own HOME, cache and MNIST copy; the stores reach it
    by environment variable only (a password never stands on a command line). Its cache holds
    the LSTM op this test session built (every machine would build the same one)."""
    folder = root / name
    (folder / "home").mkdir(parents=True)
    shutil.copytree(DATA_DIR, folder / "mnist")
    shutil.copytree(op_cache, folder / "cache" / op_cache.name)
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(folder / "home"),
        "XDG_CACHE_HOME": str(folder / "cache"),
        "OPTUNA_STORAGE": storage,
        "MLFLOW_TRACKING_URI": tracking,
        "SWEEP_DATA_DIR": str(folder / "mnist"),
        "KERAS_HOME": str(folder / "keras"),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    return folder, env


def sweep_command(*args: str) -> list[str]:
    return [sys.executable, str(REPO / "sweep.py"), *args]


@slow_fixture
def server(postgres, tmp_path, procs):
    """`mlflow server` on a fresh PostgreSQL database, serving artifacts from its own folder."""
    port, artifacts = free_port(), tmp_path / "server-artifacts"
    tracking_server(procs, new_database(postgres, f"mlflow_{tmp_path.name[-20:]}"), artifacts, port, tmp_path)
    return f"http://127.0.0.1:{port}", artifacts


def test_two_machines_sharing_no_disk_and_a_third_that_reads_everything(tmp_path, postgres, server, procs, op_cache):
    tracking, artifacts = server
    storage = new_database(postgres, "optuna_machines")
    machines = [machine(tmp_path, f"machine-{k}", storage, tracking, op_cache) for k in (1, 2)]
    workers = [
        procs.start(sweep_command("--study", "smoke", "--trials", "4", "--lstm-backend", "keras"), cwd=folder, env=env)
        for folder, env in machines
    ]
    outputs = [finish(w) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], [quoted(out) for out in outputs]

    study = optuna.load_study(study_name="smoke", storage=storage)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 4 and not study.get_trials(states=(TrialState.RUNNING,))
    for folder, _ in machines:
        assert not (folder / "mlruns").exists() and not (folder / "mlflow.db").exists()  # nothing stored locally
    assert len(list(artifacts.rglob("model.keras"))) == 4  # every model reached the server's artifact store

    reader, env = machine(tmp_path, "reader", storage, tracking, op_cache)  # a third machine, empty
    report = subprocess.run(sweep_command("report"), cwd=reader, env=env, capture_output=True, text=True, timeout=600)
    assert report.returncode == 0, report.stderr
    assert "Trial " in (reader / "reports" / "smoke" / "report.md").read_text()
    client = MlflowClient(tracking)
    run_id = complete[-1].user_attrs["mlflow_run_id"]
    retrained = subprocess.run(
        sweep_command("reproduce", run_id, "--data-dir", str(reader / "mnist")),
        cwd=reader,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert retrained.returncode == 0 and "weights: bitwise identical" in retrained.stdout, (
        retrained.stdout + retrained.stderr
    )
    load = subprocess.run(
        [
            sys.executable,
            "-c",
            (
                "import sys, mlflow, numpy as np\n"
                "model = mlflow.pyfunc.load_model(f'runs:/{sys.argv[1]}/model')\n"
                "print('shape', np.asarray(model.predict(np.zeros((3, 28, 28), np.float32))).shape)\n"
            ),
            run_id,
        ],
        cwd=reader,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "shape (3, 10)" in load.stdout, load.stderr[-2000:]
    assert client.get_model_version_by_alias("smoke", "best").run_id == study.best_trial.user_attrs["mlflow_run_id"]
    for out in outputs:
        assert PG_PASSWORD not in out


def test_a_lost_machines_trial_resumes_on_another_from_the_checkpoint_on_the_server(
    tmp_path, postgres, server, procs, op_cache
):
    """A worker on another host (its own UTS namespace, hostname other-host) holds a trial and
    is killed with SIGKILL. A worker on this host, sharing no disk with it, fails that trial once
    its heartbeat is older than the grace period, queues it again, closes its MLflow run as
    KILLED, and resumes it from the checkpoint it reads from the tracking server over HTTP; the
    trial ends as it would have on the lost machine (same backend, chains and CPU)."""
    if shutil.which("unshare") is None:
        pytest.fail("unshare (util-linux) is needed to give a worker another hostname")
    tracking, _ = server
    storage = new_database(postgres, "optuna_lost")
    spec = write_spec(tmp_path, "resume", **RESUME)
    beat = ("--heartbeat-interval", "1", "--grace-period", "4")
    lost_folder, lost_env = machine(tmp_path, "other-host", storage, tracking, op_cache)
    command = " ".join(sweep_command("--study", str(spec), "--trials", "1", *beat))
    lost = procs.start(
        ["unshare", "--uts", "sh", "-c", f"hostname other-host && exec {command}"], cwd=lost_folder, env=lost_env
    )
    client = MlflowClient(tracking)

    def second_point():
        experiment = client.get_experiment_by_name("resume")
        runs = client.search_runs([experiment.experiment_id], "tags.`sweep.role` = 'trial'") if experiment else []
        return next((run for run in runs if checkpoint_step(run) >= 80), None)

    wait_for(second_point, lost, what="the lost worker's second curve point")
    lost.send_signal(signal.SIGKILL)
    lost.wait(timeout=60)
    killed_at = time.time()
    study = optuna.load_study(study_name="resume", storage=storage)
    assert study.trials[0].user_attrs["worker"]["host"] == "other-host"

    here_folder, here_env = machine(tmp_path, "this-host", storage, tracking, op_cache)
    survivor = subprocess.run(
        sweep_command("--study", str(spec), "--trials", "1", *beat),
        cwd=here_folder,
        env=here_env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert survivor.returncode == 0, survivor.stderr[-3000:]
    study = optuna.load_study(study_name="resume", storage=storage)
    dead, retried = study.trials[0], study.trials[1]
    assert dead.state == TrialState.FAIL and dead.datetime_complete.timestamp() >= killed_at  # failed by the survivor
    assert retried.state == TrialState.COMPLETE and retried.params == dead.params and retried.user_attrs["resumes"] == 0
    assert retried.user_attrs["worker"]["host"] != "other-host"
    run, dead_run = (
        client.get_run(retried.user_attrs["mlflow_run_id"]),
        client.get_run(dead.user_attrs["mlflow_run_id"]),
    )
    assert dead_run.info.status == "KILLED" and "worker died" in dead_run.data.tags["sweep.failure"]
    assert (
        run.data.tags[schema.TAG_RESUMED_FROM] == dead_run.info.run_id
        and int(run.data.tags[schema.TAG_RESUMED_AT]) >= 80
    )
    straight = cli("--study", str(spec), "--trials", "1", cwd=tmp_path)  # the same trial on this host, never stopped
    assert straight.returncode == 0, straight.stderr
    local = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    reference = optuna.load_study(study_name="resume", storage=f"sqlite:///{tmp_path}/optuna.db").trials[0]
    weights = final_model(local, reference.user_attrs["mlflow_run_id"])
    assert all(np.array_equal(a, b) for a, b in zip(final_model(client, run.info.run_id), weights, strict=True))
    assert retried.intermediate_values == reference.intermediate_values
    assert schema.TAG_CHECKPOINT not in client.get_run(dead_run.info.run_id).data.tags


def test_a_sweep_survives_its_tracking_server_going_away_for_30_seconds(tmp_path, procs, op_cache):
    """The tracking server (SQLite backend, its own artifact folder) is killed while a sweep
    writes checkpoints, and restarted 30 s later on the same port: MLflow's client retries, and
    the sweep ends with every trial, none lost or recorded twice."""
    port, artifacts = free_port(), tmp_path / "server-artifacts"
    backend = f"sqlite:///{tmp_path}/server.db"
    tracking_server(procs, backend, artifacts, port, tmp_path)
    spec = write_spec(tmp_path, "outage", steps=400, every=40)
    env = {
        **machine(tmp_path, "worker", f"sqlite:///{tmp_path}/optuna.db", f"http://127.0.0.1:{port}", op_cache)[1],
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "10",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    }  # retries 1, 2, 4, ... s apart
    worker = procs.start(sweep_command("--study", str(spec), "--trials", "3"), cwd=tmp_path, env=env)
    client = MlflowClient(f"http://127.0.0.1:{port}")

    def writing_checkpoints():
        experiment = client.get_experiment_by_name("outage")
        runs = client.search_runs([experiment.experiment_id], "tags.`sweep.role` = 'trial'") if experiment else []
        return any(checkpoint_step(run) for run in runs)

    wait_for(writing_checkpoints, worker, what="the first checkpoint")
    procs.kill_all(worker)  # the server and its uvicorn workers
    time.sleep(30)
    assert worker.poll() is None, output(worker)  # still waiting for the server, not failed
    tracking_server(procs, backend, artifacts, port, tmp_path)
    assert worker.wait(timeout=600) == 0, output(worker)

    study = optuna.load_study(study_name="outage", storage=f"sqlite:///{tmp_path}/optuna.db")
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 3 and len(study.trials) == 3
    runs = client.search_runs([client.get_experiment_by_name("outage").experiment_id], "tags.`sweep.role` = 'trial'")
    assert sorted(r.info.run_id for r in runs) == sorted(t.user_attrs["mlflow_run_id"] for t in complete)  # none twice
    assert all(r.info.status == "FINISHED" and schema.TAG_CHECKPOINT not in r.data.tags for r in runs)


def test_eight_workers_on_one_postgresql_lose_no_trial_hold_few_connections_and_show_no_password(
    tmp_path, postgres, procs, op_cache
):
    """8 workers started together on one study, the stores given with a password by the
    environment (as the README says): every trial runs once, each worker keeps one Optuna
    connection and holds MLflow's only during operations, and the password shows nowhere:
    output, MLflow, the report."""
    storage, tracking = new_database(postgres, "optuna_eight"), new_database(postgres, "mlflow_eight")
    folder, env = machine(tmp_path, "eight", storage, tracking, op_cache)
    spec = write_spec(folder, "eight", steps=20, every=10, extra='[pruner]\ntype = "none"\n')
    since = postgres_log_size()
    workers = [
        procs.start(
            sweep_command("--study", str(spec), "--trials", "16"), cwd=folder, env=env | {"PGAPPNAME": f"worker-{i}"}
        )
        for i in range(8)
    ]
    outputs = [finish(w, timeout=1500) for w in workers]
    assert [w.returncode for w in workers] == [0] * 8, [quoted(out) for out in outputs]
    study = optuna.load_study(study_name="eight", storage=storage)
    finished = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(finished) == 16 and not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    assert len({tuple(sorted(t.params.items())) for t in finished}) == 16  # none lost, none run twice
    assert len({t.user_attrs["worker"]["pid"] for t in finished}) >= 2
    client = MlflowClient(tracking)
    experiment_id = client.get_experiment_by_name("eight").experiment_id
    runs = client.search_runs([experiment_id], "tags.`sweep.role` = 'trial' and attributes.status = 'FINISHED'")
    assert sorted(r.info.run_id for r in runs) == sorted(t.user_attrs["mlflow_run_id"] for t in finished)
    [parent] = client.search_runs([experiment_id], "tags.`sweep.role` = 'study'")  # one, though 8 workers made it
    assert parent.data.params["optuna.storage"] == storage.replace(PG_PASSWORD, "***")
    # The server's own log of every connection, each named by its worker (PGAPPNAME): no
    # connection slips between samples. Measured in time held, not in "at once": the server logs
    # a disconnection when it gets round to it, so a count at one moment can include one just
    # closed. A worker keeps one Optuna connection (pool 1); its heartbeat opens a second only
    # while both write (overflow 1). MLflow connects per operation (NullPool) and holds nothing
    # between operations, though one operation may nest a second session: 4 at once at most.
    logged = sessions({"optuna_eight", "mlflow_eight"}, since)
    for i in range(8):
        mine = [x for x in logged if x.application == f"worker-{i}"]
        life = max(x.closed for x in mine) - min(x.opened for x in mine)
        optuna_held = sum((x.closed - x.opened for x in mine if x.database == "optuna_eight"), timedelta()) / life
        mlflow_longest = max(x.closed - x.opened for x in mine if x.database == "mlflow_eight") / life
        print(
            f"worker-{i}: {len(mine)} connections, {peak(mine)} at once at most; Optuna held {optuna_held:.2f} "
            f"connections on average, MLflow's longest {mlflow_longest:.1%} of its {life.total_seconds():.0f} s"
        )
        assert optuna_held < 1.5 and mlflow_longest < 0.25
    assert 8 <= peak(logged) <= 4 * 8  # the 8 workers ran at once, within what each may hold

    report = subprocess.run(sweep_command("report"), cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    assert report.returncode == 0, report.stderr
    texts = [*outputs, report.stdout + report.stderr]
    texts += [
        p.read_text(errors="ignore") for p in (folder / "reports").rglob("*") if p.suffix in (".md", ".html", ".csv")
    ]
    texts += [str(run.data.params) + str(run.data.tags) for run in client.search_runs([experiment_id])]
    assert not [t for t in texts if PG_PASSWORD in t]


def at_once(workers: int, work) -> list[str]:
    """`work()` from that many threads released together; the errors they raised."""
    ready, failures = threading.Barrier(workers), []

    def run() -> None:
        ready.wait()
        try:
            work()
        except Exception as e:  # noqa: BLE001  collected for the caller to assert on
            failures.append(repr(e))

    threads = [threading.Thread(target=run) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return failures


def test_workers_registering_the_best_model_at_once_all_succeed(postgres):
    """Workers that finish together each point `<study>@best` at the best trial's model. The
    race is real here: MLflow's own alias call, made by 8 threads at once, collides (the
    control); `register_best` from 8 threads at once never fails."""
    tracking = new_database(postgres, "mlflow_alias")
    client = MlflowClient(tracking)

    def new_run(study: str) -> str:
        experiment = client.create_experiment(study)
        run = client.create_run(experiment)
        client.create_logged_model(experiment, name="model", source_run_id=run.info.run_id)
        return run.info.run_id

    collisions = 0
    for n in range(10):  # the control: the first writes of an alias collide
        run_id = new_run(f"control-{n}")
        version = registry.register_best(client, f"control-{n}", run_id)
        client.delete_registered_model_alias(f"control-{n}", schema.ALIAS_BEST)

        def alias(n=n, version=version):
            MlflowClient(tracking).set_registered_model_alias(f"control-{n}", schema.ALIAS_BEST, version)

        collisions += bool(at_once(8, alias))
    assert collisions, "no collision in 10 rounds: this test cannot tell register_best's retry from its absence"
    for n in range(10):
        run_id = new_run(f"race-{n}")
        assert (
            at_once(8, lambda n=n, run_id=run_id: registry.register_best(MlflowClient(tracking), f"race-{n}", run_id))
            == []
        )
        assert client.get_model_version_by_alias(f"race-{n}", schema.ALIAS_BEST).run_id == run_id


REGISTER = """
import sys, time
from mlflow import MlflowClient
from sweep.tracking.registry import register_best
tracking, study, run_id, start = sys.argv[1:]
time.sleep(max(0.0, float(start) - time.time()))  # all eight go at once
print(register_best(MlflowClient(tracking), study, run_id))
"""


def test_eight_processes_finishing_together_register_each_run_once(postgres, procs):
    """Eight workers finish at once, and each registers the study's best: one version per run
    in the registry, whoever got there first, and every worker names that version. (MLflow's own
    register_model, checked and then called, left up to eight.)"""
    tracking = new_database(postgres, "mlflow_register")
    client = MlflowClient(tracking)
    experiment = client.create_experiment("together")
    run_ids = []
    for _ in range(2):  # two trials, four workers each
        run = client.create_run(experiment)
        client.create_logged_model(experiment, name="model", source_run_id=run.info.run_id)
        run_ids.append(run.info.run_id)
    start = time.time() + 20  # past every worker's imports
    workers = [
        procs.start([sys.executable, "-c", REGISTER, tracking, "together", run_ids[k % 2], str(start)], cwd=REPO)
        for k in range(8)
    ]
    said = [finish(worker, timeout=300).strip().splitlines()[-1] for worker in workers]
    assert all(w.returncode == 0 for w in workers), said
    for k, run_id in enumerate(run_ids):
        versions = client.search_model_versions(f"name = 'together' and run_id = '{run_id}'")
        assert len(versions) == 1, [v.version for v in versions]
        assert {said[w] for w in range(k, 8, 2)} == {str(versions[0].version)}  # each worker names the version kept


def test_workers_creating_the_studys_experiment_at_once_all_succeed(postgres):
    """Workers that start a study together each find its MLflow experiment missing and create
    it: one insert wins, the others collide on its unique name (the control shows they do here),
    and `experiment_id` hands every worker the one experiment."""
    from sweep.search.spec import load_spec

    tracking = new_database(postgres, "mlflow_experiments")
    client = MlflowClient(tracking)
    assert at_once(8, lambda: MlflowClient(tracking).create_experiment("control")), (
        "no collision: the test would prove nothing"
    )
    spec = load_spec("smoke")
    ids = []
    assert at_once(8, lambda: ids.append(experiment_id(MlflowClient(tracking), spec.name, spec.description))) == []
    assert len(ids) == 8 and set(ids) == {client.get_experiment_by_name("smoke").experiment_id}
