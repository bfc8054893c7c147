"""Reports: the table matches the stores, the numbers are the library's, the verdict is right."""

import numpy as np
import optuna
import pandas as pd
import pytest
from mlflow import MlflowClient
from statsmodels.stats.proportion import proportion_confint

from sweep.report.claim import CLAIM_COUNTS, claim_verdict
from sweep.report.frontier import frontier_table, printable, read_rows, verdict
from sweep.report.write import write_report
from sweep.stats import Accuracy
from tests.conftest import REPO, SMOKE, cli, log_counts, recorded_experiment, tracking_store, trial_runs


def test_claim_interval_is_the_librarys():
    low, high = proportion_confint(127, 128, alpha=0.05, method="wilson")
    assert CLAIM_COUNTS.interval() == (low, high)
    assert 0.956 < low < 0.958 and 0.998 < high < 0.999


@pytest.mark.parametrize("correct, verdict", [(9960, "below"), (9921, "inside"), (9650, "above")])
def test_claim_verdict(correct, verdict):
    assert claim_verdict(*Accuracy(correct, 10000).interval()) == verdict


def test_report_of_a_swept_study(copy_of_swept):
    folder = copy_of_swept
    baseline = cli("baseline", "--seeds", "2", cwd=folder)  # the spec kept with the storage's only study
    assert baseline.returncode == 0, baseline.stderr
    assert "baseline of 'smoke'" in baseline.stdout and "/60 [" in baseline.stderr  # a bar over each seed's steps
    assert (
        "The study's baseline" in (folder / "reports" / "smoke" / "report.md").read_text()
    )  # baseline rewrote the report
    more = cli("baseline", "--study", str(SMOKE), "--seeds", "3", cwd=folder)
    assert [line.split()[1] for line in more.stdout.splitlines() if line.startswith("seed ")] == ["2"]
    tutorial = cli(
        "baseline", "--study", str(tiny_tutorial(folder)), "--seeds", "2", cwd=folder
    )  # the verdict's yardstick
    assert tutorial.returncode == 0, tutorial.stderr

    result = cli("report", cwd=folder)  # the storage's only study
    assert result.returncode == 0, result.stderr
    out = folder / "reports" / "smoke"
    table = pd.read_csv(out / "trials.csv")
    client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
    experiment = client.get_experiment_by_name("smoke")
    runs = trial_runs(client, experiment.experiment_id)
    assert list(table["number"]) == [int(r.data.tags["optuna.trial_number"]) for r in runs]
    assert list(table["mlflow_run_id"]) == [r.info.run_id for r in runs]
    assert list(table["test_accuracy"]) == [r.data.metrics["test_accuracy"] for r in runs]
    study = optuna.load_study(study_name="smoke", storage=f"sqlite:///{folder}/optuna.db")
    assert list(table["val_accuracy"]) == pytest.approx([t.value for t in study.trials])

    page = (out / "report.md").read_text()
    seeds = sorted(
        client.search_runs([experiment.experiment_id], "tags.`sweep.role` = 'baseline-seed'"),
        key=lambda r: int(r.data.params["seed"]),
    )
    assert [r.data.params["seed"] for r in seeds] == ["0", "1", "2"]
    mean = 100 * sum(r.data.metrics["test_accuracy"] for r in seeds) / 3
    assert "| mean " in page and f"{mean:.2f}" in page
    assert "127/128 = 99.22%" in page and "95.71% – 99.86%" in page
    best = table.loc[table["val_accuracy"].idxmax()]
    assert f"Trial {best['number']} (" in page and "99.21% lies above its 95% Wilson interval" in page
    for png in ("history.png", "slice.png", "val_vs_test.png", "full_vs_first128.png", "cost.png", "curves.png"):
        assert (out / png).stat().st_size > 1000 and f"]({png})" in page
    tutorial_runs = client.search_runs(
        [client.get_experiment_by_name("tutorial").experiment_id], "tags.`sweep.role` = 'baseline-seed'"
    )
    tutorial_mean = sum(r.data.metrics["test_accuracy"] for r in tutorial_runs) / 2
    assert (
        f"The tutorial's own recipe (40 steps), over 2 seeds: mean test accuracy {100 * tutorial_mean:.2f}% on the "
        "first 300 test images only"
    ) in page.split("## The claim")[0]  # in the verdict
    assert "<table" in (out / "report.html").read_text()
    parent = client.search_runs([experiment.experiment_id], "tags.`sweep.role` = 'study'")[0]
    logged = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert {"report/report.md", "report/report.html", "report/trials.csv", "report/history.png"} <= logged


def tiny_tutorial(folder):
    """A study file named "tutorial" (the verdict's yardstick) that trains in a second."""
    path = folder / "tutorial-tiny.toml"
    path.write_text(
        SMOKE.read_text()
        .replace('name = "smoke"', 'name = "tutorial"')
        .replace("train_steps = 60", "train_steps = 40")
        .replace("test_limit = 500", "test_limit = 300")
    )
    return path


def recorded_study(folder, name, *test_correct, vary: bool = False):
    """A real Optuna study and MLflow experiment holding finished trials with these test counts
    (all with the same validation count), as a sweep would have recorded them; no training
    needed to test what the report says."""
    client, experiment_id = recorded_experiment(folder, name)
    study = optuna.create_study(study_name=name, storage=f"sqlite:///{folder}/optuna.db", direction="maximize")
    params = {"num_units": 256, "learning_rate": 0.003, "batch_size": 128, "forget_bias": 1.0}
    distributions = {
        "num_units": optuna.distributions.IntDistribution(32, 512, log=True),
        "learning_rate": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True),
        "batch_size": optuna.distributions.IntDistribution(32, 512, log=True),
        "forget_bias": optuna.distributions.FloatDistribution(0, 3),
    }
    for number, correct in enumerate(test_correct):
        if vary:  # trials that differ: something for importances to weigh
            params = {
                "num_units": 32 + 40 * number,
                "learning_rate": 1e-4 * 1.5**number,
                "batch_size": 32 + 16 * (number % 5),
                "forget_bias": (number * 7 % 10) / 4,
            }
        tags = {"sweep.role": "trial", "optuna.trial_number": str(number)}
        run = client.create_run(experiment_id, run_name=f"trial-{number:04d}", tags=tags)
        log_counts(client, run.info.run_id, 4980, correct)
        study.add_trial(
            optuna.trial.create_trial(
                params=params,
                distributions=distributions,
                value=0.9 + correct / 1e5 if vary else 0.996,
                user_attrs={"mlflow_run_id": run.info.run_id},
            )
        )
    return study, client


@pytest.mark.parametrize(
    "correct, sentence",
    [(9960, "99.21% lies below its 95% Wilson interval"), (9650, "99.21% lies above its 95% Wilson interval")],
)
def test_verdict_in_the_report_flips_with_the_result(tmp_path, correct, sentence):
    study, client = recorded_study(tmp_path, f"s{correct}", correct)
    write_report(study, client, tmp_path / "out")
    page = (tmp_path / "out" / "report.md").read_text()
    assert sentence in page and f"{correct / 100:.2f}% [" in page
    assert "No baseline runs yet" in page
    reached = f"after the study's first trial started, the validation-best trial (trial 0) had {correct / 100:.2f}% ["
    assert (reached in page) == (correct >= 9921)
    assert ("no validation-best trial has reached 99.21%" in page) == (correct < 9921)


def test_a_tie_on_validation_is_broken_by_trial_order_and_said(tmp_path):
    study, client = recorded_study(tmp_path, "tie", 9915, 9933)
    write_report(study, client, tmp_path / "out")
    page = (tmp_path / "out" / "report.md").read_text()
    assert "Trial 0 (" in page and "99.21% lies inside its 95% Wilson interval" in page  # 99.15%: the earlier trial's
    assert (
        "Tied with it on validation, and not chosen because they came later (Optuna's rule): trial 1, test 99.33% ["
        in page
    )
    assert "Time to the claim: no validation-best trial has reached 99.21%" in page  # trial 1's 99.33% never chose


def test_report_on_a_missing_study_is_exit_2(tmp_path):
    for name in ("first", "second"):
        optuna.create_study(study_name=name, storage=f"sqlite:///{tmp_path}/optuna.db")
    tracking_store(tmp_path)  # an (empty) tracking store
    result = cli("report", "--study-name", "nothing", cwd=tmp_path)
    assert result.returncode == 2 and "no study 'nothing'" in result.stderr and "Traceback" not in result.stderr
    several = cli("report", cwd=tmp_path)  # which one? the error names them
    assert several.returncode == 2 and "holds 2 studies (first, second): pick one with --study-name" in several.stderr


def frame_of(*trials):
    """A trials table as `trials_frame` makes it, from (number, state, val, test, images per training,
    spent images, started minute, completed minute) tuples; validation n=5000, test n=10000."""
    import pandas as _pd

    start = _pd.Timestamp("2026-12-02 10:00")
    rows = []
    for number, state, val, test, per_training, spent, began, ended in trials:
        val, test = (float("nan"), float("nan")) if val is None else (val, test)
        rows.append(
            {
                "number": number,
                "state": state,
                "val_accuracy": val / 5000,
                "val_accuracy_correct": val,
                "val_accuracy_total": 5000,
                "test_accuracy": test / 10000,
                "test_accuracy_correct": test,
                "test_accuracy_total": 10000,
                "test_accuracy_first128": 1.0,
                "test_accuracy_first128_correct": 128,
                "test_accuracy_first128_total": 128,
                "train_images": per_training,
                "spent_images": spent,
                "spent_seconds": 60.0,
                "cpu": "Test CPU",
                "mlflow_run_id": f"run-{number}",
                "started": start + _pd.Timedelta(minutes=began),
                "completed": None if ended is None else start + _pd.Timedelta(minutes=ended),
            }
        )
    return _pd.DataFrame(rows)


def test_time_to_claim_counts_the_training_images_spent_until_then():
    from sweep.report.claim import time_to_claim

    frame = frame_of(
        (0, "COMPLETE", 4800, 9600, 100_000, 100_000, 0, 1),
        (1, "PRUNED", None, None, 1_000_000, 400_000, 1, 3),
        (2, "COMPLETE", 4960, 9915, 500_000, 500_000, 3, 6),  # best on validation, not yet the claim
        (3, "COMPLETE", 4970, 9930, 500_000, 500_000, 6, 10),  # best on validation, and the claim
    )
    assert time_to_claim(frame) == (
        "Time to the claim: 1.50 M training images and 10.0 min (on Test CPU) after the "
        "study's first trial started, the validation-best trial (trial 3) had 99.30% "
        "[99.12, 99.45] n=10000 on all test images."
    )
    worse_on_val = frame_of(
        *[
            (n, s, 4950 if n == 3 else v, t, i, sp, b, e)
            for n, s, v, t, i, sp, b, e in [
                (0, "COMPLETE", 4800, 9600, 1, 100_000, 0, 1),
                (3, "COMPLETE", 4970, 9930, 1, 500_000, 6, 10),
                (2, "COMPLETE", 4960, 9915, 1, 500_000, 3, 6),
            ]
        ]
    )
    assert "no validation-best trial has reached 99.21%" in time_to_claim(worse_on_val)  # test never chooses


def test_time_to_claim_counts_a_share_of_trials_running_in_parallel():
    from sweep.report.claim import time_to_claim

    frame = frame_of(
        (0, "COMPLETE", 4970, 9930, 200_000, 200_000, 0, 10),
        (1, "COMPLETE", 4900, 9900, 400_000, 400_000, 5, 15),  # half of it ran before trial 0 ended
    )
    assert time_to_claim(frame).startswith("Time to the claim: 0.40 M training images and 10.0 min")


def wrong_on(*spans: tuple[int, int]) -> np.ndarray:
    """Per validation image (5,000), right or wrong: wrong on these index ranges."""
    hits = np.ones(5000, bool)
    for low, high in spans:
        hits[low:high] = False
    return hits


def test_the_pareto_front_and_the_cheapest_as_good_as_the_best_image_by_image():
    from sweep.report.frame import pareto_front
    from sweep.report.sections import cheapest_as_good

    frame = frame_of(
        (0, "COMPLETE", 4800, 9600, 100_000, 0, 0, 1),  # the cheapest: on the front
        (1, "COMPLETE", 4960, 9915, 500_000, 0, 1, 2),  # on the front
        (2, "COMPLETE", 4960, 9915, 500_000, 0, 2, 3),  # the same as 1: on the front with it
        (3, "COMPLETE", 4950, 9915, 600_000, 0, 3, 4),  # dominated by 1
        (4, "COMPLETE", 4970, 9930, 1_100_000, 0, 4, 5),  # the best: on the front
        (5, "COMPLETE", 4970, 9930, 1_200_000, 0, 5, 6),  # as good, dearer: dominated
    )
    assert list(pareto_front(frame)["number"]) == [0, 1, 2, 4]
    hits = {
        "run-0": wrong_on((0, 200)),
        "run-1": wrong_on((10, 50)),
        "run-2": wrong_on((10, 50)),
        "run-3": wrong_on((10, 60)),
        "run-4": wrong_on((0, 30)),
        "run-5": wrong_on((0, 30)),
    }
    found = cheapest_as_good(frame, hits.get)
    # trial 1 is right where the best is wrong on 10 images, and wrong where it is right on 20: p = 0.099
    assert found.best["number"] == 4 and found.cheapest["number"] == 1
    assert (found.paired.only_a, found.paired.only_b) == (10, 20) and found.paired.p_value == pytest.approx(
        0.0987, abs=1e-4
    )
    assert cheapest_as_good(frame[frame["number"].isin([0, 4])], hits.get).cheapest["number"] == 4  # 0: p < 1e-40
    hits["run-1"] = hits["run-2"] = wrong_on((0, 40))  # now wrong wherever the best is, and on 10 more: p = 0.002
    assert cheapest_as_good(frame, hits.get).cheapest["number"] == 4
    unlogged = cheapest_as_good(frame, lambda run_id: None)  # runs from before predictions were logged
    assert unlogged.cheapest["number"] == 4 and unlogged.paired is None and unlogged.unpaired == 4
    # an epoch's last batch rounds the images up by a few: that is the same budget, and the best stays
    same_budget = frame_of((0, "COMPLETE", 4961, 9928, 220_048, 0, 0, 1), (1, "COMPLETE", 4961, 9921, 220_000, 0, 1, 2))
    assert (
        cheapest_as_good(same_budget, {"run-0": wrong_on((0, 39)), "run-1": wrong_on((0, 39))}.get).cheapest["number"]
        == 0
    )


def test_mcnemars_exact_test_on_the_images_where_two_models_disagree():
    from sweep.stats import Paired

    same = wrong_on((100, 160))
    assert Paired.of(same, same) == Paired(0, 0) and Paired.of(same, same).p_value == 1.0
    textbook = Paired(3, 9)  # 12 discordant pairs, 3 one way: 2 x (1 + 12 + 66 + 220) / 2^12
    assert textbook.p_value == pytest.approx(2 * 299 / 4096, rel=1e-9)
    assert Paired(9, 3).p_value == textbook.p_value  # two-sided
    a, b = wrong_on((0, 5)), wrong_on((5, 20))
    assert Paired.of(a, b) == Paired(15, 5)  # a right where b is wrong on 15, wrong where b is right on 5


def test_fanova_weighs_the_hyperparameters_from_ten_completed_trials(tmp_path):
    nine, _ = recorded_study(tmp_path, "nine", *range(9900, 9909), vary=True)
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    write_report(nine, client, tmp_path / "nine")
    assert "fANOVA importances need 10" in (tmp_path / "nine" / "report.md").read_text()
    ten, _ = recorded_study(tmp_path, "ten", *range(9900, 9910), vary=True)
    write_report(ten, client, tmp_path / "ten")
    page = (tmp_path / "ten" / "report.md").read_text()
    assert "Optuna's fANOVA importances over 10 completed trials (validation accuracy):" in page
    importances = optuna.importance.get_param_importances(
        ten, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)
    )
    for name, value in importances.items():
        assert f"| {name} " in page and f"{round(value, 3):.4g}" in page


def confirmed_study(folder, name: str, epochs: int, test_by_seed: list[int], val: int = 4960):
    """A study whose one trial confirm trained with seeds 0..S-1 (seed 0: the trial's own run),
    recorded as a sweep and confirm record them, with these test counts (and `val` of 5,000 on
    every seed's fold); no training."""
    client, experiment = recorded_experiment(folder, name)
    study = optuna.create_study(study_name=name, storage=f"sqlite:///{folder}/optuna.db", direction="maximize")
    own = None
    for seed, correct in enumerate(test_by_seed):
        role = "trial" if seed == 0 else "confirm-seed"
        run = client.create_run(experiment, tags={"sweep.role": role, "optuna.trial_number": "0"})
        params = {"seed": seed, "val_fold": seed, "epochs": epochs, "batch_size": 100, "num_units": 300}
        for key, value in params.items():
            client.log_param(run.info.run_id, key, str(value))
        log_counts(client, run.info.run_id, val, correct)
        own = own or run.info.run_id
    study.add_trial(
        optuna.trial.create_trial(
            params={"num_units": 300},
            value=0.992,
            distributions={"num_units": optuna.distributions.IntDistribution(8, 512)},
            user_attrs={"mlflow_run_id": own, "train_images": 1000},
        )
    )


def test_the_frontier_is_rebuilt_from_the_stores_cheapest_budget_first(tmp_path):
    confirmed_study(tmp_path, "six-epochs", 6, [9930, 9935, 9940])  # mean 99.35%, interval 99.23-99.47%: beaten
    confirmed_study(tmp_path, "two-epochs", 2, [9915, 9920, 9925])  # mean 99.20%: not reached
    confirmed_study(tmp_path, "four-epochs", 4, [9900, 9925, 9950])  # mean 99.25%, interval across 99.21%: matched
    optuna.create_study(study_name="unconfirmed", storage=f"sqlite:///{tmp_path}/optuna.db")  # no point on the frontier
    result = cli("frontier", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(tmp_path / "reports" / "frontier" / "frontier.csv")
    assert list(table["study"]) == ["two-epochs", "four-epochs", "six-epochs"]
    assert list(table["images per training"]) == [110_000, 220_000, 330_000]  # ceil(epochs x 55,000 / 100) x 100
    assert list(table["claim"]) == ["not reached", "matched", "beaten"]
    assert list(table["test by seed, %"]) == ["99.15 / 99.20 / 99.25", "99.00 / 99.25 / 99.50", "99.30 / 99.35 / 99.40"]
    assert table["mean test, %"].round(4).tolist() == [99.2, 99.25, 99.35] and set(table["seeds"]) == {3}
    assert set(table["store"]) == {"sqlite:///optuna.db"}  # the default storage, as given
    assert table["interval low, %"].round(2).tolist() == [99.08, 98.63, 99.23]  # mean ∓ t(2) x sd / sqrt(3)
    assert table["interval high, %"].round(2).tolist() == [99.32, 99.87, 99.47]
    page = (tmp_path / "reports" / "frontier" / "frontier.md").read_text()
    assert "The claim is first matched (mean ≥ 99.21%) at 0.22 M training images per training (four-epochs" in page
    assert "The claim is first beaten (whole interval above) at 0.33 M training images per training (six-epochs" in page
    assert "| 99.20          | 99.08 – 99.32          | not reached |" in page  # the interval as people read it
    assert (tmp_path / "reports" / "frontier" / "frontier.png").stat().st_size > 1000
    none = cli("frontier", "--study-name", "unconfirmed", cwd=tmp_path)
    assert none.returncode == 2 and "no study here has been confirmed over seeds yet" in none.stderr
    elsewhere = tmp_path / "elsewhere"  # another sweep's folder, its own stores: the points of both, in one table
    elsewhere.mkdir()
    confirmed_study(elsewhere, "ten-epochs", 10, [9940, 9945, 9950])
    confirmed_study(elsewhere, "two-epochs", 2, [9930, 9935, 9940], val=4950)  # a name the first store holds too
    both = cli("frontier", "--store", str(tmp_path), "--store", str(elsewhere), "--out", "both", cwd=tmp_path)
    assert both.returncode == 0, both.stderr
    rows = pd.read_csv(tmp_path / "both" / "frontier.csv")
    assert list(
        zip(rows["study"], rows["store"], rows["mean test, %"].round(4), rows["on the frontier"], strict=True)
    ) == [
        ("two-epochs", str(tmp_path), 99.2, True),  # its validation is the higher: test never chooses
        ("two-epochs", str(elsewhere), 99.35, False),
        ("four-epochs", str(tmp_path), 99.25, True),
        ("six-epochs", str(tmp_path), 99.35, True),
        ("ten-epochs", str(elsewhere), 99.45, True),
    ]
    assert rows["mean val, %"].round(2).tolist() == [99.2, 99.0, 99.2, 99.2, 99.2]
    page = (tmp_path / "both" / "frontier.md").read_text()
    assert "first beaten (whole interval above) at 0.33 M" in page and "no: lower validation" in page
    typo = cli("frontier", "--store", str(elsewhere), "--study-name", "ten-epoch", cwd=tmp_path)
    assert typo.returncode == 2 and "no study named 'ten-epoch' in the stores given" in typo.stderr


def test_the_frontier_merges_rows_written_from_stores_that_are_not_here(tmp_path):
    here, away = tmp_path / "here", tmp_path / "away"  # away: a machine whose stores never come here
    for folder in (here, away):
        folder.mkdir()
    confirmed_study(away, "two-epochs", 2, [9915, 9920, 9925])
    confirmed_study(away, "six-epochs", 6, [9930, 9935, 9940])
    assert cli("frontier", "--store", str(away), "--out", "away-out", cwd=tmp_path).returncode == 0
    written = tmp_path / "away-out" / "frontier.csv"
    alone = cli("frontier", "--rows", str(written), "--out", "again", cwd=tmp_path)  # no store read at all
    assert alone.returncode == 0, alone.stderr
    assert (tmp_path / "again" / "frontier.csv").read_text() == written.read_text()
    confirmed_study(here, "two-epochs", 2, [9930, 9935, 9940], val=4970)  # better validation: the budget's point
    merged = cli("frontier", "--rows", str(written), "--store", str(here), "--out", "merged", cwd=tmp_path)
    assert merged.returncode == 0, merged.stderr
    rows = pd.read_csv(tmp_path / "merged" / "frontier.csv")
    assert list(zip(rows["study"], rows["store"], rows["on the frontier"], strict=True)) == [
        ("two-epochs", str(away), False),
        ("two-epochs", str(here), True),
        ("six-epochs", str(away), True),
    ]
    assert rows["mean test, %"].round(4).tolist() == [99.2, 99.35, 99.35]
    picked = cli("frontier", "--rows", str(written), "--study-name", "six-epochs", "--out", "six", cwd=tmp_path)
    assert picked.returncode == 0 and list(pd.read_csv(tmp_path / "six" / "frontier.csv")["study"]) == ["six-epochs"]
    (tmp_path / "short.csv").write_text(written.read_text().replace("mean val, %", "mean value"))
    (tmp_path / "words.csv").write_text(written.read_text().replace("99.2,", "high,"))
    for name, message in [
        ("short.csv", "not a frontier.csv (no column 'mean val, %')"),
        ("words.csv", "holds something other than numbers"),
        ("absent.csv", "cannot read it"),
    ]:
        bad = cli("frontier", "--rows", name, cwd=tmp_path)
        assert bad.returncode == 2 and message in bad.stderr and "Traceback" not in bad.stderr, bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1


def written_row(study: str, images: int, val_by_fold: list[float]) -> dict:
    """A frontier.csv row as another machine wrote it: what chooses is the mean validation."""
    return {
        "study": study,
        "store": "away",
        "images per training": images,
        "search images": 2 * images,
        "trial": 1,
        "configuration": "num_units=300",
        "test by seed, %": "99.20 / 99.30",
        "seeds": 2,
        "mean val, %": float(np.mean(val_by_fold)),
        "mean test, %": 99.25,
        "interval low, %": 98.61,
        "interval high, %": 99.89,
        "claim": "matched",
    }


def test_of_two_studies_tied_on_validation_the_cheaper_is_the_budgets_point():
    """The same images right over the folds, averaged in another order, are a tie: not decided by a
    float's last bit (these means are 99.204 and 99.20400000000001)."""
    costlier = written_row("costlier", 220_065, [99.32, 99.00, 99.06, 99.22, 99.42])  # 24,801 of 25,000
    cheaper = written_row("cheaper", 220_032, [99.08, 98.98, 99.32, 99.28, 99.36])  # 24,801 too
    lower = written_row("lower", 220_000, [99.32, 99.00, 99.22, 99.06, 99.40])  # one image fewer
    later = written_row("later", 220_032, [99.08, 98.98, 99.28, 99.32, 99.36])  # cheaper's, listed after it
    table = frontier_table([], earlier=[costlier, lower, cheaper, later])
    assert list(table["study"]) == ["lower", "cheaper", "later", "costlier"]  # cheapest first, stably
    assert list(table["on the frontier"]) == [False, True, False, False]
    assert list(printable(table)["on the frontier"]) == [
        "no: lower validation",
        "yes",
        "no: tied on validation, not cheaper",
        "no: tied on validation, not cheaper",
    ]


def test_the_shipped_frontier_rows_hold_each_rows_own_mean_and_verdict():
    """docs/frontier.csv is the README's picture: its numbers must agree with themselves."""
    for row in read_rows(REPO / "docs" / "frontier.csv"):
        by_seed = [float(v) for v in row["test by seed, %"].split(" / ")]
        assert len(by_seed) == row["seeds"] and np.mean(by_seed) == pytest.approx(row["mean test, %"], abs=1e-9)
        assert row["interval low, %"] < row["mean test, %"] < row["interval high, %"]
        assert row["claim"] == verdict(row["mean test, %"] / 100, row["interval low, %"] / 100), row
