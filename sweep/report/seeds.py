"""The report's sections about seed runs: the verdict (the configuration confirm chose, over
seeds, against the claim), the baseline over seeds, and confirm's tables."""

from __future__ import annotations

import statistics

import pandas as pd

from sweep.report.claim import CLAIM, CLAIM_COUNTS, THE_CLAIM, pct, test_set, where_claim
from sweep.report.frame import accuracy_of, best_row, completed
from sweep.report.page import Section, fmt
from sweep.search.spec import DEFAULT_STUDY
from sweep.seeds.choice import ALPHA, Choice, Confirmed
from sweep.stats import ACCURACIES, FIRST128_ACCURACY, TEST_ACCURACY, VAL_ACCURACY, Accuracy, images, seed_interval


def mean_sd(c: Confirmed, metric: str) -> str:
    return f"{100 * c.mean(metric):.2f} ± {100 * c.sd(metric):.2f}"


def paired_cell(choice: Choice, c: Confirmed) -> str:
    """How a candidate compares with the best on mean validation, image by image."""
    if c is choice.ranked[0]:
        return "best on mean val"
    found = choice.paired.get(c.number)
    if found is None:
        return "no predictions logged"
    paired, seeds = found
    return f"p = {paired.p_value:.3g} ({paired.only_a} vs {paired.only_b} images, {seeds} seeds)"


def choice_lines(choice: Choice) -> list[str]:
    """Which candidate was chosen, and why: the best on mean validation accuracy, or a cheaper
    one that cannot be told apart from it."""
    best, chosen = choice.ranked[0], choice.chosen
    lines = [
        f"Best on mean validation accuracy over {len(best.seeds)} seeds (test never decides): trial {best.number}, "
        f"{pct(best.mean(VAL_ACCURACY))}."
    ]
    tied = [c.number for c in choice.ranked[1:] if choice.apart(c.number) is False]
    unknown = [c.number for c in choice.ranked[1:] if choice.apart(c.number) is None]
    if tied:
        lines.append(
            f"Cannot be told apart from it (McNemar's exact test on the validation images both saw, p ≥ {ALPHA}): "
            f"trial{'s' if len(tied) > 1 else ''} {', '.join(map(str, tied))}."
        )
    if unknown:
        lines.append(
            f"Not compared image by image (runs logged before predictions were): trials {', '.join(map(str, unknown))}."
        )
    if chosen is not best:
        lines.append(
            f"Chosen: trial {chosen.number}, the cheapest of those, at {images(chosen.mean_cost(0))} training "
            f"images per training against {images(best.mean_cost(0))}."
        )
    else:
        lines.append(f"Chosen: trial {best.number}.")
    lines += [
        f"Winner's curse: trial {chosen.number}'s search-time validation score, {pct(chosen.search_val)}, sits "
        f"{100 * abs(chosen.winners_curse):.2f} pp {'above' if chosen.winners_curse >= 0 else 'below'} "
        "its own seed mean.",
        f"Seed s validates on fold s mod 12 of the training file. Training seconds are optimizer time, measured on "
        f"{', '.join(sorted({c.cpu for c in choice.ranked}))}.",
    ]
    return lines


def confirm_tables(choice: Choice) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """`confirm`'s figures: a row per configuration (by mean validation), a row per seed, and
    the sentences that say which was chosen and why."""
    rows, seeds = [], []
    for c in choice.ranked:
        low, high = c.interval(TEST_ACCURACY)
        n = c.seeds[min(c.seeds)][TEST_ACCURACY].total
        rows.append(
            {
                "trial": c.number,
                **{k: fmt(v) for k, v in c.params.items()},
                "seeds": len(c.seeds),
                "val mean ± sd, %": mean_sd(c, VAL_ACCURACY),
                "against the best, paired": paired_cell(choice, c),
                f"test (n={n}) mean ± sd, %": mean_sd(c, TEST_ACCURACY),
                "test mean, 95% seed interval": f"{pct(low)} – {pct(high)}",
                f"seeds ≥ {THE_CLAIM} on test": f"{c.reaching(TEST_ACCURACY, CLAIM)}/{len(c.seeds)}",
                "first 128 (n=128) mean ± sd, %": mean_sd(c, FIRST128_ACCURACY),
                "search val, %": f"{100 * c.search_val:.2f}",
                "images per training": images(c.mean_cost(0)),
                "train s, mean": f"{c.mean_cost(1):.0f}",
                "chosen": "yes" if c is choice.chosen else "",
            }
        )
        seeds += [
            {"trial": c.number, "seed": seed, "val fold": c.folds[seed], **{m: str(acc[m]) for m in ACCURACIES}}
            for seed, acc in c.seeds.items()
        ]
    return pd.DataFrame(rows), pd.DataFrame(seeds), choice_lines(choice)


def confirm_sections(choice: Choice | None) -> list[Section]:
    if choice is None:
        return []
    summary, per_seed, lines = confirm_tables(choice)
    return [Section("Confirmed over seeds", lines, [summary]), Section("Confirmed, seed by seed", [], [per_seed])]


def verdict_section(choice: Choice | None, frame: pd.DataFrame, tutorial: pd.DataFrame, study_name: str) -> Section:
    """The report's first lines: what the confirmed configuration reaches over seeds, where the
    claim lies, and what the tutorial's own recipe gets over seeds."""
    text = []
    if choice is not None:
        c = choice.chosen
        n, (low, high) = c.seeds[min(c.seeds)][TEST_ACCURACY].total, c.interval(TEST_ACCURACY)
        text.append(
            f"Trial {c.number}'s configuration, chosen by confirm over {len(c.seeds)} seeds, reaches a mean test "
            f"accuracy of {pct(c.mean(TEST_ACCURACY))} on {test_set(Accuracy(0, n))} (n={n} per seed; "
            f"sd {100 * c.sd(TEST_ACCURACY):.2f} pp over seeds; {c.reaching(TEST_ACCURACY, CLAIM)} of "
            f"{len(c.seeds)} seeds at {THE_CLAIM} or above; {images(c.mean_cost(0))} training images per training). "
            + where_claim(low, high, f"the 95% t-interval of that mean over the {len(c.seeds)} seeds")
        )
    elif not (done := completed(frame)).empty:
        best = best_row(done)
        text.append(
            f"Not confirmed over seeds yet: trial {int(best['number'])}, best on validation, has "
            f"{accuracy_of(best, TEST_ACCURACY)} on test with one seed. "
            f"`python sweep.py confirm --study-name {study_name}` trains the top trials with 5 seeds."
        )
    if tutorial.empty:
        text.append(
            "The tutorial's own recipe has no seed runs in this tracking store: "
            f"`python sweep.py baseline --study {DEFAULT_STUDY} --seeds 5` measures it."
        )
    else:
        values = tutorial[TEST_ACCURACY].tolist()
        low, high = seed_interval(values)
        steps = "/".join(map(str, sorted(set(tutorial["train_steps"]))))
        n = int(tutorial[f"{TEST_ACCURACY}_total"].iloc[0])
        text.append(
            f"The tutorial's own recipe ({steps} steps), over {len(values)} seeds: mean test accuracy "
            f"{pct(statistics.mean(values))} on {test_set(Accuracy(0, n))} (95% t-interval over seeds {pct(low)} – "
            f"{pct(high)}), and {pct(tutorial[FIRST128_ACCURACY].mean())} on the first 128 test images."
        )
    return Section("Verdict", text)


def baseline_section(baseline: pd.DataFrame, study_name: str) -> Section:
    if baseline.empty:
        return Section(
            "The baseline over seeds",
            [f"No baseline runs yet: run `python sweep.py baseline --study-name {study_name} --seeds 5`."],
        )
    stats = (baseline[[TEST_ACCURACY, FIRST128_ACCURACY]].agg(["mean", "std", "min", "max"]) * 100).round(2)
    n = int(baseline[f"{TEST_ACCURACY}_total"].iloc[0])
    stats.columns = [f"{test_set(Accuracy(0, n))} (n={n}), %", "first 128 test images (n=128), %"]
    stats.insert(0, "over seeds", stats.index)
    hits = int((baseline[f"{FIRST128_ACCURACY}_correct"] >= CLAIM_COUNTS.correct).sum())
    return Section(
        "The baseline over seeds",
        [
            f"The study's baseline (trial 0's configuration; in studies/{DEFAULT_STUDY}.toml the tutorial "
            f"itself) trained with {len(baseline)} seeds ({', '.join(map(str, baseline['seed']))}), seed s "
            f"validating on fold s mod 12. {hits} of {len(baseline)} seeds reached 127/128 or better on the first "
            "128 test images, as the tutorial did."
        ],
        [stats],
    )
