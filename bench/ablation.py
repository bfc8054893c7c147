"""What each addition to the training recipe buys, on validation accuracy only.

    python bench/ablation.py [--seeds 0,1] [--base SETTINGS] [--data-dir DIR] RECIPE [RECIPE ...]

Each RECIPE is a row: comma-separated TrainConfig settings laid over the base recipe, "" for the
base itself. The base is trial 15 of studies/beat-claim.toml (its four searched values on that
study's 20 epochs, one-cycle schedule and clipping), with --base's settings laid over it. For
example

    python bench/ablation.py "" shift_pixels=1 shift_pixels=2 "shift_pixels=2,ema_momentum=0.999"

Every row trains with each seed on the 55,000 training images and prints its accuracy on the
5,000 validation images as soon as it is known, and, from the second row on, how it compares with
the first row on the same images, seed by seed: the images only this row gets right, those only
the first row gets right, and McNemar's exact p over all seeds (a paired test; two rows' means
alone cannot say whether a difference of a few images is one). Test accuracy is not printed:
choices about the recipe are made here, so the test set stays out of them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from sweep.console import QUIET_ENVIRONMENT

os.environ.update(QUIET_ENVIRONMENT)  # before TensorFlow is imported

from sweep.stats import Paired
from sweep.training.config import TrainConfig
from sweep.training.data import load_mnist
from sweep.training.model import choose_backend
from sweep.training.train import train

BASE = TrainConfig(
    num_units=195,
    learning_rate=0.004717,
    batch_size=98,
    forget_bias=0.809,
    epochs=20,
    lr_schedule="one_cycle",
    clip_norm=1.0,
)


def recipe(text: str, base: TrainConfig = BASE) -> TrainConfig:
    """`base` with `key=value,...` laid over it, each value of its field's type."""
    types, changes = TrainConfig.field_types(), {}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        if key not in types:
            sys.exit(f"ablation: unknown setting {key!r} (known: {', '.join(types)})")
        changes[key] = None if value == "None" else types[key](value)
    return replace(base, **changes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recipes", nargs="+", metavar="RECIPE")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (default: 0)")
    parser.add_argument("--base", default="", help="settings laid over trial 15 of beat-claim to make the base")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=os.environ.get("SWEEP_DATA_DIR"),
        help="the MNIST folder (default $SWEEP_DATA_DIR; unset: download)",
    )
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    base = recipe(args.base)
    configs = [recipe(text, base) for text in args.recipes]
    mnist, backend = load_mnist(args.data_dir), choose_backend("auto")

    print(
        f"| recipe (over {'the base' if args.base else 'trial 15 of beat-claim'}) | "
        f"{' | '.join(f'val seed {s}' for s in seeds)} | mean | against the first row | minutes |"
    )
    print(f"|---|{'---|' * len(seeds)}---|---|---|")
    first_hits = None
    for text, config in zip(args.recipes, configs, strict=True):
        started, vals, seed_hits = time.perf_counter(), [], []
        for seed in seeds:
            result = train(replace(config, seed=seed), mnist, backend)
            vals.append(result.accuracies["val_accuracy"])
            seed_hits.append(result.predictions["val"] == result.predictions["val_labels"])
        minutes = (time.perf_counter() - started) / 60 / len(seeds)
        cells = " | ".join(f"{v.value:.2%} ({v.correct}/{v.total})" for v in vals)
        mean = statistics.mean(v.value for v in vals)
        hits = np.concatenate(seed_hits)  # seed by seed: each seed's images paired with the first row's same seed
        if first_hits is None:
            first_hits, against = hits, "—"
        else:
            paired = Paired.of(hits, first_hits)
            against = f"+{paired.only_a} / −{paired.only_b} images, p = {paired.p_value:.2g}"
        print(f"| {text or 'base'} | {cells} | {mean:.2%} | {against} | {minutes:.1f} |", flush=True)


if __name__ == "__main__":
    main()
