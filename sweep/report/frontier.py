"""The frontier: what the tutorial's LSTM reaches at each budget. One row per study that
`confirm` has chosen in: the training images per training of the chosen configuration, what
its search spent, the configuration, its test accuracy by seed, the mean and its t-interval
over seeds, and whether the claim is matched (mean ≥ 99.21%) or beaten (the whole interval
above it). Where several studies were confirmed at one budget, the one with the best mean
validation accuracy on its seeds' own folds is that budget's point. Rows of a frontier.csv written
before (stores on another machine) join those read from the stores here. Nothing here is chosen
by test accuracy: confirm chose on validation, and so does the frontier."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import optuna
import pandas as pd
from mlflow import MlflowClient

from sweep.errors import SweepError
from sweep.report.claim import CLAIM, THE_CLAIM, pct
from sweep.report.page import fmt
from sweep.search.budget import study_images
from sweep.search.storage import load_study, study_names
from sweep.seeds.choice import choose, confirmed_trials, val_hits
from sweep.stats import TEST_ACCURACY, VAL_ACCURACY, images
from sweep.stores import require_file
from sweep.tracking.store import mlflow_client

COLUMNS = [
    "study",
    "store",
    "images per training",
    "search images",
    "trial",
    "configuration",
    "test by seed, %",
    "seeds",
    "mean val, %",  # on the seeds' own folds: what chooses among studies at one budget
    "mean test, %",
    "interval low, %",  # the mean's 95% t-interval over seeds, as two numbers a CSV reader can use
    "interval high, %",
    "claim",
    "on the frontier",  # the budget's point: the best mean validation among the studies confirmed at it
]
_NUMBERS = [  # a frontier.csv's columns that must hold numbers
    "images per training",
    "search images",
    "seeds",
    "mean val, %",
    "mean test, %",
    "interval low, %",
    "interval high, %",
]
SAME_BUDGET = 1.01  # budgets within 1% are one: batch sizes round an epoch's images differently


def frontier_row(study: optuna.Study, client: MlflowClient, store: str) -> dict | None:
    """The study's point on the frontier, or None before confirm has chosen in it. `store` says
    where it was read: two sweep folders may each hold a study of one name (bench/search.py's)."""
    found = confirmed_trials(client, study)
    if not found:
        return None
    c = choose(found, lambda run_id: val_hits(client, run_id)).chosen
    mean, (low, high) = c.mean(TEST_ACCURACY), c.interval(TEST_ACCURACY)
    return {
        "study": study.study_name,
        "store": store,
        "images per training": c.mean_cost(0),
        "search images": study_images(study),
        "trial": c.number,
        "configuration": ", ".join(f"{k}={fmt(v)}" for k, v in c.params.items()),
        "test by seed, %": " / ".join(f"{100 * v:.2f}" for v in c.values(TEST_ACCURACY)),
        "seeds": len(c.seeds),
        "mean val, %": 100 * c.mean(VAL_ACCURACY),
        "mean test, %": 100 * mean,
        "interval low, %": 100 * float(low),
        "interval high, %": 100 * float(high),
        "claim": verdict(mean, low),
    }


def verdict(mean: float, low: float) -> str:
    """The claim against a mean over seeds and its interval's low end (fractions)."""
    return "beaten" if low > CLAIM else "matched" if mean >= CLAIM else "not reached"


def studies_in(
    stores: Sequence[tuple[str, str, str]], names: Sequence[str]
) -> list[tuple[optuna.Study, MlflowClient, str]]:
    """The studies named (default: every one) in each store, given as (Optuna storage, tracking URI,
    where it was read), each with its store's tracking client and that where."""
    found = []
    for storage, tracking, where in stores:
        require_file(storage, "Optuna storage", "--storage")
        client, here = mlflow_client(tracking, must_exist=True), study_names(storage)
        found += [(load_study(name, storage), client, where) for name in names or here if name in here]
    return found


def frontier_table(studies: list[tuple[optuna.Study, MlflowClient, str]], earlier: Sequence[dict] = ()) -> pd.DataFrame:
    """A row per study confirmed (each with the client of its tracking store and where it was
    read), and the `earlier` rows of frontier.csv files (stores on other machines): cheapest
    budget first, each budget's point marked among them all. A study read here replaces an
    earlier row of the same study and store."""
    rows = {(row["study"], row["store"]): row for row in earlier}
    for study, client, store in studies:
        if (row := frontier_row(study, client, store)) is not None:
            rows[row["study"], row["store"]] = row
    table = pd.DataFrame(list(rows.values()), columns=COLUMNS).sort_values("images per training", kind="stable")
    table = table.reset_index(drop=True)
    table["on the frontier"] = [point == i for i, point in enumerate(_points(table))]
    return table


def read_rows(path: Path) -> list[dict]:
    """The rows of a frontier.csv that `frontier` wrote, to merge with the stores read here."""
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as e:  # pandas' parser errors are ValueErrors
        raise SweepError(f"frontier rows {path}: cannot read it ({e})") from None
    if missing := [c for c in COLUMNS[:-1] if c not in frame.columns]:
        raise SweepError(f"frontier rows {path}: not a frontier.csv (no column {', '.join(map(repr, missing))})")
    if bad := [c for c in _NUMBERS if not pd.api.types.is_numeric_dtype(frame[c])]:
        raise SweepError(f"frontier rows {path}: column {bad[0]!r} holds something other than numbers")
    return frame[COLUMNS[:-1]].to_dict("records")


def _points(table: pd.DataFrame) -> list[int]:
    """For each row (cheapest first), the row that is its budget's point: among the rows within
    SAME_BUDGET of the budget's cheapest, the best mean validation accuracy; of equals, the first,
    which trains on the fewest images (the cheaper of two that cannot be told apart, as confirm
    prefers)."""
    budget, start, best = [], None, {}
    for i, spent in enumerate(table["images per training"]):
        start = spent if start is None or spent > SAME_BUDGET * start else start
        budget.append(start)
        if start not in best or _val(table, i) > _val(table, best[start]):
            best[start] = i
    return [best[b] for b in budget]


def _val(table: pd.DataFrame, i: int) -> float:
    """Row i's mean validation accuracy, rounded far below one image of 25,000 (0.004 pp), so that
    equal counts averaged in another order are equal."""
    return round(table["mean val, %"][i], 9)


def printable(table: pd.DataFrame) -> pd.DataFrame:
    """The table as people read it: images in millions, accuracies in percent with two decimals."""
    shown = table.copy()
    for column in ("images per training", "search images"):
        shown[column] = [images(v) for v in table[column]]
    for column in ("mean test, %", "mean val, %"):
        shown[column] = [f"{v:.2f}" for v in table[column]]
    shown["on the frontier"] = [_on_the_frontier(table, i, point) for i, point in enumerate(_points(table))]
    bounds = zip(table["interval low, %"], table["interval high, %"], strict=True)
    interval = [f"{low:.2f} – {high:.2f}" for low, high in bounds]
    shown = shown.drop(columns=["interval low, %", "interval high, %"])
    shown.insert(shown.columns.get_loc("claim"), "95% seed interval, %", interval)
    return shown


def _on_the_frontier(table: pd.DataFrame, i: int, point: int) -> str:
    """Whether row i is its budget's point, and if not, why not."""
    if i == point:
        return "yes"
    return "no: lower validation" if _val(table, i) < _val(table, point) else "no: tied on validation, not cheaper"


def plot(table: pd.DataFrame, path) -> None:
    """Mean test accuracy over seeds against training images per training, with each mean's 95%
    interval over seeds, and the claim; studies that lost their budget on validation hollow, a
    little to the right."""
    import matplotlib.pyplot as plt

    plt.switch_backend("Agg")
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.set_xscale("log")
    for on, style in (
        (
            True,
            {"fmt": "-o", "color": "tab:blue", "label": "the frontier: mean test accuracy over seeds, 95% CI"},
        ),
        (False, {"fmt": "o", "color": "tab:gray", "mfc": "none", "label": "confirmed too, not chosen on validation"}),
    ):
        rows = table[table["on the frontier"] == on]
        if rows.empty:
            continue
        x, mean = rows["images per training"] / 1e6 * (1 if on else 1.03), rows["mean test, %"]
        yerr = [mean - rows["interval low, %"], rows["interval high, %"] - mean]
        ax.errorbar(x, mean, yerr=yerr, capsize=4, **style)
        if on:
            for xi, yi, verdict in zip(x, mean, rows["claim"], strict=True):
                ax.annotate(verdict, (xi, yi), textcoords="offset points", xytext=(6, -12), fontsize=8)
            ax.set_xticks(list(x), [f"{v:.3g}" for v in x])  # the budgets measured, not powers of ten
    ax.axhline(100 * CLAIM, color="red", linestyle="--", label=f"the tutorial's claim, {THE_CLAIM}")
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
    """Where the claim is first matched and first beaten on the frontier, as sentences."""
    table, lines = table[table["on the frontier"]], []
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
