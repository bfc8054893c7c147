"""The command line: parse, validate everything, then run; errors become one line here.

`python sweep.py --trials N` runs a study up to N finished trials.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from sweep.errors import SweepError

DEFAULT_STUDY = Path(__file__).resolve().parent.parent / "studies" / "tutorial.toml"


class Parser(argparse.ArgumentParser):
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


def parser() -> Parser:
    p = Parser(prog="sweep.py", description="Optuna sweeps of the 2017 tutorial LSTM on MNIST, recorded in MLflow.")
    p.add_argument("--trials", type=positive_int, default=20, help="target number of finished trials in the study (default 20)")
    p.add_argument("--study", type=Path, default=DEFAULT_STUDY, help="study spec, TOML (default studies/tutorial.toml)")
    p.add_argument("--study-name", help="Optuna study and MLflow experiment name (default: the spec's name)")
    p.add_argument("--data-dir", default=os.environ.get("SWEEP_DATA_DIR"),
                   help="directory with the four MNIST IDX files (default $SWEEP_DATA_DIR; unset: download)")
    p.add_argument("--storage", default="sqlite:///optuna.db", help="Optuna storage URL (default sqlite:///optuna.db)")
    p.add_argument("--tracking-uri", default="sqlite:///mlflow.db", help="MLflow tracking URI (default sqlite:///mlflow.db)")
    p.add_argument("--timeout", type=positive_float, help="stop starting trials after this many seconds")
    return p


def quiet_libraries() -> None:
    """Our own lines say what happened; Optuna's and MLflow's INFO logs would repeat it."""
    import logging

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


def run(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from sweep.data import load_mnist
    from sweep.spec import load_spec
    from sweep.study import finished_trials, open_study, run_study
    from sweep.tracking import Tracker

    quiet_libraries()
    spec = load_spec(args.study)
    if args.study_name:
        spec = dataclasses.replace(spec, name=args.study_name)
    mnist = load_mnist(args.data_dir)
    tracker = Tracker(args.tracking_uri, spec)
    study = open_study(spec, args.storage)
    tracker.start(args.storage)

    done = finished_trials(study)
    started = time.monotonic()
    bar = tqdm(total=args.trials, initial=min(done, args.trials), desc=spec.name, unit="trial", dynamic_ncols=True)

    def on_trial(trial) -> None:
        bar.write(trial_line(trial))
        bar.n = min(finished_trials(study), args.trials)
        if study.best_trials:
            bar.set_postfix_str(f"best val {100 * study.best_value:.2f}%")
        bar.refresh()

    status = "FAILED"
    try:
        run_study(study, spec, tracker, mnist, args.trials, args.timeout, on_trial)
        status = "FINISHED" if finished_trials(study) >= args.trials else "RUNNING"
    finally:
        bar.close()
        if status != "RUNNING":
            tracker.close(status)
    minutes = (time.monotonic() - started) / 60
    print(f"study '{spec.name}': {finished_trials(study)}/{args.trials} trials finished ({minutes:.1f} min in this run)")
    if study.best_trials:
        best = study.best_trial
        print(f"best on validation: trial {best.number}, val {100 * best.value:.2f}%, test {best.user_attrs['test']}, "
              f"first 128 test images {best.user_attrs['test_first128']}")


def trial_line(trial) -> str:
    """One summary line per finished trial."""
    p = trial.params
    head = (f"trial {trial.number:4d}  units={p.get('num_units')} lr={p.get('learning_rate', 0):.2e} "
            f"batch={p.get('batch_size')} fb={p.get('forget_bias', 0):.2f}")
    if trial.value is None:
        return f"{head}  {trial.state.name.lower()}"
    a = trial.user_attrs
    return f"{head}  val {100 * trial.value:.2f}%  test {a['test']}  first128 {a['test_first128']}  {a['train_seconds']:.1f}s"


def secrets(args: argparse.Namespace) -> list[str]:
    from urllib.parse import urlsplit

    found = []
    for url in (getattr(args, "storage", None), getattr(args, "tracking_uri", None)):
        password = urlsplit(url).password if url else None
        if password:
            found.append(password)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        run(args)
    except SweepError as e:
        message = str(e)
        for secret in secrets(args):
            message = message.replace(secret, "***")
        print(f"sweep.py: error: {message}", file=sys.stderr)
        return 2
    return 0
