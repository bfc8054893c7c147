"""Promises the docs make that no other test held the tool to: retries of a dead worker's trial
are bounded, a stop by a budget is not a failure, the last curve point never prunes, hyperband
prunes, warm-start points are tagged and reported, trials.csv's cost and origin columns hold,
and a resumed trial keeps its checkpoint's backend and chain count."""

from __future__ import annotations

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from sweep.search.attributes import ATTR_DEATHS, ATTR_STOPPED
from sweep.search.workers import MAX_DEATHS, retry
from tests.conftest import cli
from tests.test_faults import RESUME, stores, write_spec


def failed_trial(study: optuna.Study, **user_attrs) -> optuna.trial.FrozenTrial:
    distributions = {"num_units": optuna.distributions.IntDistribution(8, 32)}
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.FAIL, params={"num_units": 16}, distributions=distributions, user_attrs=user_attrs
        )
    )
    return study.trials[-1]


def test_a_dead_workers_trial_is_queued_again_at_most_twice_and_a_stopped_one_always():
    study = optuna.create_study()
    first = failed_trial(study)  # its worker died
    assert retry(study, first) and study.trials[-1].user_attrs[ATTR_DEATHS] == 1
    second = failed_trial(study, **{ATTR_DEATHS: 1})  # the retry's worker died too
    assert retry(study, second) and study.trials[-1].user_attrs[ATTR_DEATHS] == MAX_DEATHS == 2
    third = failed_trial(study, **{ATTR_DEATHS: 2})  # and again: it would loop forever
    queued = len(study.trials)
    assert not retry(study, third) and len(study.trials) == queued
    stopped = failed_trial(study, **{ATTR_DEATHS: 2, ATTR_STOPPED: True})  # stopped on purpose: always
    assert retry(study, stopped) and study.trials[-1].user_attrs[ATTR_DEATHS] == 2
    assert study.trials[-1].state == TrialState.WAITING and study.trials[-1].params == {"num_units": 16}


@pytest.mark.slow  # it runs sweeps
def test_a_stop_by_the_budget_is_not_a_failure(tmp_path):
    """Four diverging trials, then one stopped by the budget: five failed trials in a row in
    Optuna, but the sweep ends as a stopped one does (exit 0), not as five failures do (exit 2)."""
    enqueued = "".join(
        f"[[enqueue]]\nnum_units = 16\nlearning_rate = {lr}\n" for lr in (2e37, 3e37, 5e37, 0.003)
    )  # distinct: enqueueing skips a repeat
    spec = write_spec(
        tmp_path, "budget", low=1e-3, high=1e38, baseline="learning_rate = 1e37", extra=enqueued, **RESUME
    )
    result = cli("--study", str(spec), "--trials", "9", "--max-images", "20k", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    study, _, _ = stores(tmp_path, "budget")
    states = [(t.state, bool(t.user_attrs.get("stopped"))) for t in study.trials]
    assert states[:5] == [(TrialState.FAIL, False)] * 4 + [(TrialState.FAIL, True)]
    assert "trials in a row failed" not in result.stderr


@pytest.mark.slow  # it runs sweeps
def test_the_last_curve_point_never_prunes(tmp_path):
    """A trial whose only curve point is its last is below the median there, yet completes: at
    the last point its images are spent, and its result is kept."""
    pruner = '[pruner]\ntype = "median"\nn_startup_trials = 1\nn_warmup_steps = 0\n'
    worse = "[[enqueue]]\nnum_units = 16\nlearning_rate = 1e-6\n"
    spec = write_spec(
        tmp_path, "last", steps=40, every=40, baseline="learning_rate = 0.01", extra=pruner + worse, low=1e-6, high=0.02
    )
    result = cli("--study", str(spec), "--trials", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    study, _, _ = stores(tmp_path, "last")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.COMPLETE]
    assert study.trials[1].value < study.trials[0].value  # below the median at its one point, and kept


@pytest.mark.slow  # it runs sweeps
def test_hyperband_prunes_a_trial(tmp_path):
    pruner = '[pruner]\ntype = "hyperband"\nmin_resource = 20\nmax_resource = 120\nreduction_factor = 2\n'
    worse = "".join(
        f"[[enqueue]]\nnum_units = 16\nlearning_rate = {lr}\n" for lr in (1e-6, 2e-6, 0.01, 3e-6, 0.012, 4e-6)
    )
    spec = write_spec(
        tmp_path,
        "band",
        steps=120,
        every=20,
        baseline="learning_rate = 0.01",
        extra=pruner + worse,
        low=1e-6,
        high=0.02,
    )
    result = cli("--study", str(spec), "--trials", "8", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    study, _, _ = stores(tmp_path, "band")
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert pruned and all(t.params["learning_rate"] < 1e-5 for t in pruned), [(t.state, t.params) for t in study.trials]


@pytest.mark.slow  # it runs sweeps
def test_warm_start_points_are_tagged_and_reported_and_trials_csv_says_where_each_came_from(tmp_path):
    source = write_spec(tmp_path, "source", steps=20, every=20)
    assert cli("--study", str(source), "--trials", "3", cwd=tmp_path).returncode == 0
    target = write_spec(tmp_path, "target", steps=20, every=20, extra='[warm_start]\nstudy = "source"\ntop = 2\n')
    result = cli("--study", str(target), "--trials", "4", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    study, client, _ = stores(tmp_path, "target")
    best = sorted(stores(tmp_path, "source")[0].trials, key=lambda t: (-t.value, t.number))[:2]
    for trial, source_trial in zip(study.trials[1:3], best, strict=True):
        run = client.get_run(trial.user_attrs["mlflow_run_id"])
        assert run.data.tags["sweep.warm_start"] == f"source#{source_trial.number}"
    table = pd.read_csv(tmp_path / "reports" / "target" / "trials.csv")
    assert list(table["origin"]) == ["baseline", *(f"warm start: source trial {t.number}" for t in best), "sampler"]
    assert list(table["train_images"]) == [20 * t.params.get("batch_size", 128) for t in study.trials]  # steps x batch
    assert list(table["spent_images"]) == list(table["train_images"])  # none stopped: each spent one training
    assert (table["spent_seconds"] > 0).all() and table["cpu"].notna().all()
    page = (tmp_path / "reports" / "target" / "report.md").read_text()
    section = page.split("## Warm-start points")[1].split("##")[0]
    assert all(f"warm start: source trial {t.number}" in section for t in best)


@pytest.mark.slow  # it runs sweeps
def test_a_resumed_trial_keeps_its_checkpoints_backend_and_chain_count(tmp_path):
    """Stopped on the keras backend, the trial resumes on keras though the rerun asks for native:
    the backend and chain count decide its rounding, so it continues as it began."""
    spec = write_spec(tmp_path, "resume", **RESUME)
    first = cli("--study", str(spec), "--trials", "1", "--max-images", "20k", "--lstm-backend", "keras", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    rerun = cli("--study", str(spec), "--trials", "1", "--lstm-backend", "native", cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    study, client, _ = stores(tmp_path, "resume")
    stopped, resumed = (client.get_run(t.user_attrs["mlflow_run_id"]).data.params for t in study.trials[:2])
    assert study.trials[1].state == TrialState.COMPLETE and study.trials[1].user_attrs["resumed"]["step"] > 0
    assert (resumed["lstm_backend"], resumed["lstm_chains"]) == (stopped["lstm_backend"], stopped["lstm_chains"])
    assert resumed["lstm_backend"] == "keras"
