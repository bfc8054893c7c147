"""The command line: parse, validate everything, then run; errors become one line here.

`python sweep.py --trials N` runs a study up to N finished trials.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sweep.errors import SweepError

if TYPE_CHECKING:  # imported where used: TensorFlow is slow to import, and --help should be fast
    from sweep.data import Mnist
    from sweep.model import Backend

DEFAULT_STUDY = "tutorial"  # sweep/studies/tutorial.toml


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


def add_data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default=os.environ.get("SWEEP_DATA_DIR"),
                   help="directory with the four MNIST IDX files (default $SWEEP_DATA_DIR; unset: download)")


def add_lstm_backend(p: argparse.ArgumentParser) -> None:
    from sweep.config import LSTM_BACKENDS

    p.add_argument("--lstm-backend", choices=LSTM_BACKENDS, default="auto",
                   help="how the LSTM trains: native (a compiled CPU op, fastest on a CPU), keras (keras.layers.LSTM; "
                        "cuDNN on a GPU) or auto (keras on a GPU, else native if it builds, else keras; the default)")


def add_tracking_uri(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tracking-uri", default="sqlite:///mlflow.db", help="MLflow tracking URI (default sqlite:///mlflow.db)")


def sweep_parser() -> Parser:
    p = Parser(
        prog="sweep.py",
        description="Optuna sweeps of the 2017 tutorial LSTM on MNIST, recorded in MLflow.",
        epilog="other commands: sweep.py report | baseline | reproduce RUN_ID (each with --help)",
    )
    p.add_argument("--trials", type=positive_int, default=20, help="target number of finished trials in the study (default 20)")
    add_study_options(p)
    add_data_dir(p)
    p.add_argument("--storage", default="sqlite:///optuna.db", help="Optuna storage URL (default sqlite:///optuna.db)")
    add_tracking_uri(p)
    p.add_argument("--timeout", type=positive_float, help="the sweep's time budget: after it, no trial starts and a running one is stopped (FAIL, its run KILLED)")
    p.add_argument("--n-jobs", type=positive_int, default=1, help="worker processes on this machine (default 1)")
    add_lstm_backend(p)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # one of --n-jobs' processes
    return p


def add_study_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--study", default=DEFAULT_STUDY,
                   help="study spec: a TOML file, or the name of one of the tool's own (tutorial, beat-claim, smoke; default tutorial)")
    p.add_argument("--study-name", help="Optuna study and MLflow experiment name (default: the spec's name)")


def report_parser() -> Parser:
    p = Parser(prog="sweep.py report", description="Write the study's report (CSV, Markdown, HTML, plots) and log it to MLflow.")
    p.add_argument("--study-name", default="tutorial", help="the study (default tutorial)")
    p.add_argument("--storage", default="sqlite:///optuna.db", help="Optuna storage URL (default sqlite:///optuna.db)")
    add_tracking_uri(p)
    p.add_argument("--out", type=Path, help="output folder (default reports/<study>/)")
    return p


def baseline_parser() -> Parser:
    p = Parser(prog="sweep.py baseline", description="Train the study's baseline (the tutorial) with several seeds.")
    p.add_argument("--seeds", type=positive_int, default=5, help="seeds 0..K-1; recorded seeds are not trained again (default 5)")
    add_study_options(p)
    add_data_dir(p)
    add_tracking_uri(p)
    add_lstm_backend(p)
    return p


def reproduce_parser() -> Parser:
    p = Parser(prog="sweep.py reproduce", description="Train a logged trial again from its MLflow run and compare results.")
    p.add_argument("run_id", nargs="?", help="the trial's MLflow run id")
    p.add_argument("--study-name", help="with --trial: find the run by study and trial number instead")
    p.add_argument("--trial", type=int, help="the trial number, with --study-name")
    p.add_argument("--evaluate-only", action="store_true", help="re-evaluate the logged model instead of re-training")
    add_data_dir(p)
    add_tracking_uri(p)
    return p


def quiet_libraries() -> None:
    """Our own lines say what happened; the libraries' start-up chatter would bury them.

    TensorFlow's C++ side logs at load time before any log level applies, and again when it
    first looks for GPUs, so stderr is closed for the length of both (Python errors still show: it is restored first)."""
    import logging

    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow

        tensorflow.config.list_physical_devices("GPU")  # probing for CUDA logs errors when there is none
    finally:
        os.dup2(saved, 2)
        os.close(devnull)
        os.close(saved)
    import mlflow  # noqa: F401  (sets its loggers' levels when imported: import it before setting them)
    import optuna

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # failed and pruned trials get our own line
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeat, retry
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


def load_study_spec(args: argparse.Namespace):
    """The spec, checked before TensorFlow is imported: a bad study file is answered at once."""
    from sweep.spec import load_spec

    spec = load_spec(args.study)
    return dataclasses.replace(spec, name=args.study_name) if args.study_name else spec


def prepare(data_dir: str | None, lstm_backend: str) -> tuple[Mnist, Backend]:
    """What every training command needs, checked before anything is recorded: MNIST, and the
    LSTM backend (the native op is built on first use)."""
    from sweep.data import load_mnist
    from sweep.model import choose_backend

    return load_mnist(data_dir), choose_backend(lstm_backend)


def run(args: argparse.Namespace, argv: list[str], started: float) -> int:
    spec = load_study_spec(args)
    quiet_libraries()
    from optuna.trial import TrialState
    from tqdm import tqdm

    from sweep.records import StudyTracker
    from sweep.report import write_report
    from sweep.stores import mlflow_client
    from sweep.study import open_study, run_study
    from sweep.workers import FINISHED, Interrupted, finished_trials, is_surplus, request_stop, run_workers

    mnist, backend = prepare(args.data_dir, args.lstm_backend)
    client = mlflow_client(args.tracking_uri)
    study = open_study(spec, args.storage, client)
    tracker = StudyTracker(client, spec, args.storage)

    earlier = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}  # not this run's
    bar = None if args.worker else tqdm(
        total=args.trials, initial=min(finished_trials(study), args.trials), desc=spec.name, unit="trial", dynamic_ncols=True
    )

    def show_progress() -> None:
        bar.n = min(finished_trials(study), args.trials)
        if study.best_trials:
            bar.set_postfix_str(f"best val {100 * study.best_value:.2f}%")
        bar.refresh()

    def on_trial(trial) -> None:
        if bar is not None:  # --n-jobs' workers stay silent: the parent reports their trials
            bar.write(trial_line(trial))
            show_progress()

    def on_workers_progress(seen: set[int]) -> None:
        for trial in study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.FAIL)):
            if trial.number not in seen and not is_surplus(trial):
                seen.add(trial.number)
                bar.write(trial_line(trial))
        show_progress()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, request_stop)
    try:
        if args.n_jobs > 1:
            seen = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
            worker_args = [*argv, "--n-jobs", "1", "--worker"]  # their own "--n-jobs 1" comes last and wins
            run_workers(worker_args, args.n_jobs, lambda: on_workers_progress(seen))
        else:
            run_study(study, spec, tracker, mnist, backend, args.trials, args.timeout, on_trial)
    except Interrupted as e:
        tracker.close("KILLED")
        print(f"stopped by {signal.Signals(e.signum).name}: a running trial is recorded as failed (its MLflow run "
              f"KILLED); run the same command again to continue to {args.trials} trials", file=sys.stderr)
        return 128 + e.signum
    except BaseException:
        tracker.close("FAILED")
        raise
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if bar:
            bar.close()
    tracker.close("FINISHED")
    if args.worker:
        return 0
    out = Path("reports") / spec.name
    write_report(study, client, out)
    print(f"study '{spec.name}': {finished_trials(study)}/{args.trials} trials finished")
    training = sum(t.user_attrs.get("train_seconds", 0.0) for t in study.get_trials(deepcopy=False) if t.number not in earlier)
    print(time_line(time.monotonic() - started, training, args.n_jobs))
    if study.best_trials:
        best = study.best_trial
        print(f"best on validation: trial {best.number}, val {accuracy(best, 'val_accuracy')}, "
              f"test {accuracy(best, 'test_accuracy')}, first 128 test images {accuracy(best, 'test_accuracy_first128')}")
    print(f"report: {out / 'report.html'}")
    return 0


def report(args: argparse.Namespace) -> int:
    quiet_libraries()
    from sweep.report import write_report
    from sweep.stores import mlflow_client
    from sweep.study import load_study

    client = mlflow_client(args.tracking_uri)
    study = load_study(args.study_name, args.storage)
    out = args.out or Path("reports") / args.study_name
    frame = write_report(study, client, out)
    print(f"report of {len(frame)} trials: {out / 'report.md'}, {out / 'report.html'}, {out / 'trials.csv'}")
    return 0


def baseline(args: argparse.Namespace) -> int:
    spec = load_study_spec(args)
    quiet_libraries()
    from sweep.baseline import run_baseline
    from sweep.stores import mlflow_client

    mnist, backend = prepare(args.data_dir, args.lstm_backend)
    client = mlflow_client(args.tracking_uri)

    def on_seed(seed, result) -> None:
        a = {k: str(v) for k, v in result.accuracies.items()}
        print(f"seed {seed}  val {a['val_accuracy']}  test {a['test_accuracy']}  first128 {a['test_accuracy_first128']}  "
              f"{result.train_seconds:.0f}s")

    run_baseline(client, spec, mnist, backend, args.seeds, on_seed)
    print(f"baseline of '{spec.name}': seeds 0-{args.seeds - 1} recorded; see `python sweep.py report --study-name {spec.name}`")
    return 0


def reproduce(args: argparse.Namespace) -> int:
    """Exit 0 when the reproduction agrees with the logged result, 1 when it does not."""
    if (args.run_id is None) == (args.study_name is None or args.trial is None):
        raise SweepError("give either a RUN_ID or both --study-name and --trial")
    quiet_libraries()
    from sweep import reproduce as rep
    from sweep.data import load_mnist
    from sweep.stores import mlflow_client

    client = mlflow_client(args.tracking_uri)
    run = rep.find_run(client, args.run_id, args.study_name, args.trial)
    mnist = load_mnist(args.data_dir)
    backend = rep.recorded_backend(run, warn=lambda line: print(line, file=sys.stderr))
    how = "re-evaluating its logged model" if args.evaluate_only else f"re-training it ({backend.name} backend)"
    print(f"reproducing {run.info.run_name} (run {run.info.run_id}) by {how}")
    comparison = rep.reproduce(client, run, mnist, backend, args.evaluate_only)
    print("\n".join(rep.comparison_lines(comparison)))
    return 0 if comparison.agrees else 1


COMMANDS = {
    "report": (report_parser, report),
    "baseline": (baseline_parser, baseline),
    "reproduce": (reproduce_parser, reproduce),
}


def time_line(wall: float, training: float, workers: int) -> str:
    """Where this run's time went: optimizer steps versus everything else (start-up, data,
    evaluation, Optuna and MLflow bookkeeping, saving models, the report)."""
    share = training / (wall * workers)
    of = "the wall time" if workers == 1 else f"{workers} workers x the wall time"
    return (f"time: {wall / 60:.1f} min wall; training {training / 60:.1f} min = {100 * share:.1f}% of {of}, "
            f"everything else {100 * (1 - share):.1f}%")


def accuracy(trial, name: str) -> str:
    """A trial's accuracy as recorded in its user attributes (counts; studies begun before
    commit 3ed3be4 kept it as text), fit to print."""
    from sweep.stats import Accuracy

    value = trial.user_attrs[name]
    return value if isinstance(value, str) else str(Accuracy(*value))


def trial_line(trial) -> str:
    """One summary line per finished trial."""
    params = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items())
    head = f"trial {trial.number:4d}  {params}"
    a = trial.user_attrs
    if trial.state.name == "PRUNED":
        from sweep.stats import Accuracy

        return f"{head}  pruned at {a['pruned']['at']}, val {Accuracy(*a['pruned']['val'])}"
    if trial.value is None:
        return f"{head}  {trial.state.name.lower()}: {a.get('failure', 'see its MLflow run')}"
    return (f"{head}  val {accuracy(trial, 'val_accuracy')}  test {accuracy(trial, 'test_accuracy')}  "
            f"first128 {accuracy(trial, 'test_accuracy_first128')}  {a['train_seconds']:.0f}s")


def passwords(*urls: str | None) -> list[str]:
    """The passwords inside these URLs, so that no message shows them."""
    from urllib.parse import urlsplit

    return [p for p in (urlsplit(url).password if url else None for url in urls) if p]


def main(argv: Sequence[str] | None = None) -> int:
    started = time.monotonic()
    argv = list(sys.argv[1:] if argv is None else argv)
    make_parser, command = COMMANDS.get(argv[0], (None, None)) if argv else (None, None)
    args = (make_parser() if command else sweep_parser()).parse_args(argv[1:] if command else argv)
    try:
        return command(args) if command else run(args, argv, started)
    except SweepError as e:
        message = str(e)
        for secret in passwords(getattr(args, "storage", None), getattr(args, "tracking_uri", None)):
            message = message.replace(secret, "***")
        print(f"sweep.py: error: {message}", file=sys.stderr)
        return 2
