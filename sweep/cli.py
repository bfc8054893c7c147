"""The command line: parse the flags, dispatch to `sweep.commands`, and turn the errors a user
can cause into one line and exit code 2, here and only here.

`python sweep.py --trials N` runs a study up to N finished trials. Settings come from flags,
else from the ecosystem's environment variables (MLFLOW_TRACKING_URI, OPTUNA_STORAGE,
SWEEP_DATA_DIR), else from defaults in the current folder.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from sweep.errors import SweepError
from sweep.search.spec import DEFAULT_STUDY
from sweep.search.storage import GRACE_PERIOD, HEARTBEAT_INTERVAL
from sweep.training.config import LSTM_BACKENDS


class Parser(argparse.ArgumentParser):
    def __init__(self, **kwargs):
        super().__init__(allow_abbrev=False, **kwargs)  # --trial must not quietly mean --trials

    def error(self, message: str) -> None:  # one line, not argparse's usage block
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be a positive number of seconds")
    return value


_IMAGE_UNITS = {"k": 1_000, "K": 1_000, "M": 1_000_000}


def image_count(text: str) -> int:
    """A number of training images: 220000, 500k or 3.3M."""
    number, scale = (text[:-1], _IMAGE_UNITS[text[-1]]) if text[-1:] in _IMAGE_UNITS else (text, 1)
    try:
        value = float(number) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of images (e.g. 220000, 500k, 3.3M)") from None
    if not 1 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be at least 1 image")
    return round(value)


def add_stores(p: argparse.ArgumentParser, storage: bool = True) -> None:
    """--storage and --tracking-uri, defaulting to the environment as it is when parsing."""
    if storage:
        p.add_argument(
            "--storage",
            default=os.environ.get("OPTUNA_STORAGE", "sqlite:///optuna.db"),
            help="Optuna storage URL (default $OPTUNA_STORAGE, else sqlite:///optuna.db)",
        )
    p.add_argument(
        "--tracking-uri",
        default=os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db"),
        help="MLflow tracking URI (default $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)",
    )


def add_data_dir(p: argparse.ArgumentParser, default_from_environment: bool = True) -> None:
    p.add_argument(
        "--data-dir",
        default=os.environ.get("SWEEP_DATA_DIR") if default_from_environment else None,
        help="directory with the four MNIST IDX files (default $SWEEP_DATA_DIR; unset: download once)",
    )


def add_training(p: argparse.ArgumentParser) -> None:
    """What every command that trains takes: the data, the stores, the LSTM backend."""
    add_data_dir(p)
    add_stores(p)
    p.add_argument(
        "--lstm-backend",
        choices=LSTM_BACKENDS,
        default="auto",
        help="how the LSTM trains: native (a compiled CPU op, fastest on a CPU), keras (keras.layers.LSTM; "
        "cuDNN on a GPU) or auto (keras on a GPU, else native if it builds, else keras; the default)",
    )


def add_study_name(p: argparse.ArgumentParser) -> None:
    p.add_argument("--study-name", help="the study (default: the only one in the storage)")


def sweep_parser() -> Parser:
    p = Parser(
        prog="sweep.py",
        description="Optuna sweeps of the 2017 tutorial LSTM on MNIST, recorded in MLflow.",
        epilog="other commands: sweep.py report | baseline | confirm | reproduce RUN_ID | frontier (each with --help)",
    )
    p.add_argument(
        "--trials", type=positive_int, default=20, help="target number of finished trials in the study (default 20)"
    )
    p.add_argument(
        "--study",
        default=DEFAULT_STUDY,
        help="study spec: a TOML file, or the name of one of the tool's own "
        f"(tutorial, recipe, beat-claim, claim, smoke; default {DEFAULT_STUDY})",
    )
    p.add_argument("--study-name", help="Optuna study and MLflow experiment name (default: the spec's name)")
    add_training(p)
    p.add_argument(
        "--timeout",
        type=positive_float,
        metavar="SECONDS",
        help="the sweep's time budget: after it no trial starts, and a running one is checkpointed and "
        "stopped, to resume first when the same command runs again",
    )
    p.add_argument(
        "--max-images",
        type=image_count,
        metavar="N",
        help="the study's budget in training images (e.g. 3.3M, 500k, 220000), pruned and stopped trials "
        "included: once its trials have spent N, no trial starts, and a running one is checkpointed "
        "and stopped, to resume when the study runs again with a larger budget",
    )
    p.add_argument("--n-jobs", type=positive_int, default=1, help="worker processes on this machine (default 1)")
    p.add_argument(
        "--heartbeat-interval",
        type=positive_int,
        default=HEARTBEAT_INTERVAL,
        metavar="SECONDS",
        help=f"seconds between a running trial's heartbeats in the Optuna storage (default {HEARTBEAT_INTERVAL})",
    )
    p.add_argument(
        "--grace-period",
        type=positive_int,
        default=GRACE_PERIOD,
        metavar="SECONDS",
        help="a trial without a heartbeat this long belongs to a lost worker: it is failed and queued again, "
        f"to resume from its last checkpoint (default {GRACE_PERIOD})",
    )
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # one of --n-jobs' processes
    return p


def report_parser() -> Parser:
    p = Parser(
        prog="sweep.py report",
        description="Write the study's report (CSV, Markdown, HTML, plots) and log it to MLflow.",
    )
    add_study_name(p)
    add_stores(p)
    p.add_argument("--out", type=Path, help="output folder (default reports/<study>/)")
    return p


def seeds_parser(command: str) -> Parser:
    """`baseline` and `confirm`: one configuration, or the top trials', over seeds."""
    about = {
        "baseline": "Train the study's baseline (trial 0's configuration) with several seeds.",
        "confirm": "Train the study's top trials again with several seeds and choose among them on mean validation "
        "accuracy, as good meaning image by image (McNemar).",
    }
    p = Parser(prog=f"sweep.py {command}", description=about[command])
    if command == "confirm":
        p.add_argument(
            "--top", type=positive_int, default=3, help="how many trials, best validation accuracy first (default 3)"
        )
    p.add_argument(
        "--seeds",
        type=positive_int,
        default=5,
        help="seeds 0..S-1; recorded seeds are not trained again, stopped ones resume (default 5)",
    )
    if command == "baseline":
        p.add_argument(
            "--study",
            help="study spec, file or name (default: the spec of --study-name, or of the storage's "
            f"only study; with neither, {DEFAULT_STUDY})",
        )
    add_study_name(p)
    add_training(p)
    return p


def frontier_parser() -> Parser:
    p = Parser(
        prog="sweep.py frontier",
        description="What each budget buys: a row per study confirm has chosen in; at each budget, validation "
        "chooses the point.",
    )
    p.add_argument(
        "--study-name",
        action="append",
        help="a study (repeat for several; default: every study in the storage that confirm has chosen in)",
    )
    add_stores(p)
    p.add_argument(
        "--store",
        type=Path,
        action="append",
        metavar="FOLDER",
        help="instead of --storage and --tracking-uri: a folder holding optuna.db and mlflow.db, as a sweep "
        "leaves them (repeat for several; bench/search.py keeps one per sampler seed)",
    )
    p.add_argument(
        "--rows",
        type=Path,
        action="append",
        metavar="CSV",
        help="the rows of a frontier.csv written before, say from stores on another machine, merged with the stores "
        "given (repeat for several; alone, no store is read)",
    )
    p.add_argument(
        "--out", type=Path, default=Path("reports") / "frontier", help="output folder (default reports/frontier/)"
    )
    return p


def reproduce_parser() -> Parser:
    p = Parser(
        prog="sweep.py reproduce", description="Train a logged trial again from its MLflow run and compare results."
    )
    p.add_argument("run_id", nargs="?", help="the trial's MLflow run id")
    p.add_argument(
        "--trial", type=int, help="the trial number instead (of --study-name, default: the store's only study)"
    )
    add_study_name(p)
    p.add_argument("--evaluate-only", action="store_true", help="re-evaluate the logged model instead of re-training")
    add_data_dir(p, default_from_environment=False)  # the run's own folder comes before $SWEEP_DATA_DIR
    add_stores(p, storage=False)
    return p


COMMANDS = {  # the word after sweep.py -> (its parser, the name of its function in sweep.commands)
    "report": (report_parser, "report"),
    "baseline": (lambda: seeds_parser("baseline"), "baseline"),
    "confirm": (lambda: seeds_parser("confirm"), "confirm"),
    "reproduce": (reproduce_parser, "reproduce"),
    "frontier": (frontier_parser, "frontier"),
}


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: `python sweep.py [COMMAND] ARGS`. Its exit code (2: bad input, one line)."""
    started = time.monotonic()
    argv = list(sys.argv[1:] if argv is None else argv)
    make_parser, command = COMMANDS.get(argv[0], (None, None)) if argv else (None, None)
    args = (make_parser() if command else sweep_parser()).parse_args(argv[1:] if command else argv)
    from sweep import commands, console  # after parsing: --help and bad flags need nothing more
    from sweep.stores import password
    from sweep.tracking.store import pool_settings

    for name, value in {**console.QUIET_ENVIRONMENT, **pool_settings(args.tracking_uri)}.items():
        os.environ.setdefault(name, value)
    console.setup_logging(logging.WARNING if getattr(args, "worker", False) else logging.INFO)
    try:
        return getattr(commands, command)(args) if command else commands.run(args, argv, started)
    except SweepError as e:
        message = str(e)
        for secret in filter(None, (password(getattr(args, "storage", None)), password(args.tracking_uri))):
            message = message.replace(secret, "***")
        print(f"sweep.py: error: {message}", file=sys.stderr)
        return 2
