"""The report's sections about the study's trials: the claim, the best trial on validation, accuracy
against cost, warm-start points, the top trials, and which hyperparameters matter."""

from __future__ import annotations

from dataclasses import dataclass

import optuna
import pandas as pd
from scipy.stats import spearmanr

from sweep.report.claim import CLAIM_COUNTS, THE_CLAIM, pct, test_set, time_to_claim, verdict_sentence
from sweep.report.frame import accuracy_of, best_row, completed, cpus, pareto_front
from sweep.report.page import Section, fmt
from sweep.search.attributes import ATTR_MLFLOW_RUN_ID
from sweep.seeds.choice import ALPHA, CHEAPER, Hits
from sweep.stats import ACCURACIES, FIRST128_ACCURACY, TEST_ACCURACY, VAL_ACCURACY, Paired, images

IMPORTANCE_MIN_TRIALS = 10  # fANOVA on fewer completed trials is noise
CORRELATION_MIN_TRIALS = 5  # a rank correlation of 2 or 3 trials is ±1 or nearly, whatever the truth
TOP = 10


def claim_section() -> Section:
    low, high = CLAIM_COUNTS.interval()
    return Section(
        "The claim",
        [
            f"The tutorial reports {THE_CLAIM} test accuracy. It was measured on the first 128 test images: "
            f"127/128 = {pct(CLAIM_COUNTS.value)}, whose 95% Wilson interval is {pct(low)} – {pct(high)}. "
            f"Every accuracy below is given with its set size n and its 95% Wilson interval."
        ],
    )


def best_section(frame: pd.DataFrame, params: list[str]) -> Section:
    done = completed(frame)
    if done.empty:
        return Section("The best trial on validation", ["No completed trials yet."])
    best = best_row(done)
    test, first = accuracy_of(best, TEST_ACCURACY), accuracy_of(best, FIRST128_ACCURACY)
    values = ", ".join(f"{p}={fmt(best[p])}" for p in params)
    text = [
        f"Trial {int(best['number'])} ({values}) has the best validation accuracy, "
        f"{accuracy_of(best, VAL_ACCURACY)}. Its test accuracy: {test} on {test_set(test)}; "
        f"{first} on the first 128 (the tutorial's measure).",
        verdict_sentence(test),
        time_to_claim(frame),
    ]
    tied = done[(done[VAL_ACCURACY] == best[VAL_ACCURACY]) & (done["number"] != best["number"])]
    if not tied.empty:  # said, not hidden: a tie is broken by trial order (Optuna's best_trial), never by test
        others = "; ".join(
            f"trial {int(t['number'])}, test {accuracy_of(t, TEST_ACCURACY)}" for _, t in tied.iterrows()
        )
        text.append(f"Tied with it on validation, and not chosen because they came later (Optuna's rule): {others}.")
    return Section("The best trial on validation", text)


@dataclass(frozen=True)
class AsGood:
    """The best trial on validation, and the cheapest trial as good as it: one that McNemar's
    exact test on the validation images both saw cannot tell apart from it."""

    best: pd.Series
    cheapest: pd.Series  # the best itself, when no cheaper trial is as good
    paired: Paired | None  # cheapest against best (None: it is the best, or no predictions were logged)
    unpaired: int  # cheaper trials that logged no predictions, so were not compared


def cheapest_as_good(done: pd.DataFrame, hits: Hits) -> AsGood:
    """Trials at least 1% cheaper than the best (batch sizes that round an epoch differently are
    no saving), cheapest first (ties: the more accurate, then the earlier), each paired with the
    best; the first that cannot be told apart from it (p ≥ 0.05)."""
    best = best_row(done)
    best_hits = hits(best[ATTR_MLFLOW_RUN_ID])
    cheaper = done[done["train_images"] <= CHEAPER * best["train_images"]]
    unpaired = 0
    for _, trial in cheaper.sort_values(
        ["train_images", VAL_ACCURACY, "number"], ascending=[True, False, True]
    ).iterrows():
        trial_hits = hits(trial[ATTR_MLFLOW_RUN_ID]) if best_hits is not None else None
        if trial_hits is None:
            unpaired += 1
            continue
        paired = Paired.of(trial_hits, best_hits)
        if paired.p_value >= ALPHA:
            return AsGood(best, trial, paired, unpaired)
    return AsGood(best, best, None, unpaired)


def cost_section(frame: pd.DataFrame, params: list[str], plot: str | None, hits: Hits) -> Section:
    """Accuracy against what it cost: the search's spend, the Pareto front of the completed
    trials, and the cheapest configuration as good as the best, judged image by image."""
    section = Section("Accuracy against cost", images=[plot] if plot else [])
    spent, seconds = frame["spent_images"].dropna(), frame["spent_seconds"].dropna()
    section.text.append(
        f"The search spent {images(spent.sum())} training images over {len(spent)} trials "
        f"({seconds.sum() / 60:.1f} min of optimizer time on {cpus(frame)}), pruned and stopped trials "
        "included. A training image is one image in one optimizer step's batch; the count does not "
        "depend on the machine."
    )
    done = completed(frame).dropna(subset=["train_images"])
    if done.empty:
        return section
    found = cheapest_as_good(done, hits)
    best, cheap = found.best, found.cheapest
    if found.paired is None:
        section.text.append(
            f"No cheaper trial compared with the best is as good (McNemar's exact test on the validation "
            f"images both saw, p < {ALPHA} for each): trial {int(best['number'])}, at "
            f"{images(best['train_images'])} training images per training, is the cheapest as good as "
            "the best."
        )
    else:
        section.text.append(
            f"Cheapest as good as the best: trial {int(cheap['number'])} "
            f"({', '.join(f'{p}={fmt(cheap[p])}' for p in params)}), {images(cheap['train_images'])} training images "
            f"per training, validation {accuracy_of(cheap, VAL_ACCURACY)}. "
            f"Against the best trial {int(best['number'])} ({images(best['train_images'])}, "
            f"{best['train_images'] / cheap['train_images']:.1f}x as many) on the same validation images, it is right "
            f"where the best is wrong on {found.paired.only_a} and wrong where the best is right on "
            f"{found.paired.only_b}: McNemar's exact test, p = {found.paired.p_value:.3g}, cannot tell them apart. "
            "Confirm it over seeds before relying on it."
        )
    if found.unpaired:
        section.text.append(
            f"{found.unpaired} cheaper trials logged no predictions (runs from before they were) and were not compared."
        )
    front = pareto_front(done)
    table = front[["number", *params]].copy()
    table["images per training"] = [images(v) for v in front["train_images"]]
    for m in ACCURACIES:
        table[m] = [str(accuracy_of(row, m)) for _, row in front.iterrows()]
    section.text.append(
        "The Pareto front: no other completed trial has as few training images per training and as "
        "high a validation accuracy."
    )
    section.tables.append(table.reset_index(drop=True))
    return section


def warm_start_section(frame: pd.DataFrame) -> Section | None:
    warm = frame[frame["origin"].str.startswith("warm start")]
    if warm.empty:
        return None
    table = warm[["number", "origin", "state"]].copy()
    table[VAL_ACCURACY] = [
        str(accuracy_of(r, VAL_ACCURACY)) if pd.notna(r[VAL_ACCURACY]) else "" for _, r in warm.iterrows()
    ]
    return Section(
        "Warm-start points",
        ["Configurations enqueued from another study's best trials ([warm_start])."],
        [table.reset_index(drop=True)],
    )


def top_section(frame: pd.DataFrame, params: list[str]) -> Section:
    done = completed(frame).nlargest(TOP, VAL_ACCURACY, keep="first")
    table = done[["number", *params]].copy()
    for p in params:
        table[p] = [fmt(v) for v in done[p]]
    table["images per training"] = [images(v) if pd.notna(v) else "" for v in done["train_images"]]
    for m in ACCURACIES:
        table[m] = [str(accuracy_of(row, m)) for _, row in done.iterrows()]
    return Section(f"Top {len(table)} trials by validation accuracy", [], [table.reset_index(drop=True)])


def importance_section(study: optuna.Study, frame: pd.DataFrame, params: list[str]) -> Section:
    done = completed(frame)
    section = Section("Which hyperparameters matter")
    if len(done) < CORRELATION_MIN_TRIALS:
        section.text.append(
            f"Too few trials to say: {len(done)} completed, and even a rank correlation needs "
            f"{CORRELATION_MIN_TRIALS} (fANOVA importances, {IMPORTANCE_MIN_TRIALS})."
        )
        return section
    rows = []
    for p in params:
        values = pd.to_numeric(done[p], errors="coerce")
        if values.notna().all() and values.nunique() > 1:  # numbers only: a choice among words has no rank
            rho, _ = spearmanr(values, done[VAL_ACCURACY])
            rows.append(
                {
                    "parameter": p,
                    "spearman_rho_with_val_accuracy": round(float(rho), 3),
                    "low": values.min(),
                    "high": values.max(),
                    "value_in_best_trial": fmt(best_row(done)[p]),
                }
            )
    section.tables = [pd.DataFrame(rows)] if rows else []
    if len(done) >= IMPORTANCE_MIN_TRIALS:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        importances = optuna.importance.get_param_importances(study, evaluator=evaluator)
        table = pd.DataFrame(
            {"parameter": list(importances), "fanova_importance": [round(v, 3) for v in importances.values()]}
        )
        section.text.append(f"Optuna's fANOVA importances over {len(done)} completed trials (validation accuracy):")
        section.tables.insert(0, table)
    else:
        section.text.append(
            f"Only {len(done)} completed trials: fANOVA importances need {IMPORTANCE_MIN_TRIALS}. "
            "The plain view below ranks each numeric parameter by its rank correlation with validation accuracy."
        )
    return section
