"""The frontier: what the tutorial's LSTM reaches at each budget. One row per study that
`confirm` has chosen in: the training images per training of the chosen configuration, what
its search spent, the configuration, its test accuracy by seed, the mean and its t-interval
over seeds, and whether the claim is matched (mean ≥ 99.21%) or beaten (the whole interval
above it). Nothing here is chosen by test accuracy: confirm chose on validation."""

from __future__ import annotations

from pathlib import Path

import optuna
import pandas as pd
from mlflow import MlflowClient

from sweep.errors import SweepError
from sweep.report.claim import CLAIM, THE_CLAIM, pct
from sweep.report.page import fmt
from sweep.search.budget import study_images
from sweep.seeds.choice import choose, confirmed_trials, val_hits
from sweep.stats import TEST_ACCURACY, images

COLUMNS = [
    "study",
    "store",
    "images per training",
    "search images",
    "trial",
    "configuration",
    "test by seed, %",
    "seeds",
    "mean test, %",
    "interval low, %",  # the mean's 95% t-interval over seeds, as two numbers a CSV reader can use
    "interval high, %",
    "claim",
]


def frontier_row(study: optuna.Study, client: MlflowClient, store: str) -> dict | None:
    """The study's point on the frontier, or None before confirm has chosen in it. `store` says
    where it was read: two sweep folders may each hold a study of one name (bench/search.py's)."""
    found = confirmed_trials(client, study)
    if not found:
        return None
    c = choose(found, lambda run_id: val_hits(client, run_id)).chosen
    mean, (low, high) = c.mean(TEST_ACCURACY), c.interval(TEST_ACCURACY)
    verdict = "beaten" if low > CLAIM else "matched" if mean >= CLAIM else "not reached"
    return {
        "study": study.study_name,
        "store": store,
        "images per training": c.mean_cost(0),
        "search images": study_images(study),
        "trial": c.number,
        "configuration": ", ".join(f"{k}={fmt(v)}" for k, v in c.params.items()),
        "test by seed, %": " / ".join(f"{100 * v:.2f}" for v in c.values(TEST_ACCURACY)),
        "seeds": len(c.seeds),
        "mean test, %": 100 * mean,
        "interval low, %": 100 * float(low),
        "interval high, %": 100 * float(high),
        "claim": verdict,
    }


def frontier_table(studies: list[tuple[optuna.Study, MlflowClient, str]]) -> pd.DataFrame:
    """A row per study confirmed (each with the client of its tracking store and where it was
    read), cheapest budget first."""
    rows = [row for study, client, store in studies if (row := frontier_row(study, client, store)) is not None]
    return pd.DataFrame(rows, columns=COLUMNS).sort_values("images per training", kind="stable").reset_index(drop=True)


def printable(table: pd.DataFrame) -> pd.DataFrame:
    """The table as people read it: images in millions, accuracies in percent with two decimals."""
    shown = table.copy()
    for column in ("images per training", "search images"):
        shown[column] = [images(v) for v in table[column]]
    shown["mean test, %"] = [f"{v:.2f}" for v in table["mean test, %"]]
    bounds = zip(table["interval low, %"], table["interval high, %"], strict=True)
    interval = [f"{low:.2f} – {high:.2f}" for low, high in bounds]
    shown = shown.drop(columns=["interval low, %", "interval high, %"])
    shown.insert(shown.columns.get_loc("claim"), "95% seed interval, %", interval)
    return shown


def plot(table: pd.DataFrame, path) -> None:
    """Mean test accuracy over seeds against training images per training, with each mean's 95%
    interval over seeds, and the claim."""
    import matplotlib.pyplot as plt

    plt.switch_backend("Agg")
    fig, ax = plt.subplots(figsize=(7, 4.2))
    x = table["images per training"] / 1e6
    low, high = table["mean test, %"] - table["interval low, %"], table["interval high, %"] - table["mean test, %"]
    ax.errorbar(
        x,
        table["mean test, %"],
        yerr=[low, high],
        fmt="-o",
        capsize=4,
        color="tab:blue",
        label="chosen by confirm: mean test accuracy over seeds, 95% interval",
    )
    for xi, yi, verdict in zip(x, table["mean test, %"], table["claim"], strict=True):
        ax.annotate(verdict, (xi, yi), textcoords="offset points", xytext=(6, -12), fontsize=8)
    ax.axhline(100 * CLAIM, color="red", linestyle="--", label=f"the tutorial's claim, {THE_CLAIM}")
    ax.set_xscale("log")
    ax.set_xticks(list(x), [f"{v:.3g}" for v in x])  # the budgets measured, not powers of ten
    ax.minorticks_off()
    ax.set(
        xlabel="training images per training (millions)",
        ylabel="test accuracy, all 10,000 images, %",
        title="What the tutorial's LSTM reaches at each budget",
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def summary(table: pd.DataFrame) -> list[str]:
    """Where the claim is first matched and first beaten, as sentences."""
    lines = []
    for verdict, word in (
        ("matched", "matched (mean ≥ " + THE_CLAIM + ")"),
        ("beaten", "beaten (whole interval above)"),
    ):
        hits = table[table["claim"].isin([verdict, "beaten"] if verdict == "matched" else ["beaten"])]
        if hits.empty:
            lines.append(f"The claim is not {verdict} at any budget measured.")
        else:
            first = hits.iloc[0]
            lines.append(
                f"The claim is first {word} at {images(first['images per training'])} training images per "
                f"training ({first['study']}, trial {first['trial']}: mean {pct(first['mean test, %'] / 100)})."
            )
    return lines


def write_frontier(table: pd.DataFrame, out: Path) -> str:
    """frontier.csv, frontier.md and frontier.png in `out`; the Markdown's text."""
    if table.empty:
        raise SweepError("no study here has been confirmed over seeds yet: run `python sweep.py confirm` first")
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "frontier.csv", index=False)
    plot(table, out / "frontier.png")
    text = "\n\n".join([printable(table).to_markdown(index=False, disable_numparse=True), *summary(table)])
    (out / "frontier.md").write_text(f"{text}\n\n![What each budget buys](frontier.png)\n")
    return text
