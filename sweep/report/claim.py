"""The tutorial's claim, 99.21%, and every way the report holds a result against it: where it
lies against an interval, and when a study's validation-chosen trial first reached it."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from sweep.report.frame import accuracy_of, completed, cpus, spent_by
from sweep.stats import TEST_ACCURACY, VAL_ACCURACY, Accuracy, images
from sweep.training.data import TEST_IMAGES

CLAIM = 0.9921  # the tutorial's figure
CLAIM_COUNTS = Accuracy(127, 128)  # what it was: 127 of the first 128 test images


def pct(x: float) -> str:
    return f"{100 * x:.2f}%"


THE_CLAIM = pct(CLAIM)


def claim_verdict(low: float, high: float, claim: float = CLAIM) -> str:
    """Where the claim lies relative to an interval."""
    return "below" if claim < low else "above" if claim > high else "inside"


def where_claim(low: float, high: float, interval: str) -> str:
    """The claim against an interval, naming which interval it is."""
    meaning = {
        "below": "the result beats the claim",
        "inside": "the result is consistent with the claim",
        "above": "the result falls short of the claim",
    }
    where = claim_verdict(low, high)
    return f"{THE_CLAIM} lies {where} {interval} ({pct(low)} – {pct(high)}): {meaning[where]}."


def verdict_sentence(acc: Accuracy) -> str:
    return where_claim(*acc.interval(), "its 95% Wilson interval")


def test_set(acc: Accuracy) -> str:
    """What a test figure was measured on: all test images, or a study's slice of them."""
    return (
        "all test images"
        if acc.total == TEST_IMAGES
        else f"the first {acc.total} test images only (the study's test_limit)"
    )


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
        if best is None or (row[VAL_ACCURACY], -row["number"]) > (best[VAL_ACCURACY], -best["number"]):
            best = row
        test = accuracy_of(best, TEST_ACCURACY)
        if test.value >= CLAIM and test.total == TEST_IMAGES:
            minutes = (row["completed"] - frame["started"].min()).total_seconds() / 60
            return ClaimReached(int(best["number"]), test, spent_by(frame, row["completed"]), minutes)
    return None


def time_to_claim(frame: pd.DataFrame) -> str:
    """The claim reached, in training images (the machine-free cost) and in minutes on the CPU
    the runs recorded (`claim_reached`)."""
    reached = claim_reached(frame)
    if reached is None:
        return f"Time to the claim: no validation-best trial has reached {THE_CLAIM} on all test images yet."
    return (
        f"Time to the claim: {images(reached.images)} training images and {reached.minutes:.1f} min "
        f"(on {cpus(frame)}) after the study's first trial started, the validation-best trial (trial "
        f"{reached.trial}) had {reached.test} on all test images."
    )
