"""Reports that hold every result against the tutorial's 99.21%, and against what it cost.

One pandas DataFrame, one row per trial, joins the Optuna study (states, parameters, what each
trial spent) with its MLflow runs (accuracies and their counts, the configuration's cost per
training, the CPU). Everything on the page is computed from that table, the trials' learning
curves and the seed runs of `baseline` and `confirm`.
"""

from __future__ import annotations

import html
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
from mlflow import MlflowClient
from scipy.stats import spearmanr

from sweep import attrs, records
from sweep.config import DEFAULT_STUDY
from sweep.confirm import Confirmed, confirmed_trials
from sweep.data import TEST_IMAGES
from sweep.errors import SweepError
from sweep.records import ACCURACIES as METRICS
from sweep.spec import parse_spec
from sweep.stats import Accuracy, images, seed_interval

CLAIM = 0.9921  # the tutorial's figure
CLAIM_COUNTS = Accuracy(127, 128)  # what it was: 127 of the first 128 test images
IMPORTANCE_MIN_TRIALS = 10  # fANOVA on fewer completed trials is noise
CORRELATION_MIN_TRIALS = 5  # a rank correlation of 2 or 3 trials is ±1 or nearly, whatever the truth
TOP = 10


def pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def fmt(value) -> str:
    """A parameter's value as people write it (None: the setting left unset)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "none"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


THE_CLAIM = pct(CLAIM)


def searched(study: optuna.Study) -> dict[str, optuna.distributions.BaseDistribution]:
    """What the study searched, in the order its trials first suggested it: the report's
    parameters are the study's, whatever its spec searched."""
    found = {}
    for trial in study.get_trials(deepcopy=False):
        for name, distribution in trial.distributions.items():
            found.setdefault(name, distribution)
    return found


def origin(trial: optuna.trial.FrozenTrial) -> str:
    """Where a trial's configuration came from."""
    a = trial.user_attrs
    if attrs.WARM_START in a:
        return f"warm start: {a[attrs.WARM_START]['study']} trial {a[attrs.WARM_START]['trial']}"
    return "baseline" if a.get(attrs.BASELINE) else "enqueued" if a.get(attrs.ENQUEUED) else "sampler"


def trials_frame(study: optuna.Study, client: MlflowClient) -> pd.DataFrame:
    """One row per trial: number, state, the searched parameters, accuracies with counts, the
    training images of one training of its configuration, what the trial itself spent (images,
    optimizer seconds) and on which CPU, where it came from, and its MLflow run id."""
    runs = {run.info.run_id: run for run in records.trial_runs(client, study.study_name)}
    params = list(searched(study))
    rows = []
    for trial in study.get_trials(deepcopy=False):
        run = runs.get(trial.user_attrs.get(attrs.MLFLOW_RUN_ID))
        metrics = run.data.metrics if run else {}
        row = {"number": trial.number, "state": trial.state.name, **{p: trial.params.get(p) for p in params}}
        for m in METRICS:
            row.update({f"{m}{s}": metrics.get(f"{m}{s}") for s in ("", "_correct", "_total")})
        spent_images, spent_seconds = attrs.spent(trial.user_attrs)
        row.update({
            "train_images": records.images_of(run) if run else None,
            "spent_images": spent_images if attrs.TRAIN_IMAGES in trial.user_attrs else None,
            "spent_seconds": spent_seconds if attrs.TRAIN_SECONDS in trial.user_attrs else None,
            "cpu": run.data.params.get(records.CPU) if run else None,
            "stopped": bool(trial.user_attrs.get(attrs.STOPPED, False)),
            "resumes": trial.user_attrs.get(attrs.RESUMES),
            "origin": origin(trial),
            "started": trial.datetime_start, "completed": trial.datetime_complete,
            attrs.MLFLOW_RUN_ID: run.info.run_id if run else None,
        })
        rows.append(row)
    columns = ["number", "state", *params, *[f"{m}{s}" for m in METRICS for s in ("", "_correct", "_total")],
               "train_images", "spent_images", "spent_seconds", "cpu", "stopped", "resumes", "origin", "started",
               "completed", attrs.MLFLOW_RUN_ID]
    return pd.DataFrame(rows, columns=columns)


def completed(frame: pd.DataFrame) -> pd.DataFrame:
    """The completed trials with their results, in trial order."""
    return frame[frame["state"] == optuna.trial.TrialState.COMPLETE.name].dropna(subset=["val_accuracy", "test_accuracy"])


def best_row(done: pd.DataFrame) -> pd.Series:
    """The best on validation; a tie goes to the earlier trial, as Optuna's best_trial breaks it."""
    return done.sort_values(["val_accuracy", "number"], ascending=[False, True]).iloc[0]


def accuracy_of(row: pd.Series, metric: str) -> Accuracy:
    return Accuracy(int(row[f"{metric}_correct"]), int(row[f"{metric}_total"]))


def cpus(frame: pd.DataFrame) -> str:
    """The CPUs the trials ran on, as the runs recorded them: minutes mean nothing without."""
    found = sorted(set(frame["cpu"].dropna()))
    return "a CPU not recorded" if not found else found[0] if len(found) == 1 else f"{len(found)} CPUs ({'; '.join(found)})"


def spent_by(frame: pd.DataFrame, moment: pd.Timestamp) -> float:
    """Training images the study's trials had spent by a moment: all of those finished by
    then, and a share by time of those running then (workers in parallel)."""
    total = 0.0
    for _, t in frame.dropna(subset=["spent_images", "started"]).iterrows():
        if pd.notna(t["completed"]) and t["completed"] <= moment:
            total += t["spent_images"]
        elif t["started"] < moment and pd.notna(t["completed"]):
            total += t["spent_images"] * (moment - t["started"]) / (t["completed"] - t["started"])
    return total


@dataclass(frozen=True)
class ClaimReached:
    """The moment the validation-best trial first had 99.21% or more on all test images."""

    trial: int  # the validation-best trial then
    test: Accuracy  # its test accuracy
    images: float  # training images the study had spent by then
    minutes: float  # after the study's first trial started


def claim_reached(frame: pd.DataFrame) -> ClaimReached | None:
    """When, after the study's first trial started, the validation-best trial first had 99.21%
    or more on all test images: what a user stopping the search then would have had. Test
    accuracy only scores the search here; it never chose anything."""
    best = None
    for _, row in completed(frame).dropna(subset=["completed"]).sort_values("completed").iterrows():
        if best is None or (row["val_accuracy"], -row["number"]) > (best["val_accuracy"], -best["number"]):
            best = row
        if best["test_accuracy"] >= CLAIM and best["test_accuracy_total"] == TEST_IMAGES:
            minutes = (row["completed"] - frame["started"].min()).total_seconds() / 60
            return ClaimReached(int(best["number"]), accuracy_of(best, "test_accuracy"), spent_by(frame, row["completed"]),
                                minutes)
    return None


def time_to_claim(frame: pd.DataFrame) -> str:
    """The claim reached, in training images (the machine-free cost) and in minutes on the CPU
    the runs recorded (`claim_reached`)."""
    reached = claim_reached(frame)
    if reached is None:
        return f"Time to the claim: no validation-best trial has reached {THE_CLAIM} on all test images yet."
    return (f"Time to the claim: {images(reached.images)} training images and {reached.minutes:.1f} min "
            f"(on {cpus(frame)}) after the study's first trial started, the validation-best trial (trial "
            f"{reached.trial}) had {reached.test} on all test images.")


def claim_verdict(low: float, high: float, claim: float = CLAIM) -> str:
    """Where the claim lies relative to an interval."""
    return "below" if claim < low else "above" if claim > high else "inside"


def verdict_sentence(acc: Accuracy) -> str:
    return where_claim(*acc.interval(), "its 95% Wilson interval")


def where_claim(low: float, high: float, interval: str) -> str:
    """The claim against an interval, naming which interval it is."""
    meaning = {"below": "the result beats the claim", "inside": "the result is consistent with the claim",
               "above": "the result falls short of the claim"}
    where = claim_verdict(low, high)
    return f"{THE_CLAIM} lies {where} {interval} ({pct(low)} – {pct(high)}): {meaning[where]}."


def mean_sd(c: Confirmed, metric: str) -> str:
    return f"{100 * c.mean(metric):.2f} ± {100 * c.sd(metric):.2f}"


def confirm_tables(found: list[Confirmed]) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """`confirm`'s figures: a row per configuration (the chosen one first), a row per seed,
    and the sentences that say which was chosen, by how much its search score ran high, and
    what a training of each cost."""
    rows, seeds = [], []
    for c in found:
        low, high = c.interval("test_accuracy")
        n = c.seeds[min(c.seeds)]["test_accuracy"].total
        rows.append({
            "trial": c.number, **{k: fmt(v) for k, v in c.params.items()}, "seeds": len(c.seeds),
            "val mean ± sd, %": mean_sd(c, "val_accuracy"),
            f"test (n={n}) mean ± sd, %": mean_sd(c, "test_accuracy"),
            "test mean, 95% seed interval": f"{pct(low)} – {pct(high)}",
            f"seeds ≥ {THE_CLAIM} on test": f"{c.reaching('test_accuracy', CLAIM)}/{len(c.seeds)}",
            "first 128 (n=128) mean ± sd, %": mean_sd(c, "test_accuracy_first128"),
            "search val, %": f"{100 * c.search_val:.2f}",
            "images per training": images(c.mean_cost(0)),
            "train s, mean": f"{c.mean_cost(1):.0f}",
        })
        seeds += [{"trial": c.number, "seed": seed, **{m: str(acc[m]) for m in METRICS}} for seed, acc in c.seeds.items()]
    best = found[0]
    lines = [
        f"Chosen on mean validation accuracy over {len(best.seeds)} seeds (test never decides): trial {best.number}, "
        f"{pct(best.mean('val_accuracy'))}.",
        f"Winner's curse: its search-time validation score, {pct(best.search_val)}, sits "
        f"{100 * abs(best.winners_curse):.2f} pp {'above' if best.winners_curse >= 0 else 'below'} its own seed mean.",
        f"Training seconds are optimizer time, measured on {', '.join(sorted({c.cpu for c in found}))}.",
    ]
    return pd.DataFrame(rows), pd.DataFrame(seeds), lines


def verdict_section(found: list[Confirmed], frame: pd.DataFrame, tutorial: pd.DataFrame, study_name: str) -> Section:
    """The report's first lines: what the confirmed configuration reaches over seeds, where the
    claim lies, and what the tutorial's own recipe gets over seeds."""
    text = []
    if found:
        c = found[0]
        n, low, high = c.seeds[min(c.seeds)]["test_accuracy"].total, *c.interval("test_accuracy")
        text.append(
            f"Trial {c.number}'s configuration, chosen on mean validation accuracy over {len(c.seeds)} seeds, reaches a "
            f"mean test accuracy of {pct(c.mean('test_accuracy'))} on {test_set(Accuracy(0, n))} (n={n} per seed; "
            f"sd {100 * c.sd('test_accuracy'):.2f} pp over seeds; {c.reaching('test_accuracy', CLAIM)} of "
            f"{len(c.seeds)} seeds at {THE_CLAIM} or above; {images(c.mean_cost(0))} training images per training). "
            + where_claim(low, high, f"the 95% t-interval of that mean over the {len(c.seeds)} seeds"))
    elif not (done := completed(frame)).empty:
        best = best_row(done)
        text.append(f"Not confirmed over seeds yet: trial {int(best['number'])}, best on validation, has "
                    f"{accuracy_of(best, 'test_accuracy')} on test with one seed. "
                    f"`python sweep.py confirm --study-name {study_name}` trains the top trials with 5 seeds.")
    if tutorial.empty:
        text.append("The tutorial's own recipe has no seed runs in this tracking store: "
                    f"`python sweep.py baseline --study {DEFAULT_STUDY} --seeds 5` measures it.")
    else:
        values = tutorial["test_accuracy"].tolist()
        low, high = seed_interval(values)
        text.append(
            f"The tutorial's own recipe ({'/'.join(map(str, sorted(set(tutorial['train_steps']))))} steps), over {len(values)} "
            f"seeds: mean test accuracy "
            f"{pct(statistics.mean(values))} on {test_set(Accuracy(0, int(tutorial['test_accuracy_total'].iloc[0])))} "
            f"(95% t-interval over seeds {pct(low)} – {pct(high)}), and "
            f"{pct(tutorial['test_accuracy_first128'].mean())} on the first 128 test images.")
    return Section("Verdict", text)


def baseline_frame(client: MlflowClient, study_name: str) -> pd.DataFrame:
    rows = []
    for run in records.seed_runs(client, study_name, records.BASELINE):
        m = run.data.metrics
        rows.append({
            "seed": int(run.data.params["seed"]),
            "train_steps": records.steps_of(run),
            **{k: m.get(k) for k in METRICS},
            **{f"{k}{s}": m.get(f"{k}{s}") for k in METRICS for s in ("_correct", "_total")},
            attrs.MLFLOW_RUN_ID: run.info.run_id,
        })
    counts = [f"{k}{s}" for k in METRICS for s in ("_correct", "_total")]
    return pd.DataFrame(rows, columns=["seed", "train_steps", *METRICS, *counts, attrs.MLFLOW_RUN_ID])


@dataclass
class Section:
    title: str
    text: list[str] = field(default_factory=list)
    tables: list[pd.DataFrame] = field(default_factory=list)
    images: list[str] = field(default_factory=list)


def claim_section() -> Section:
    low, high = CLAIM_COUNTS.interval()
    return Section("The claim", [
        f"The tutorial reports {THE_CLAIM} test accuracy. It was measured on the first 128 test images: "
        f"127/128 = {pct(CLAIM_COUNTS.value)}, whose 95% Wilson interval is {pct(low)} – {pct(high)}. "
        f"Every accuracy below is given with its set size n and its 95% Wilson interval."
    ])


def test_set(acc: Accuracy) -> str:
    """What a test figure was measured on: all test images, or a study's slice of them."""
    return "all test images" if acc.total == TEST_IMAGES else f"the first {acc.total} test images only (the study's test_limit)"


def baseline_section(baseline: pd.DataFrame, study_name: str) -> Section:
    if baseline.empty:
        return Section("The baseline over seeds",
                       [f"No baseline runs yet: run `python sweep.py baseline --study-name {study_name} --seeds 5`."])
    stats = (baseline[["test_accuracy", "test_accuracy_first128"]].agg(["mean", "std", "min", "max"]) * 100).round(2)
    n = int(baseline["test_accuracy_total"].iloc[0])
    stats.columns = [f"{test_set(Accuracy(0, n))} (n={n}), %", "first 128 test images (n=128), %"]
    stats.insert(0, "over seeds", stats.index)
    hits = int((baseline["test_accuracy_first128_correct"] >= CLAIM_COUNTS.correct).sum())
    return Section(
        "The baseline over seeds",
        [f"The study's baseline (trial 0's configuration; in studies/{DEFAULT_STUDY}.toml the tutorial itself) trained "
         f"with {len(baseline)} seeds ({', '.join(map(str, baseline['seed']))}). {hits} of {len(baseline)} seeds "
         f"reached 127/128 or better on the first 128 test images, as the tutorial did."],
        [stats],
    )


def best_section(frame: pd.DataFrame, params: list[str]) -> Section:
    done = completed(frame)
    if done.empty:
        return Section("The best trial on validation", ["No completed trials yet."])
    best = best_row(done)
    test, first = accuracy_of(best, "test_accuracy"), accuracy_of(best, "test_accuracy_first128")
    values = ", ".join(f"{p}={fmt(best[p])}" for p in params)
    text = [
        f"Trial {int(best['number'])} ({values}) has the best validation accuracy, "
        f"{accuracy_of(best, 'val_accuracy')}. Its test accuracy: {test} on {test_set(test)}; "
        f"{first} on the first 128 (the tutorial's measure).",
        verdict_sentence(test),
        time_to_claim(frame),
    ]
    tied = done[(done["val_accuracy"] == best["val_accuracy"]) & (done["number"] != best["number"])]
    if not tied.empty:  # said, not hidden: a tie is broken by trial order (Optuna's best_trial), never by test
        others = "; ".join(f"trial {int(t['number'])}, test {accuracy_of(t, 'test_accuracy')}" for _, t in tied.iterrows())
        text.append(f"Tied with it on validation, and not chosen because they came later (Optuna's rule): {others}.")
    return Section("The best trial on validation", text)


def pareto_front(done: pd.DataFrame) -> pd.DataFrame:
    """The trials no other trial beats on both counts: as few training images per training and
    as much validation accuracy, one of them strictly. Equal trials stand on it together."""
    x, y = done["train_images"].to_numpy(), done["val_accuracy"].to_numpy()
    dominated = [bool(np.any((x <= xi) & (y >= yi) & ((x < xi) | (y > yi)))) for xi, yi in zip(x, y)]
    return done[~np.array(dominated, dtype=bool)].sort_values(["train_images", "number"])


def cheapest_as_good(done: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """The best trial on validation, and the cheapest whose validation accuracy lies within the
    best one's 95% Wilson interval (ties: the more accurate, then the earlier). Cheaper means at
    least 1% fewer images than the best: batch sizes that round an epoch differently are not a
    saving, so among equal budgets the best itself is the answer."""
    best = best_row(done)
    low, _ = accuracy_of(best, "val_accuracy").interval()
    within = done[(done["val_accuracy"] >= low) & (done["train_images"] <= 0.99 * best["train_images"])]
    if within.empty:
        return best, best
    return best, within.sort_values(["train_images", "val_accuracy", "number"], ascending=[True, False, True]).iloc[0]


def cost_section(frame: pd.DataFrame, params: list[str], plot: str | None) -> Section:
    """Accuracy against what it cost: the search's spend, the Pareto front of the completed
    trials, and the cheapest configuration as good as the best within noise."""
    section = Section("Accuracy against cost", images=[plot] if plot else [])
    spent = frame["spent_images"].dropna()
    seconds = frame["spent_seconds"].dropna()
    section.text.append(f"The search spent {images(spent.sum())} training images over {len(spent)} trials "
                        f"({seconds.sum() / 60:.1f} min of optimizer time on {cpus(frame)}), pruned and stopped trials included. "
                        "A training image is one image in one optimizer step's batch; the count does not depend on the machine.")
    done = completed(frame).dropna(subset=["train_images"])
    if done.empty:
        return section
    best, cheap = cheapest_as_good(done)
    low, high = accuracy_of(best, "val_accuracy").interval()
    if cheap["number"] == best["number"]:
        section.text.append(f"No cheaper configuration lies within the 95% Wilson interval of the best trial's validation "
                            f"accuracy ({pct(low)} – {pct(high)}): trial {int(best['number'])}, at "
                            f"{images(best['train_images'])} training images per training, is the cheapest as good as the best.")
    else:
        section.text.append(
            f"Cheapest as good as the best within noise: trial {int(cheap['number'])} "
            f"({', '.join(f'{p}={fmt(cheap[p])}' for p in params)}), {images(cheap['train_images'])} training images per "
            f"training, validation {accuracy_of(cheap, 'val_accuracy')}, inside the 95% Wilson interval of the best trial "
            f"{int(best['number'])}'s ({pct(low)} – {pct(high)}), which took {images(best['train_images'])} "
            f"({best['train_images'] / cheap['train_images']:.1f}x as many). Confirm it over seeds before relying on it.")
    front = pareto_front(done)
    table = front[["number", *params]].copy()
    table["images per training"] = [images(v) for v in front["train_images"]]
    for m in METRICS:
        table[m] = [str(accuracy_of(row, m)) for _, row in front.iterrows()]
    section.text.append("The Pareto front: no other completed trial has as few training images per training and as "
                        "high a validation accuracy.")
    section.tables.append(table.reset_index(drop=True))
    return section


def warm_start_section(frame: pd.DataFrame) -> Section | None:
    warm = frame[frame["origin"].str.startswith("warm start")]
    if warm.empty:
        return None
    table = warm[["number", "origin", "state"]].copy()
    table["val_accuracy"] = [str(accuracy_of(r, "val_accuracy")) if pd.notna(r["val_accuracy_correct"]) else "" for _, r in warm.iterrows()]
    return Section("Warm-start points", ["Configurations enqueued from another study's best trials ([warm_start])."],
                   [table.reset_index(drop=True)])


def confirm_sections(found: list[Confirmed]) -> list[Section]:
    if not found:
        return []
    summary, per_seed, lines = confirm_tables(found)
    return [Section("Confirmed over seeds", lines, [summary]), Section("Confirmed, seed by seed", [], [per_seed])]


def top_section(frame: pd.DataFrame, params: list[str]) -> Section:
    done = completed(frame).sort_values(["val_accuracy", "number"], ascending=[False, True]).head(TOP)
    table = done[["number", *params]].copy()
    for p in params:
        table[p] = [fmt(v) for v in done[p]]
    table["images per training"] = [images(v) if pd.notna(v) else "" for v in done["train_images"]]
    for m in METRICS:
        table[m] = [str(accuracy_of(row, m)) for _, row in done.iterrows()]
    return Section(f"Top {len(table)} trials by validation accuracy", [], [table.reset_index(drop=True)])


def importance_section(study: optuna.Study, frame: pd.DataFrame, params: list[str]) -> Section:
    done = completed(frame)
    section = Section("Which hyperparameters matter")
    if len(done) < CORRELATION_MIN_TRIALS:
        section.text.append(f"Too few trials to say: {len(done)} completed, and even a rank correlation needs "
                            f"{CORRELATION_MIN_TRIALS} (fANOVA importances, {IMPORTANCE_MIN_TRIALS}).")
        return section
    rows = []
    for p in params:
        values = pd.to_numeric(done[p], errors="coerce")
        if values.notna().all() and values.nunique() > 1:  # numbers only: a choice among words has no rank
            rho, _ = spearmanr(values, done["val_accuracy"])
            rows.append({"parameter": p, "spearman_rho_with_val_accuracy": round(float(rho), 3),
                         "low": values.min(), "high": values.max(), "value_in_best_trial": fmt(best_row(done)[p])})
    section.tables = [pd.DataFrame(rows)] if rows else []
    if len(done) >= IMPORTANCE_MIN_TRIALS:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        importances = optuna.importance.get_param_importances(study, evaluator=evaluator)
        table = pd.DataFrame({"parameter": list(importances), "fanova_importance": [round(v, 3) for v in importances.values()]})
        section.text.append(f"Optuna's fANOVA importances over {len(done)} completed trials (validation accuracy):")
        section.tables.insert(0, table)
    else:
        section.text.append(f"Only {len(done)} completed trials: fANOVA importances need {IMPORTANCE_MIN_TRIALS}. "
                            "The plain view below ranks each numeric parameter by its rank correlation with validation accuracy.")
    return section


def curve_unit(study: optuna.Study) -> str:
    """What the study's curve points count (steps, epochs or % of the schedule), from its spec."""
    try:
        return parse_spec(study.user_attrs[attrs.SPEC], study.study_name).fixed.curve_unit()
    except (KeyError, SweepError):
        return "curve point"


def render_markdown(title: str, sections: list[Section]) -> str:
    parts = [f"# {title}"]
    for s in sections:
        parts.append(f"## {s.title}")
        parts += s.text
        parts += [t.to_markdown(index=False, floatfmt=".4g") for t in s.tables]
        parts += [f"![{name}]({name})" for name in s.images]
    return "\n\n".join(parts) + "\n"


def render_html(title: str, sections: list[Section]) -> str:
    body = [f"<h1>{html.escape(title)}</h1>"]
    for s in sections:
        body.append(f"<h2>{html.escape(s.title)}</h2>")
        body += [f"<p>{html.escape(t)}</p>" for t in s.text]
        body += [t.to_html(index=False, border=0, float_format=lambda v: f"{v:.4g}") for t in s.tables]
        body += [f'<img src="{name}" alt="{name}">' for name in s.images]
    style = "body{font-family:sans-serif;max-width:60em;margin:auto}table{border-collapse:collapse}td,th{padding:2px 8px;border-bottom:1px solid #ddd}"
    return f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}</style></head><body>{''.join(body)}</body></html>\n"


def write_report(study: optuna.Study, client: MlflowClient, out: Path) -> pd.DataFrame:
    """Write trials.csv, report.md, report.html and the plots to `out`, and log them as
    artifacts (`report/`) of the study's parent MLflow run. Returns the trials table."""
    from sweep import plots

    frame, space = trials_frame(study, client), searched(study)
    if frame.empty:
        raise SweepError(f"study '{study.study_name}' has no trials yet")
    params = list(space)
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out / "trials.csv", index=False)
    best = best_section(frame, params)
    found = confirmed_trials(client, study)
    verdict = verdict_section(found, frame, baseline_frame(client, DEFAULT_STUDY), study.study_name)
    done = completed(frame)
    drawn = plots.draw(study, frame, done, pareto_front(done.dropna(subset=["train_images"])), curve_unit(study), CLAIM, out)
    cost_plot = drawn.pop(drawn.index("cost.png")) if "cost.png" in drawn else None
    sections = [
        verdict,
        claim_section(),
        baseline_section(baseline_frame(client, study.study_name), study.study_name),
        best,
        cost_section(frame, params, cost_plot),
        *confirm_sections(found),
        *filter(None, [warm_start_section(frame)]),
        top_section(frame, params),
        importance_section(study, frame, params),
        Section("Plots", [f"Validation accuracy is Optuna's objective. Red dashed lines: the tutorial's {THE_CLAIM}. "
                          "Learning curves: every trial's validation curve as the pruner saw it, pruned and stopped "
                          "trials marked where they ended."], [], drawn),
    ]
    title = f"Study '{study.study_name}': {int((frame['state'] == 'COMPLETE').sum())} completed of {len(frame)} trials"
    (out / "report.md").write_text(render_markdown(title, sections))
    (out / "report.html").write_text(render_html(title, sections))
    records.log_report(client, study.study_name, out, verdict.text + best.text)
    return frame
