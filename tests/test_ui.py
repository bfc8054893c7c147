"""Browsing results as a person would: the MLflow UI in headless Chromium, and optuna-dashboard.

Screenshots land in test-artifacts/ (kept by CI as the test's artifacts)."""

from __future__ import annotations

import itertools
import json
import sys
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.conftest import REPO, Processes, cli, free_port, serve, slow_fixture

SHOTS = REPO / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@slow_fixture(scope="module")
def mlflow_ui(swept):
    folder, _ = swept
    port, servers = free_port(), Processes()
    serve(
        servers,
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{folder}/mlflow.db",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        f"http://127.0.0.1:{port}/health",
        folder,
    )
    yield f"http://127.0.0.1:{port}", MlflowClient(f"sqlite:///{folder}/mlflow.db")
    servers.kill_all()


@slow_fixture(scope="module")
def page():
    playwright = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is not installed (apt-get install chromium); .ci/run installs it")
    SHOTS.mkdir(exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser.new_page(viewport={"width": 1600, "height": 900})
        browser.close()


def test_experiment_page_shows_the_study_and_its_nested_trials(mlflow_ui, page):
    url, client = mlflow_ui
    experiment = client.get_experiment_by_name("smoke")
    # MLflow 3 opens experiments on the GenAI view; the runs table is the "Model training" one.
    page.goto(f"{url}/#/experiments/{experiment.experiment_id}/runs?workflowType=machine_learning")
    page.get_by_text("study-smoke").wait_for(timeout=60_000)
    assert page.get_by_text("trial-0000").count() == 0  # nested runs start collapsed under their parent
    study_row = page.locator(".ag-row", has_text="study-smoke").first
    study_row.locator("button[data-component-id*='runnamecellrenderer']").click()  # expand the parent
    for name in ("trial-0000", "trial-0001", "trial-0002"):
        page.get_by_text(name, exact=True).wait_for(timeout=30_000)
    assert "Smoke test: the tutorial network" in page.inner_text("body")  # the experiment's description
    page.screenshot(path=str(SHOTS / "mlflow-experiment.png"))


def test_trial_page_shows_its_accuracies_and_state(mlflow_ui, page):
    url, client = mlflow_ui
    experiment = client.get_experiment_by_name("smoke")
    run = client.search_runs([experiment.experiment_id], "tags.`optuna.trial_number` = '1'")[0]
    page.goto(f"{url}/#/experiments/{experiment.experiment_id}/runs/{run.info.run_id}")
    page.get_by_text("trial-0001").first.wait_for(timeout=60_000)
    page.get_by_text("test_accuracy", exact=True).first.wait_for(timeout=30_000)
    lines = page.inner_text("body").splitlines()
    # The metrics table, name then value, comes first: sections below it (logged models, which
    # load when they will) may name a metric again beside something else.
    shown: dict[str, str] = {}
    for name, value in itertools.pairwise(lines[lines.index("Metric") :]):
        shown.setdefault(name, value)
    for key in ("val_accuracy", "test_accuracy", "test_accuracy_first128", "test_accuracy_correct", "train_images"):
        assert float(shown[key]) == run.data.metrics[key], key  # the logged value, as the page shows it
    for key in ("val_accuracy", "test_accuracy", "test_accuracy_first128"):  # each accuracy is its counts' ratio
        assert float(shown[key]) == float(shown[f"{key}_correct"]) / float(shown[f"{key}_total"]), key
    page.screenshot(path=str(SHOTS / "mlflow-trial.png"), full_page=True)


def test_parent_run_carries_the_report(mlflow_ui, page):
    url, client = mlflow_ui
    experiment = client.get_experiment_by_name("smoke")
    parent = client.search_runs([experiment.experiment_id], "tags.`sweep.role` = 'study'")[0]
    page.goto(f"{url}/#/experiments/{experiment.experiment_id}/runs/{parent.info.run_id}/artifacts")
    page.get_by_text("report", exact=True).first.wait_for(timeout=60_000)
    page.get_by_text("report", exact=True).first.click()
    page.get_by_text("report.html").first.wait_for(timeout=30_000)
    page.screenshot(path=str(SHOTS / "mlflow-parent-artifacts.png"))
    page.goto(f"{url}/#/experiments/{experiment.experiment_id}/runs/{parent.info.run_id}")
    page.get_by_text("has the best validation accuracy").first.wait_for(timeout=60_000)  # its description
    page.screenshot(path=str(SHOTS / "mlflow-parent.png"), full_page=True)


def test_optuna_dashboard_serves_the_study(swept, procs):
    folder, _ = swept
    port = free_port()
    dashboard = str(Path(sys.executable).parent / "optuna-dashboard")  # the console script beside this Python
    command = [dashboard, f"sqlite:///{folder}/optuna.db", "--host", "127.0.0.1", "--port", str(port)]
    serve(procs, command, f"http://127.0.0.1:{port}/api/studies", folder)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=10) as answer:
        studies = json.load(answer)["study_summaries"]
    assert [s["study_name"] for s in studies] == ["smoke"]


def test_report_page_leads_with_a_verdict_and_every_image_loads(copy_of_swept, page):
    folder = copy_of_swept
    result = cli("report", "--out", "reports/for-the-browser", cwd=folder)
    assert result.returncode == 0, result.stderr
    page.goto((folder / "reports" / "for-the-browser" / "report.html").as_uri())
    body = page.inner_text("body")
    assert "has the best validation accuracy" in body and "lies above its 95% Wilson interval" in body
    assert "on the first 500 test images only" in body  # the smoke study's slice, not "all test images"
    assert "Too few trials to say" in body  # no ±1 rank correlation from 3 trials
    images = page.evaluate(
        "Array.from(document.images).map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0])"
    )
    assert sorted(src for src, _ in images) == [
        "cost.png",
        "curves.png",
        "full_vs_first128.png",
        "history.png",
        "slice.png",
        "val_vs_test.png",
    ]
    assert all(loaded for _, loaded in images), images
    assert "0.001000" not in body and "1.000000" not in body  # numbers as people write them
    page.set_viewport_size({"width": 1280, "height": 900})
    page.screenshot(path=str(SHOTS / "report.png"), full_page=True)
