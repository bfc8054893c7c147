"""`sweep.py confirm`: the top trials trained again over seeds, chosen on mean validation
accuracy, resumable; and the report's verdict on a confirmed configuration."""

from __future__ import annotations

import signal
import statistics

import numpy as np
import pandas as pd
import pytest

from sweep.report.seeds import confirm_tables, verdict_section
from sweep.seeds.choice import Choice, Confirmed, by_mean_validation, choose
from sweep.stats import Accuracy
from sweep.tracking import queries, schema
from tests.conftest import SMOKE, cli, finish, output, wait_for
from tests.test_faults import RESUME, checkpointed, final_model, stores, write_spec


def seed_runs(client, experiment_id, status="FINISHED"):
    """(trial number, seed) of confirm's seed runs with this status."""
    runs = client.search_runs([experiment_id], f"tags.`sweep.role` = 'confirm-seed' and attributes.status = '{status}'")
    return sorted((int(r.data.tags["optuna.trial_number"]), int(r.data.params["seed"])) for r in runs)


def mean_val_by_trial(client, experiment_id, study):
    """Each confirmed trial's mean validation accuracy, read from MLflow here, not by the tool."""
    runs = client.search_runs([experiment_id], "tags.`sweep.role` = 'confirm-seed' and attributes.status = 'FINISHED'")
    vals: dict[int, list[float]] = {}
    for run in runs:
        vals.setdefault(int(run.data.tags["optuna.trial_number"]), []).append(run.data.metrics["val_accuracy"])
    for number in vals:
        own = client.get_run(study.trials[number].user_attrs["mlflow_run_id"])
        vals[number].append(own.data.metrics["val_accuracy"])
    return {n: statistics.mean(v) for n, v in vals.items()}


def test_confirm_trains_the_missing_seeds_of_the_top_trials_and_chooses_on_mean_validation(copy_of_swept):
    folder = copy_of_swept
    result = cli("confirm", "--top", "2", "--seeds", "2", cwd=folder)
    assert result.returncode == 0, result.stderr
    study, client, experiment_id = stores(folder, "smoke")
    done = sorted((t for t in study.trials if t.value is not None), key=lambda t: (-t.value, t.number))
    top = [t.number for t in done[:2]]
    assert seed_runs(client, experiment_id) == sorted((n, 1) for n in top)  # seed 0 is each trial's own run
    for number in top:
        [run] = [
            r
            for r in client.search_runs([experiment_id], f"tags.`optuna.trial_number` = '{number}'")
            if r.data.tags["sweep.role"] == "confirm-seed"
        ]
        own = client.get_run(study.trials[number].user_attrs["mlflow_run_id"])
        differing = {k for k, v in own.data.params.items() if run.data.params.get(k) != v}
        assert differing == {"seed", "val_fold"}  # the trial's configuration, another seed on its own fold
        assert run.data.params["seed"] == run.data.params["val_fold"] == "1"
        [parent] = client.search_runs([experiment_id], "tags.`sweep.role` = 'confirm'")
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
    means = mean_val_by_trial(client, experiment_id, study)
    best = max(means, key=lambda n: (means[n], -n))
    assert f"Best on mean validation accuracy over 2 seeds (test never decides): trial {best}," in result.stdout
    chosen = int(result.stdout.split("Chosen: trial ")[1].split(",")[0].split(".")[0])
    if chosen != best:  # a cheaper one, which the paired test could not tell apart from the best
        assert f"trial {chosen}" in result.stdout.split("Cannot be told apart from it")[1].splitlines()[0]
    assert "registered: models:/smoke@best (version " in result.stdout and f", trial {chosen})" in result.stdout
    assert client.get_model_version_by_alias("smoke", "best").run_id == study.trials[chosen].user_attrs["mlflow_run_id"]

    assert "## Confirmed over seeds" in (folder / "reports" / "smoke" / "report.md").read_text()  # confirm rewrote it
    again = cli("confirm", "--top", "2", "--seeds", "2", cwd=folder)
    assert again.returncode == 0, again.stderr
    assert " seed 1  val " not in again.stdout  # nothing trained again
    assert seed_runs(client, experiment_id) == sorted((n, 1) for n in top)

    later = cli("--study", str(SMOKE), "--trials", str(len(study.trials) + 1), cwd=folder)
    assert later.returncode == 0, later.stderr
    assert "models:/smoke@best stays confirm's choice" in later.stdout  # one seed does not overrule five
    assert client.get_model_version_by_alias("smoke", "best").run_id == study.trials[chosen].user_attrs["mlflow_run_id"]

    report = cli("report", cwd=folder)
    assert report.returncode == 0, report.stderr
    page = (folder / "reports" / "smoke" / "report.md").read_text()
    assert page.split("\n\n")[1] == "## Verdict"  # the report leads with it
    assert f"Trial {chosen}'s configuration, chosen by confirm over 2 seeds" in page
    assert "## Confirmed over seeds" in page


def confirmed(
    number: int, vals: list[int], tests: list[int], search_val: float = 0.995, images: int = 220_000
) -> Confirmed:
    """A configuration with these correct counts of 5,000 validation and 10,000 test images."""
    seeds = range(len(vals))
    return Confirmed(
        number,
        {"num_units": 128},
        search_val,
        {
            seed: {
                "val_accuracy": Accuracy(v, 5000),
                "test_accuracy": Accuracy(t, 10000),
                "test_accuracy_first128": Accuracy(127, 128),
            }
            for seed, (v, t) in enumerate(zip(vals, tests, strict=True))
        },
        {seed: (images, 60.0 + seed) for seed in seeds},
        {seed: seed % 12 for seed in seeds},
        {seed: f"run-{number}-{seed}" for seed in seeds},
        "Test CPU",
    )


def unpaired(found: list[Confirmed]) -> Choice:
    """confirm's choice among configurations whose runs logged no predictions: the best on mean validation."""
    return Choice(found, {c.number: None for c in found[1:]}, found[0])


def test_test_accuracy_never_decides_between_configurations():
    better_on_test = confirmed(3, [4950, 4952, 4948], [9950, 9952, 9951])
    better_on_val = confirmed(7, [4960, 4958, 4961], [9910, 9905, 9912])
    found = by_mean_validation([better_on_test, better_on_val])
    assert [c.number for c in found] == [7, 3]
    summary, _, lines = confirm_tables(unpaired(found))
    assert "trial 7" in lines[0] and lines[-3] == "Chosen: trial 7."
    assert (
        lines[-2]
        == "Winner's curse: trial 7's search-time validation score, 99.50%, sits 0.31 pp above its own seed mean."
    )
    assert lines[-1].endswith("Training seconds are optimizer time, measured on Test CPU.")
    assert list(summary["images per training"]) == ["0.22 M", "0.22 M"] and list(summary["train s, mean"]) == [
        "61",
        "61",
    ]
    assert list(summary["chosen"]) == ["yes", ""]


def test_the_verdict_says_where_the_claim_lies_against_the_seed_interval():
    none = pd.DataFrame(columns=["test_accuracy", "test_accuracy_total", "test_accuracy_first128"])

    def verdict(tests):
        return verdict_section(unpaired([confirmed(1, [4960] * 5, tests)]), pd.DataFrame(), none, "s")

    above, below = verdict([9930, 9935, 9928, 9932, 9931]), verdict([9900, 9905, 9898, 9902, 9901])
    across = verdict([9915, 9925, 9920, 9930, 9910])
    interval = "the 95% t-interval of that mean over the 5 seeds"
    assert f"99.21% lies below {interval} (99.28% – 99.34%): the result beats the claim." in above.text[0]
    assert f"99.21% lies above {interval} (98.98% – 99.04%): the result falls short of the claim." in below.text[0]
    assert f"99.21% lies inside {interval}" in across.text[0]
    assert "mean test accuracy of 99.31% on all test images (n=10000 per seed" in above.text[0]
    assert "5 of 5 seeds at 99.21% or above" in above.text[0] and "0 of 5 seeds" in below.text[0]
    assert "python sweep.py baseline --study tutorial --seeds 5" in above.text[1]


def hits(wrong: range) -> np.ndarray:
    """Per validation image (5,000), right or wrong: wrong on these."""
    found = np.ones(5000, bool)
    found[list(wrong)] = False
    return found


def test_confirm_prefers_the_cheaper_candidate_when_the_paired_test_cannot_tell_them_apart():
    best = confirmed(4, [4962, 4962, 4962], [9930] * 3, images=330_000)  # best on mean validation, dearer
    cheap = confirmed(9, [4960, 4960, 4960], [9920] * 3, images=220_000)
    each_seed = {f"run-4-{s}": hits(range(38)) for s in range(3)} | {
        f"run-9-{s}": hits(range(10, 50)) for s in range(3)
    }
    choice = choose([best, cheap], each_seed.get)  # per seed: 10 images only 9 gets right, 22 only 4: p = 0.11 pooled
    paired, seeds = choice.paired[9]
    assert (paired.only_a, paired.only_b, seeds) == (30, 36, 3) and paired.p_value > 0.05
    assert choice.chosen is cheap and choice.apart(9) is False
    _, _, lines = confirm_tables(choice)
    assert (
        "Cannot be told apart from it (McNemar's exact test on the validation images both saw, p ≥ 0.05): trial 9."
        in lines
    )
    assert "Chosen: trial 9, the cheapest of those, at 0.22 M training images per training against 0.33 M." in lines

    each_seed |= {
        f"run-9-{s}": hits(range(1, 40)) for s in range(3)
    }  # per seed 1 image only 9 gets, 2 only 4: p = 0.51
    assert choose([best, cheap], each_seed.get).chosen is cheap
    each_seed |= {f"run-9-{s}": hits(range(0, 60)) for s in range(3)}  # 22 more wrong per seed: p < 1e-10
    apart = choose([best, cheap], each_seed.get)
    assert apart.chosen is best and apart.apart(9) is True
    assert not any(line.startswith("Cannot be told apart") for line in confirm_tables(apart)[2])
    dearer = choose([cheap, best], {k: hits(range(40)) for k in each_seed}.get)  # the best is already the cheaper
    assert dearer.chosen is cheap and dearer.apart(4) is False


@pytest.mark.slow
def test_ctrl_c_during_confirm_then_rerun_completes_without_duplicate_seeds(copy_of_swept, procs):
    folder = copy_of_swept
    _, client, experiment_id = stores(folder, "smoke")
    process = procs.sweep(folder, "confirm", "--top", "3", "--seeds", "3")
    wait_for(lambda: seed_runs(client, experiment_id), process, what="the first seed")  # more to go
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=120) == 130, output(process)
    err = finish(process)
    assert "run the same command again to continue" in err and "Traceback" not in err
    recorded = seed_runs(client, experiment_id)
    assert 1 <= len(recorded) < 6
    assert not any(s == 2 for _, s in recorded) or all((n, 1) in recorded for n in (0, 1, 2))  # seeds in rounds
    assert not seed_runs(client, experiment_id, "RUNNING")

    result = cli("confirm", "--top", "3", "--seeds", "3", cwd=folder)
    assert result.returncode == 0, result.stderr
    finished = seed_runs(client, experiment_id)
    assert finished == [(n, s) for n in (0, 1, 2) for s in (1, 2)]  # the smoke study's 3 trials, seed 0 their own
    assert all(pair in finished for pair in recorded)  # what was recorded before Ctrl-C was kept, not redone


@pytest.mark.slow
def test_a_confirm_seed_stopped_midway_resumes_from_its_checkpoint_bitwise(tmp_path, procs, mnist):
    spec = write_spec(tmp_path, "resume", **RESUME)
    assert cli("--study", str(spec), "--trials", "1", cwd=tmp_path).returncode == 0
    process = procs.sweep(tmp_path, "confirm", "--top", "1", "--seeds", "2")
    _, client, experiment_id = stores(tmp_path, "resume")
    wait_for(
        lambda: checkpointed(tmp_path, "resume", at_least=80, role="confirm-seed"),
        process,
        what="seed 1's second curve point",
    )
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 143, output(process)
    [killed] = client.search_runs([experiment_id], "tags.`sweep.role` = 'confirm-seed'")
    assert killed.info.status == "KILLED" and schema.TAG_CHECKPOINT in killed.data.tags

    rerun = cli("confirm", "--top", "1", "--seeds", "2", cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    [finished] = client.search_runs(
        [experiment_id], "tags.`sweep.role` = 'confirm-seed' and attributes.status = 'FINISHED'"
    )
    assert finished.data.tags[schema.TAG_RESUMED_FROM] == killed.info.run_id and finished.data.params["seed"] == "1"
    assert (
        f"seed 1 resumes its stopped run from its checkpoint at step {finished.data.tags[schema.TAG_RESUMED_AT]}"
        in rerun.stdout
    )
    from sweep.training.model import Backend
    from sweep.training.train import train

    straight = train(queries.config_of(finished), mnist, Backend.from_params(finished.data.params))  # never stopped
    assert all(
        np.array_equal(a, b)
        for a, b in zip(final_model(client, finished.info.run_id), straight.model.get_weights(), strict=True)
    )
    assert queries.accuracies_of(finished) == straight.accuracies
    assert schema.TAG_CHECKPOINT not in client.get_run(killed.info.run_id).data.tags  # superseded, then deleted
