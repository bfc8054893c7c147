"""The report's plots, as PNG files: Optuna's history and slices, learning curves, accuracy
against cost, test against validation, all test images against the first 128. Accuracies are
in percent on every axis."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import optuna
import pandas as pd
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullFormatter
from optuna.trial import TrialState

from sweep.search.attributes import ATTR_STOPPED
from sweep.stats import FIRST128_ACCURACY, TEST_ACCURACY, VAL_ACCURACY

PERCENT = FuncFormatter(lambda v, _: f"{100 * v:.2f}")  # Optuna plots fractions; people read percent
STOPPED_ON_PURPOSE = "stopped"  # a FAIL that resumes: marked apart from the others
ENDS = {  # how a trial's learning curve ends: (colour, marker, legend)
    TrialState.COMPLETE: ("tab:blue", "o", "complete"),
    TrialState.PRUNED: ("tab:orange", "x", "pruned"),
    STOPPED_ON_PURPOSE: ("tab:purple", "s", "stopped (resumes)"),
    TrialState.FAIL: ("tab:red", "v", "failed"),
    TrialState.RUNNING: ("tab:gray", ">", "running"),
}


def readable_log_axis(axis, low: float, high: float) -> None:
    """Ticks at 1, 2, 5 x 10^k, or three round ones in a range narrower than that: matplotlib
    labels every minor tick of a narrow log range, one on top of the other."""
    decades = range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
    ticks = [m * 10.0**e for e in decades for m in (1, 2, 5) if low <= m * 10.0**e <= high]
    if len(ticks) < 2:
        ticks = [float(f"{t:.2g}") for t in np.geomspace(low, high, 5)[1:-1]]
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def draw(
    study: optuna.Study,
    frame: pd.DataFrame,
    done: pd.DataFrame,
    front: pd.DataFrame,
    unit: str,
    claim: float,
    out: Path,
) -> list[str]:
    """Every plot there is data for; the files' names, in the order the report shows them."""
    plt.switch_backend("Agg")  # files only, no display
    names = []

    def save(fig, name: str, layout: bool = True) -> None:
        if layout:
            fig.tight_layout()
        fig.savefig(out / name, dpi=90, bbox_inches="tight")
        plt.close(fig)
        names.append(name)

    if len(front):
        save(cost(done, front), "cost.png")
    if any(t.intermediate_values for t in study.get_trials(deepcopy=False)):
        save(learning_curves(study, unit, claim), "curves.png")
    if len(done):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the matplotlib plots are "experimental" in Optuna
            ax = optuna.visualization.matplotlib.plot_optimization_history(study)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # trials are whole numbers
            ax.yaxis.set_major_formatter(PERCENT)
            ax.set_ylabel("validation accuracy, %")
            ax.figure.set_size_inches(7, 4)
            save(ax.figure, "history.png")
            axes = np.atleast_1d(optuna.visualization.matplotlib.plot_slice(study))
            for ax in axes:
                ax.yaxis.set_major_formatter(PERCENT)
                if ax.get_xscale() == "log":
                    readable_log_axis(ax.xaxis, *ax.get_xlim())
            axes[0].set_ylabel("validation accuracy, %")
            axes[0].figure.set_size_inches(3.4 * len(axes) + 1, 3.6)
            save(axes[0].figure, "slice.png", layout=False)  # Optuna laid it out around its colour bar
    for name, (x, y, xl, yl) in {
        "val_vs_test.png": (VAL_ACCURACY, TEST_ACCURACY, "validation", "test (all images)"),
        "full_vs_first128.png": (TEST_ACCURACY, FIRST128_ACCURACY, "test (all images)", "first 128 test images"),
    }.items():
        fig, ax = plt.subplots(figsize=(5, 5))
        ax.plot(100 * done[x], 100 * done[y], "o", clip_on=False)  # a point at 100% stays whole on the axis' edge
        ax.axhline(100 * claim, color="red", linestyle="--", label=f"{100 * claim:.2f}% claim")
        ax.set(xlabel=f"{xl} accuracy, %", ylabel=f"{yl} accuracy, %")
        ax.set_ylim(top=min(100.0, ax.get_ylim()[1]))  # no accuracy above 100%
        ax.legend()
        save(fig, name)
    return names


def cost(done: pd.DataFrame, front: pd.DataFrame):
    """Validation accuracy against training images per training, the Pareto front joined."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(
        done["train_images"] / 1e6, 100 * done[VAL_ACCURACY], "o", color="tab:blue", alpha=0.6, label="completed trial"
    )
    ax.plot(front["train_images"] / 1e6, 100 * front[VAL_ACCURACY], "-o", color="tab:red", label="Pareto front")
    for _, row in front.iterrows():
        ax.annotate(
            str(int(row["number"])),
            (row["train_images"] / 1e6, 100 * row[VAL_ACCURACY]),
            textcoords="offset points",
            xytext=(4, -10),
            fontsize=8,
        )
    ax.set_xscale("log")
    readable_log_axis(ax.xaxis, *ax.get_xlim())
    ax.set(
        xlabel="training images per training, millions",
        ylabel="validation accuracy, %",
        title="Accuracy against cost (trial numbers on the front)",
    )
    ax.legend(loc="lower right")
    return fig


def learning_curves(study: optuna.Study, unit: str, claim: float):
    """Each trial's validation curve as the pruner saw it (Optuna's intermediate values), its
    end marked by how the trial ended."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    seen = set()
    for trial in study.get_trials(deepcopy=False):
        if not trial.intermediate_values:
            continue
        points = sorted(trial.intermediate_values.items())
        state = (
            STOPPED_ON_PURPOSE if trial.state == TrialState.FAIL and trial.user_attrs.get(ATTR_STOPPED) else trial.state
        )
        colour, marker, label = ENDS.get(state, ENDS[TrialState.FAIL])
        xs, ys = [p for p, _ in points], [100 * v for _, v in points]
        ax.plot(xs, ys, "-", color=colour, alpha=0.5, linewidth=1)
        ax.plot(xs[-1:], ys[-1:], marker, color=colour, label=None if state in seen else label)
        seen.add(state)
    ax.axhline(100 * claim, color="red", linestyle="--", linewidth=1)
    ax.set(xlabel=unit, ylabel="validation accuracy, %", title="Learning curves (where each trial ended is marked)")
    low = min(
        100 * min(t.intermediate_values.values()) for t in study.get_trials(deepcopy=False) if t.intermediate_values
    )
    ax.set_ylim(max(low - 1, 0), 100)
    ax.legend(loc="lower right")
    return fig
