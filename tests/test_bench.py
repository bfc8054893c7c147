"""The benchmarks run end to end. Their speeds are not asserted (speed is for the benchmark to
report, not for tests), but what they print must hang together: each ratio is the native
backend's samples/s over that row's, each median lies within its rounds; the ablation prints
one validation accuracy per recipe and seed, the images it gains and loses against the first
row, and never a test accuracy."""

import re
import subprocess
import sys

import optuna
import pandas as pd
import pytest

from tests.conftest import REPO, SMOKE, cli_env, in_process, log_counts, recorded_experiment


@pytest.mark.slow
def test_the_throughput_benchmark_prints_a_consistent_ratio_per_implementation():
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "throughput.py"), "--steps", "9", "--rounds", "2"],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    row = re.compile(r"^(.+?)\s+(\d+)\s+(\d+)-(\d+)\s+[\d.]+s\s+([\d.]+)x$", re.M)
    rows = {m.group(1).strip(): tuple(float(g) for g in m.groups()[1:]) for m in row.finditer(result.stdout)}
    assert set(rows) >= {
        "ours, native backend",
        "ours, keras backend",
        "tf1 graph (tutorial)",
        "keras.layers.LSTM + fit",
    }, result.stdout
    native = rows["ours, native backend"][0]
    for name, (median, low, high, ratio) in rows.items():
        assert low - 1 <= median <= high + 1, name  # a median of two rounds lies between them (printed rounded)
        assert ratio == pytest.approx(native / median, rel=0.01, abs=0.011), name


@pytest.mark.slow
def test_the_ablation_prints_validation_accuracy_per_recipe_and_seed_only():
    base = "epochs=1,train_limit=1000,val_limit=300,test_limit=128,num_units=16"
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "ablation.py"), "--base", base, "--seeds", "0,1", "", "shift_pixels=1"],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ") and not line.startswith("| recipe")]
    assert [row.split(" | ")[0] for row in rows] == ["| base", "| shift_pixels=1"]
    correct = []
    for row in rows:
        cells = re.findall(r"([\d.]+)% \((\d+)/300\)", row)
        assert len(cells) == 2 and all(float(p) == pytest.approx(100 * int(c) / 300, abs=0.006) for p, c in cells), row
        assert len(re.findall(r"%", row)) == 3, row  # two seeds' validation accuracies and their mean: no test accuracy
        correct.append(sum(int(c) for _, c in cells))
    assert rows[0].split(" | ")[4] == "—"  # the first row is what the others are paired with
    only_here, only_first, p = re.search(r"\+(\d+) / −(\d+) images, p = ([\d.e-]+)", rows[1]).groups()
    assert int(only_here) - int(only_first) == correct[1] - correct[0]  # the discordant images account for the gap
    assert 0 <= float(p) <= 1
    bad = subprocess.run(
        [sys.executable, str(REPO / "bench" / "ablation.py"), "shift_pixelz=1"],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode != 0 and "unknown setting 'shift_pixelz'" in bad.stderr


def search_bench():
    """bench/search.py as a module, to run in this process."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("search_bench", REPO / "bench" / "search.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def constructed_seed(folder, name: str, trials: list[tuple[int, int, int]]):
    """A seed's stores as a sweep leaves them, with no training: each trial (validation and test
    correct counts, training images spent) completed a minute after the one before."""
    import datetime

    client, experiment = recorded_experiment(folder, name)
    study = optuna.create_study(study_name=name, storage=f"sqlite:///{folder}/optuna.db", direction="maximize")
    start = datetime.datetime(2026, 12, 3, 12, 0)
    for number, (val, test, spent) in enumerate(trials):
        run = client.create_run(
            experiment, run_name=f"trial-{number:04d}", tags={"sweep.role": "trial", "optuna.trial_number": str(number)}
        )
        log_counts(client, run.info.run_id, val, test)
        study.add_trial(
            optuna.trial.FrozenTrial(
                number=number,
                trial_id=number,
                state=optuna.trial.TrialState.COMPLETE,
                value=val / 5000,
                params={"num_units": 100 + number},
                distributions={"num_units": optuna.distributions.IntDistribution(8, 512)},
                user_attrs={"mlflow_run_id": run.info.run_id, "train_images": spent, "train_seconds": 1.0},
                system_attrs={},
                intermediate_values={},
                datetime_start=start + datetime.timedelta(minutes=number),
                datetime_complete=start + datetime.timedelta(minutes=number + 1),
            )
        )


@pytest.mark.parametrize("second_test, reached", [(9925, True), (9915, False)])
def test_the_search_benchmark_and_the_reports_time_to_the_claim_agree_on_one_store(tmp_path, second_test, reached):
    """A seed is at the claim once its validation-chosen trial has 99.21% or more on all test
    images. Trial 1 is chosen from its end on; trial 2 never is (lower validation), whatever its test."""
    from sweep.report.write import write_report
    from sweep.search.storage import load_study
    from sweep.tracking.store import mlflow_client

    study_file = tmp_path / "made.toml"
    study_file.write_text(SMOKE.read_text().replace('name = "smoke"', 'name = "made"'))
    folder = tmp_path / "out" / "made" / "seed-0"
    constructed_seed(folder, "made", [(4900, 9900, 100_000), (4960, second_test, 500_000), (4950, 9950, 300_000)])
    bench = search_bench()
    assert (
        bench.main(["--study", str(study_file), "--seeds", "0", "--max-images", "900k", "--out", str(tmp_path / "out")])
        == 0
    )
    row = pd.read_csv(tmp_path / "out" / "search.csv").iloc[0]
    assert bool(row["reached"]) == reached and row["images_spent"] == 900_000 and row["trials"] == 3
    assert (row["images_to_claim"] == 600_000) if reached else pd.isna(row["images_to_claim"])  # trials 0 and 1
    assert (row["best_val"], row["chosen_test"]) == (0.992, second_test / 10000)
    write_report(
        load_study("made", f"sqlite:///{folder}/optuna.db"),
        mlflow_client(f"sqlite:///{folder}/mlflow.db"),
        tmp_path / "report",
    )
    page = (tmp_path / "report" / "report.md").read_text()
    if reached:
        assert "Time to the claim: 0.60 M training images and 2.0 min" in page and "(trial 1) had 99.25% [" in page
    else:
        assert "Time to the claim: no validation-best trial has reached 99.21% on all test images yet." in page
    assert not (folder / "sweep.log").exists()  # at the claim, or out of images: no sweep ran


@pytest.mark.slow  # it runs six short sweeps
def test_the_search_benchmark_runs_each_sampler_seed_in_its_own_stores_and_resumes(tmp_path):
    """Two sampler seeds of the smoke study (which tests on 500 images, so never reaches the
    claim) up to 12,000 training images each: the second trial of each is stopped by the budget;
    run again, nothing is trained; with a larger budget, each seed continues where it stopped.
    Run in this process, as a user's command line: TensorFlow is imported once."""
    out, bench = tmp_path / "out", search_bench()

    def run(budget: str):
        args = ("--study", "smoke", "--seeds", "0-1", "--out", str(out), "--max-images", budget)
        result = in_process(bench.main, "bench/search.py", *args, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        return pd.read_csv(out / "search.csv")

    table = run("12k")
    assert list(table.columns[:8]) == [
        "study",
        "seed",
        "reached",
        "images_to_claim",
        "images_spent",
        "trials",
        "best_val",
        "chosen_test",
    ]
    assert list(table["seed"]) == [0, 1] and not table["reached"].any() and table["images_to_claim"].isna().all()
    assert (table["images_spent"] >= 12_000).all() and (table["trials"] == 1).all()
    seeds = [(out / "smoke" / f"seed-{k}" / "study.toml").read_text() for k in (0, 1)]
    assert "seed = 0" in seeds[0] and "seed = 1" in seeds[1] and seeds[0].replace("seed = 0", "seed = 1") == seeds[1]
    for k in (0, 1):
        study = optuna.load_study(study_name="smoke", storage=f"sqlite:///{out}/smoke/seed-{k}/optuna.db")
        assert [t.state.name for t in study.trials] == ["COMPLETE", "FAIL", "WAITING"]  # stopped, queued again
    assert "0/2 seeds" not in (out / "search.md").read_text() and "| smoke (" in (out / "search.md").read_text()
    assert (out / "search.png").stat().st_size > 1000

    assert run("12k")[table.columns[:8]].equals(table[table.columns[:8]])  # nothing left to train
    run("20k")
    for k in (0, 1):
        study = optuna.load_study(study_name="smoke", storage=f"sqlite:///{out}/smoke/seed-{k}/optuna.db")
        assert study.trials[2].state.name == "COMPLETE" and study.trials[2].user_attrs["resumes"] == 1  # it continued
