"""The MLflow record, on a real tracking store, with no training: checkpoints kept one at a
time where every worker can read them, found again along a chain of resumed runs, and gone
once the training ends, also when a tracking server's answer is cut short; what a run's
configuration costs."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import numpy as np
import pytest
from mlflow import MlflowClient

from sweep.stats import Accuracy
from sweep.tracking import checkpoints, queries, runs, schema
from sweep.training.checkpoint import Checkpoint, CheckpointError
from sweep.training.config import CurvePoint, TrainConfig
from tests.conftest import free_port, slow_fixture, tracking_server, tracking_store

CONFIG = TrainConfig(num_units=8, train_steps=30, eval_every=10)


def checkpoint(step: int) -> Checkpoint:
    curve = tuple(CurvePoint(p, Accuracy(90 + p, 200), 1.0 / p, 0.1 * p, 128 * p) for p in range(10, step + 1, 10))
    rng = np.random.default_rng(step)
    return Checkpoint(
        CONFIG,
        ("native", 2),
        step,
        curve,
        np.arange(3, dtype=np.float32),
        0.5,
        {"lstm/kernel": rng.random((4, 4), np.float32)},
        {"adam/iteration": np.int64(step)},
    )


@pytest.fixture
def store(tmp_path):
    client = MlflowClient(tracking_store(tmp_path))
    experiment = client.create_experiment("s", artifact_location=str(tmp_path / "artifacts"))
    return client, experiment


def new_run(client, experiment) -> runs.ConfigRun:
    return runs.ConfigRun(client, experiment, client.create_run(experiment).info.run_id)


def checkpoint_files(client, run_id) -> list[str]:
    return [a.path for a in client.list_artifacts(run_id, schema.ARTIFACT_CHECKPOINTS)]


def test_a_run_keeps_only_its_latest_checkpoint_and_names_it(store):
    client, experiment = store
    run = new_run(client, experiment)
    for step in (10, 20, 30):
        run.save_checkpoint(checkpoint(step))
        assert checkpoint_files(client, run.run_id) == [f"checkpoint/step-{step:09d}.npz"]
    holder, found = checkpoints.find_checkpoint(client, run.run_id)
    assert holder == run.run_id and found.step == 30 and [p.point for p in found.curve] == [10, 20, 30]
    np.testing.assert_array_equal(found.weights["lstm/kernel"], checkpoint(30).weights["lstm/kernel"])
    run.discard_checkpoints()
    assert (
        checkpoint_files(client, run.run_id) == [] and schema.TAG_CHECKPOINT not in client.get_run(run.run_id).data.tags
    )
    assert checkpoints.find_checkpoint(client, run.run_id) is None


class CuttingProxy(ThreadingHTTPServer):
    """Passes HTTP through to a tracking server, but answers the first request to each endpoint
    in `cut` with its headers and half its body, then hangs up: the server did the work and the
    client never heard it (a server killed mid-answer)."""

    def __init__(self, upstream: str):
        self.upstream, self.cut, self.were_cut = upstream, set(), []
        super().__init__(("127.0.0.1", 0), _Passing)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Passing(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: CuttingProxy

    def _pass(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
        request = urllib.request.Request(self.server.upstream + self.path, body or None, headers, method=self.command)
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                status, answer_headers, data = answer.status, answer.headers, answer.read()
        except urllib.error.HTTPError as e:
            status, answer_headers, data = e.code, e.headers, e.read()
        endpoint = urlsplit(self.path).path
        cut = endpoint in self.server.cut and endpoint not in self.server.were_cut
        self.send_response(status)
        for key, value in answer_headers.items():
            if key.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if cut:
            self.server.were_cut.append(endpoint)
            data, self.close_connection = data[: len(data) // 2], True
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _pass

    def log_message(self, *args) -> None:
        pass


@slow_fixture
def cutting_proxy(tmp_path, procs) -> Iterator[CuttingProxy]:
    """A real `mlflow server` (SQLite backend, its own artifact folder) behind a CuttingProxy."""
    port = free_port()
    tracking_server(procs, f"sqlite:///{tmp_path}/server.db", tmp_path / "server-artifacts", port, tmp_path)
    proxy = CuttingProxy(f"http://127.0.0.1:{port}")
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    yield proxy
    proxy.shutdown()


def test_a_running_trials_record_survives_answers_cut_short(cutting_proxy, caplog):
    """The server logs a metric batch, a checkpoint, a tag, but its answer breaks off (it died
    mid-answer, then came back): the trial asks again, and the record holds each once."""
    client = MlflowClient(cutting_proxy.url)
    run = new_run(client, client.create_experiment("cut"))
    run.save_checkpoint(checkpoint(10))
    api = "/api/2.0/mlflow"
    cutting_proxy.cut = {f"{api}/runs/log-batch", f"{api}/runs/get", f"{api}/runs/set-tag"}
    run.log_accuracies({"val_accuracy": Accuracy(180, 200)}, 20)
    run.save_checkpoint(checkpoint(20))  # tags the new one, reads the run to delete the old one
    assert sorted(cutting_proxy.were_cut) == sorted(cutting_proxy.cut)  # every answer was cut once
    assert caplog.text.count("was cut short; asking again") == 3
    logged = {"val_accuracy": 0.9, "val_accuracy_correct": 180, "val_accuracy_total": 200}
    for name, value in logged.items():  # once each
        assert [(m.step, m.value) for m in client.get_metric_history(run.run_id, name)] == [(20, value)]
    assert checkpoint_files(client, run.run_id) == ["checkpoint/step-000000020.npz"]
    assert client.get_run(run.run_id).data.tags[schema.TAG_CHECKPOINT] == "checkpoint/step-000000020.npz"
    run.discard_checkpoints()
    assert checkpoint_files(client, run.run_id) == []


def test_a_checkpoint_is_found_along_the_runs_that_resumed_it(store):
    client, experiment = store
    first = new_run(client, experiment)
    first.save_checkpoint(checkpoint(10))
    second = new_run(client, experiment)  # resumed from it, stopped before a checkpoint of its own
    second.log_resumed(first.run_id, checkpoint(10))
    assert checkpoints.find_checkpoint(client, second.run_id)[0] == first.run_id
    history = client.get_metric_history(second.run_id, "val_accuracy")
    assert [(m.step, m.value) for m in history] == [(10, 100 / 200)]  # the curve carried over
    third = new_run(client, experiment)
    third.log_resumed(first.run_id, checkpoint(10))
    third.save_checkpoint(checkpoint(20))  # its own: the one it continued is superseded, and deleted
    assert (
        checkpoint_files(client, first.run_id) == [] and checkpoints.find_checkpoint(client, third.run_id)[1].step == 20
    )


def test_a_checkpoint_that_cannot_be_read_is_said_so(store, tmp_path):
    client, experiment = store
    run = new_run(client, experiment)
    run.save_checkpoint(checkpoint(10))
    path = tmp_path / "artifacts" / run.run_id / "artifacts" / run.checkpoint
    path.write_bytes(b"half a checkpoint")
    with pytest.raises(CheckpointError, match="unreadable"):
        checkpoints.find_checkpoint(client, run.run_id)
    path.unlink()
    with pytest.raises(
        CheckpointError, match=f"run {run.run_id}'s checkpoint checkpoint/step-000000010.npz cannot be read"
    ):
        checkpoints.find_checkpoint(client, run.run_id)


def test_a_runs_training_images_come_from_its_configuration(store):
    client, experiment = store
    run_id = client.create_run(experiment).info.run_id
    for key, value in runs.config_params(TrainConfig(epochs=2, batch_size=100, train_limit=1000)).items():
        client.log_param(run_id, key, value)
    assert queries.images_of(client.get_run(run_id)) == 20 * 100
    older = client.create_run(experiment).info.run_id  # logged before epochs existed: train_steps decides
    for key in ("train_steps", "batch_size"):
        client.log_param(older, key, str(getattr(TrainConfig(), key)))
    assert queries.images_of(client.get_run(older)) == 799 * 128


def test_a_runs_predictions_give_its_logged_counts_exactly(store, mnist):
    """Each image's predicted class and label, logged beside the accuracies: counted again, they
    give the logged counts, on the run's own validation fold."""
    from sweep.seeds.choice import val_hits
    from sweep.training.model import Backend
    from sweep.training.train import train

    client, experiment = store
    config = TrainConfig(
        num_units=8, train_steps=20, eval_every=10, val_fold=3, train_limit=500, val_limit=300, test_limit=400
    )
    result = train(config, mnist, Backend("native", 2))
    run = new_run(client, experiment)
    run.log_accuracies(result.accuracies, result.last_point)
    run.log_predictions(result.predictions)
    logged, predictions = queries.accuracies_of(client.get_run(run.run_id)), queries.predictions_of(client, run.run_id)
    assert {k: v.dtype for k, v in predictions.items()} == dict.fromkeys(
        ("val", "val_labels", "test", "test_labels"), np.uint8
    )
    np.testing.assert_array_equal(predictions["val_labels"], mnist.fold(3).val.y[:300])  # fold 3's images, not fold 0's
    hits = predictions["test"] == predictions["test_labels"]
    assert logged["val_accuracy"] == Accuracy.of(val_hits(client, run.run_id))
    assert logged["test_accuracy"] == Accuracy.of(hits) and logged["test_accuracy_first128"] == Accuracy.of(hits[:128])
    assert (
        queries.predictions_of(client, new_run(client, experiment).run_id) is None
    )  # a run from before they were logged
