"""What a checkpoint costs, beside the training it saves, measured side by side in one run.

    python bench/checkpoint.py [--repeats 5] [--data-dir DIR]

For two recipes, the tutorial's (128 units, batch 128, a curve point every 200 steps) and the
claim study's confirmed trial (311 units, batch 187, 20 epochs one-cycle with shifts and
clipping: a point per epoch), it trains one curve interval, then writes that interval's
checkpoint to an MLflow run (a fresh SQLite store and artifact folder, as a sweep on one machine
does; a tracking server adds the network) and reads it back, `repeats` times each. It prints
the seconds of each against the interval's optimizer seconds, and the checkpoint's size: the
most a sweep's artifact store holds of it per running trial (one per trial, two for a moment
while the next replaces it).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sweep.console import QUIET_ENVIRONMENT

os.environ.update(QUIET_ENVIRONMENT)  # before TensorFlow is imported

from mlflow import MlflowClient

from sweep.tracking.checkpoints import find_checkpoint
from sweep.tracking.runs import ConfigRun
from sweep.training.config import TrainConfig, cpu_model
from sweep.training.data import load_mnist
from sweep.training.hooks import Hooks
from sweep.training.model import choose_backend
from sweep.training.train import train

RECIPES = {
    "tutorial (200 steps)": TrainConfig(train_steps=400, eval_every=200),
    "claim trial 4 (one epoch)": TrainConfig(
        num_units=311,
        learning_rate=0.00312,
        batch_size=187,
        forget_bias=1.43,
        epochs=2,
        lr_schedule="one_cycle",
        clip_norm=1.0,
        shift_pixels=1,
    ),
}


class _FirstCheckpoint(Hooks):
    """Stops the training at its first checkpoint, and keeps it."""

    class Done(Exception):
        pass

    def on_checkpoint(self, checkpoint):
        self.checkpoint = checkpoint
        raise self.Done


def first_checkpoint(config: TrainConfig, mnist, backend):
    """The checkpoint a training hands out at its first curve point."""
    hooks = _FirstCheckpoint()
    try:
        train(config, mnist, backend, hooks)
    except _FirstCheckpoint.Done:
        return hooks.checkpoint
    raise AssertionError("the training gave no checkpoint")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--data-dir", default=os.environ.get("SWEEP_DATA_DIR"), help="the MNIST folder (default $SWEEP_DATA_DIR)"
    )
    args = parser.parse_args()
    mnist, backend = load_mnist(args.data_dir), choose_backend("auto")
    print(f"{cpu_model()}, {backend.name} backend, {backend.chains} chains; median of {args.repeats}")
    print("| recipe | interval's training | checkpoint | write | % of the interval | read | % of the interval |")
    print("|---|---|---|---|---|---|---|")
    for name, config in RECIPES.items():
        checkpoint = first_checkpoint(replace(config, curve_val_limit=1000), mnist, backend)
        interval = checkpoint.curve[-1].train_seconds
        with tempfile.TemporaryDirectory() as folder:
            client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
            experiment = client.create_experiment("bench", artifact_location=f"{folder}/artifacts")
            run = ConfigRun(client, experiment, client.create_run(experiment).info.run_id)
            run.save_checkpoint(checkpoint)  # the first write also makes the folders
            writes, reads = [], []
            for _ in range(args.repeats):
                started = time.perf_counter()
                run.save_checkpoint(
                    replace(checkpoint, step=checkpoint.step + len(writes) + 1)
                )  # a new name each time, as a sweep's
                writes.append(time.perf_counter() - started)
                started = time.perf_counter()
                find_checkpoint(client, run.run_id)
                reads.append(time.perf_counter() - started)
            size = len(checkpoint.to_bytes())
        write, read = statistics.median(writes), statistics.median(reads)
        print(
            f"| {name} | {interval:.2f} s | {size / 1e6:.2f} MB | {1000 * write:.0f} ms "
            f"| {100 * write / interval:.2f}% "
            f"| {1000 * read:.0f} ms | {100 * read / interval:.2f}% |",
            flush=True,
        )


if __name__ == "__main__":
    main()
