"""The command line: parse, check every input, then run; errors become one line here.

`python sweep.py --trials N` runs a study up to N finished trials. Settings come from flags,
else from the ecosystem's environment variables (MLFLOW_TRACKING_URI, OPTUNA_STORAGE,
SWEEP_DATA_DIR), else from defaults in the current folder.
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

from sweep.config import GRACE_PERIOD, HEARTBEAT_INTERVAL
from sweep.errors import SweepError

if TYPE_CHECKING:  # imported where used: TensorFlow is slow to import, and --help should be fast
    from sweep.data import Mnist
    from sweep.model import Backend
    from sweep.spec import Spec

DEFAULT_STUDY = "tutorial"  # sweep/studies/tutorial.toml
STORAGE = os.environ.get("OPTUNA_STORAGE", "sqlite:///optuna.db")
TRACKING_URI = os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")


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


def add_data_dir(p: argparse.ArgumentParser, default: str | None = os.environ.get("SWEEP_DATA_DIR")) -> None:
    p.add_argument("--data-dir", default=default,
                   help="directory with the four MNIST IDX files (default $SWEEP_DATA_DIR; unset: download once)")


def add_lstm_backend(p: argparse.ArgumentParser) -> None:
    from sweep.config import LSTM_BACKENDS

    p.add_argument("--lstm-backend", choices=LSTM_BACKENDS, default="auto",
                   help="how the LSTM trains: native (a compiled CPU op, fastest on a CPU), keras (keras.layers.LSTM; "
                        "cuDNN on a GPU) or auto (keras on a GPU, else native if it builds, else keras; the default)")


def add_stores(p: argparse.ArgumentParser, storage: bool = True) -> None:
    if storage:
        p.add_argument("--storage", default=STORAGE, help="Optuna storage URL (default $OPTUNA_STORAGE, else sqlite:///optuna.db)")
    p.add_argument("--tracking-uri", default=TRACKING_URI,
                   help="MLflow tracking URI (default $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)")


def add_study_name(p: argparse.ArgumentParser) -> None:
    p.add_argument("--study-name", help="the study (default: the only one in the storage)")


def sweep_parser() -> Parser:
    p = Parser(
        prog="sweep.py",
        description="Optuna sweeps of the 2017 tutorial LSTM on MNIST, recorded in MLflow.",
        epilog="other commands: sweep.py report | baseline | confirm | reproduce RUN_ID (each with --help)",
    )
    p.add_argument("--trials", type=positive_int, default=20, help="target number of finished trials in the study (default 20)")
    p.add_argument("--study", default=DEFAULT_STUDY,
                   help="study spec: a TOML file, or the name of one of the tool's own (tutorial, beat-claim, claim, smoke; default tutorial)")
    p.add_argument("--study-name", help="Optuna study and MLflow experiment name (default: the spec's name)")
    add_data_dir(p)
    add_stores(p)
    p.add_argument("--timeout", type=positive_float, metavar="SECONDS",
                   help="the sweep's time budget in seconds: after it, no trial starts and a running one is stopped (FAIL, its run KILLED)")
    p.add_argument("--n-jobs", type=positive_int, default=1, help="worker processes on this machine (default 1)")
    p.add_argument("--heartbeat-interval", type=positive_int, default=HEARTBEAT_INTERVAL, metavar="SECONDS",
                   help=f"seconds between a running trial's heartbeats in the Optuna storage (default {HEARTBEAT_INTERVAL})")
    p.add_argument("--grace-period", type=positive_int, default=GRACE_PERIOD, metavar="SECONDS",
                   help="a trial without a heartbeat this long belongs to a lost worker: it is failed and its "
                        f"parameters queued again (default {GRACE_PERIOD})")
    add_lstm_backend(p)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # one of --n-jobs' processes
    return p


def report_parser() -> Parser:
    p = Parser(prog="sweep.py report", description="Write the study's report (CSV, Markdown, HTML, plots) and log it to MLflow.")
    add_study_name(p)
    add_stores(p)
    p.add_argument("--out", type=Path, help="output folder (default reports/<study>/)")
    return p


def baseline_parser() -> Parser:
    p = Parser(prog="sweep.py baseline", description="Train the study's baseline (trial 0's configuration) with several seeds.")
    p.add_argument("--seeds", type=positive_int, default=5, help="seeds 0..K-1; recorded seeds are not trained again (default 5)")
    p.add_argument("--study", help="study spec, file or name (default: the spec of --study-name, or of the storage's "
                                   "only study; with neither, tutorial)")
    add_study_name(p)
    add_data_dir(p)
    add_stores(p)
    add_lstm_backend(p)
    return p


def confirm_parser() -> Parser:
    p = Parser(prog="sweep.py confirm", description="Train the study's top trials again with several seeds and "
                                                    "choose among them on mean validation accuracy.")
    p.add_argument("--top", type=positive_int, default=3, help="how many trials, best validation accuracy first (default 3)")
    p.add_argument("--seeds", type=positive_int, default=5,
                   help="seeds 0..S-1; a trial's own run is its seed, recorded seeds are not trained again (default 5)")
    add_study_name(p)
    add_data_dir(p)
    add_stores(p)
    add_lstm_backend(p)
    return p


def reproduce_parser() -> Parser:
    p = Parser(prog="sweep.py reproduce", description="Train a logged trial again from its MLflow run and compare results.")
    p.add_argument("run_id", nargs="?", help="the trial's MLflow run id")
    p.add_argument("--trial", type=int, help="the trial number instead (of --study-name, default: the store's only study)")
    add_study_name(p)
    p.add_argument("--evaluate-only", action="store_true", help="re-evaluate the logged model instead of re-training")
    add_data_dir(p, default=None)
    add_stores(p, storage=False)
    return p


def quiet_libraries(tensorflow: bool = True) -> None:
    """Our own lines say what happened; the libraries' start-up chatter would bury them."""
    import logging

    if tensorflow:
        quiet_tensorflow()
    import mlflow  # noqa: F401  (sets its loggers' levels when imported: import it before setting them)
    import optuna

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # failed and pruned trials get our own line
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeat, retry
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


def quiet_tensorflow() -> None:
    """TensorFlow's C++ side logs at load time before any log level applies, and again when it
    first looks for GPUs, so stderr is closed for the length of both (Python errors still show:
    it is restored first)."""
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


def prepare(data_dir: str | None, lstm_backend: str) -> tuple[Mnist, Backend]:
    """What every training command needs, checked before anything is recorded: MNIST, and the
    LSTM backend (the native op is built on first use)."""
    from sweep.data import load_mnist
    from sweep.model import choose_backend

    return load_mnist(data_dir), choose_backend(lstm_backend)


def the_study(name: str | None, storage_url: str) -> str:
    """The study meant: the one named, else the storage's only one."""
    if name:
        return name
    from sweep.stores import study_names

    names = study_names(storage_url)
    if len(names) == 1:
        return names[0]
    if not names:
        raise SweepError("the Optuna storage holds no study yet: run a sweep first (see --storage)")
    raise SweepError(f"the Optuna storage holds {len(names)} studies ({', '.join(names)}): pick one with --study-name")


def baseline_spec(args: argparse.Namespace) -> Spec:
    """The spec whose baseline to train: given, else the one the study was created from (kept
    in the Optuna storage), else the tutorial's."""
    from sweep.spec import load_spec

    if getattr(args, "study", None):  # confirm takes no --study: it needs the study's own
        spec = load_spec(args.study)
        return dataclasses.replace(spec, name=args.study_name) if args.study_name else spec
    from sweep.spec import parse_spec
    from sweep.stores import load_study, study_names

    if not (args.study_name or study_names(args.storage)):
        return load_spec(DEFAULT_STUDY)
    name = the_study(args.study_name, args.storage)
    source = load_study(name, args.storage).user_attrs.get("spec")
    if source is None:
        raise SweepError(f"study '{name}' keeps no study file; give it with --study")
    return dataclasses.replace(parse_spec(source, f"(kept with study '{name}')"), name=name)


def run(args: argparse.Namespace, argv: list[str], started: float) -> int:
    from sweep.spec import load_spec

    spec = load_spec(args.study)  # checked before TensorFlow is imported: a bad study file is answered at once
    if args.study_name:
        spec = dataclasses.replace(spec, name=args.study_name)
    quiet_libraries()
    from optuna.trial import TrialState

    from sweep import console, records
    from sweep.report import write_report
    from sweep.stores import check_storage, mask_url, mlflow_client
    from sweep.study import open_study, run_study
    from sweep.workers import FINISHED, Interrupted, finished_trials, is_surplus, run_workers, stopping_at_safe_points

    mnist, backend = prepare(args.data_dir, args.lstm_backend)
    check_storage(args.storage)  # before the MLflow store is created: bad input writes nothing
    client = mlflow_client(args.tracking_uri)
    study = open_study(spec, args.storage, client, args.heartbeat_interval, args.grace_period)
    tracker = records.StudyTracker(client, spec, args.storage)

    earlier = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}  # not this run's
    progress = None if args.worker else console.SweepProgress(spec.name, args.trials, finished_trials(study), args.timeout)

    def show() -> None:
        progress.show(finished_trials(study), f"best val {100 * study.best_value:.2f}%" if study.best_trials else None)

    def on_trial(trial) -> None:
        if progress is not None:  # --n-jobs' workers stay silent: the parent reports their trials
            progress.write(console.trial_line(trial))
            show()

    def on_workers_progress(seen: set[int]) -> None:
        for trial in study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.FAIL)):
            if trial.number not in seen and not is_surplus(trial):
                seen.add(trial.number)
                progress.write(console.trial_line(trial))
        show()

    def sweep_trials() -> None:
        if args.n_jobs > 1:
            seen = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
            run_workers(worker_argv(argv), args.n_jobs, {"OPTUNA_STORAGE": args.storage, "MLFLOW_TRACKING_URI": args.tracking_uri},
                        lambda: on_workers_progress(seen))
        else:
            run_study(study, spec, tracker, mnist, backend, args.trials, args.timeout, on_trial,
                      on_progress=progress.step if progress else None)

    try:
        with stopping_at_safe_points():
            sweep_trials()
    except Interrupted as e:
        tracker.close("KILLED")
        print(f"stopped by {signal.Signals(e.signum).name}: a running trial is recorded as failed (its MLflow run "
              f"KILLED); run the same command again to continue to {args.trials} trials", file=sys.stderr)
        return 128 + e.signum
    except BaseException:
        tracker.close("FAILED")
        raise
    finally:
        if progress:
            progress.close()
    tracker.close("FINISHED")
    if args.worker:
        return 0
    out = Path("reports") / spec.name
    write_report(study, client, out)
    print(f"study '{spec.name}': {finished_trials(study)}/{args.trials} trials finished")
    training = sum(t.user_attrs.get("train_seconds", 0.0) for t in study.get_trials(deepcopy=False) if t.number not in earlier)
    print(console.time_line(time.monotonic() - started, training, args.n_jobs))
    if study.best_trials:
        best = study.best_trial
        print(f"best on validation: trial {best.number}, val {console.accuracy(best, 'val_accuracy')}, "
              f"test {console.accuracy(best, 'test_accuracy')}, first 128 test images {console.accuracy(best, 'test_accuracy_first128')}")
        if records.confirm_runs(client, spec.name):  # a choice over seeds outweighs one seed's
            print(f"models:/{spec.name}@{records.BEST} stays confirm's choice; `python sweep.py confirm` weighs new trials")
        elif (version := records.register_best(client, spec.name, best.user_attrs["mlflow_run_id"])) is not None:
            print(f"registered: models:/{spec.name}@{records.BEST} (version {version}, trial {best.number})")
    print(f"report: {out / 'report.html'}")
    print(console.browse_line(args.tracking_uri, mask_url(args.tracking_uri), tracker.experiment_id))
    return 0


def worker_argv(argv: list[str]) -> list[str]:
    """This command for one of --n-jobs' workers: its stores come by environment variable, so
    that no password stands on a command line, where `ps` shows it."""
    kept, skip = [], False
    for word in argv:
        if skip:
            skip = False
        elif word in ("--storage", "--tracking-uri"):
            skip = True
        elif not word.startswith(("--storage=", "--tracking-uri=")):
            kept.append(word)
    return [*kept, "--n-jobs", "1", "--worker"]  # their own "--n-jobs 1" comes last and wins


def report(args: argparse.Namespace) -> int:
    quiet_libraries(tensorflow=False)  # a report needs no TensorFlow
    from sweep.report import write_report
    from sweep.stores import load_study, mlflow_client, require_file

    require_file(args.storage, "Optuna storage", "--storage")
    name = the_study(args.study_name, args.storage)
    study = load_study(name, args.storage)
    client = mlflow_client(args.tracking_uri, must_exist=True)

    out = args.out or Path("reports") / name
    frame = write_report(study, client, out)
    print(f"report of {len(frame)} trials: {out / 'report.md'}, {out / 'report.html'}, {out / 'trials.csv'}")
    return 0


def baseline(args: argparse.Namespace) -> int:
    spec = baseline_spec(args)
    quiet_libraries()
    from sweep import console
    from sweep.baseline import run_baseline
    from sweep.stores import mlflow_client

    mnist, backend = prepare(args.data_dir, args.lstm_backend)
    client = mlflow_client(args.tracking_uri)
    bar = console.StepBar(f"baseline of '{spec.name}', a seed")

    def on_seed(seed, result) -> None:
        bar.close()
        print(f"seed {seed}  {console.seed_line(result)}")

    try:
        run_baseline(client, spec, mnist, backend, args.seeds, on_seed, on_step=bar)
    finally:
        bar.close()
    print(f"baseline of '{spec.name}': seeds 0-{args.seeds - 1} recorded; see `python sweep.py report --study-name {spec.name}`")
    return 0


def confirm(args: argparse.Namespace) -> int:
    from sweep.stores import load_study, mlflow_client, require_file

    require_file(args.storage, "Optuna storage", "--storage")
    quiet_libraries(tensorflow=False)  # before the study opens: Optuna warns about its heartbeat then
    spec = baseline_spec(args)  # the spec the study was created from
    study = load_study(spec.name, args.storage)
    quiet_tensorflow()
    from sweep import console, records
    from sweep.confirm import confirm as run_confirm
    from sweep.report import confirm_tables
    from sweep.workers import Interrupted, check_stop, stopping_at_safe_points

    client = mlflow_client(args.tracking_uri, must_exist=True)
    mnist, backend = prepare(args.data_dir, args.lstm_backend)
    bar = console.StepBar(f"confirming '{spec.name}', a seed")

    def on_seed(number: int, seed: int, result) -> None:
        bar.close()
        print(f"trial {number:4d} seed {seed}  {console.seed_line(result)}")

    def on_step(done: int, steps: int, last) -> None:
        check_stop()
        bar(done, steps, last)

    try:
        with stopping_at_safe_points():
            found = run_confirm(client, spec, study, mnist, backend, args.top, args.seeds, on_seed, on_step)
    except Interrupted as e:
        bar.close()
        print(f"stopped by {signal.Signals(e.signum).name}: the seed in training is recorded as KILLED; "
              "run the same command again to continue", file=sys.stderr)
        return 128 + e.signum
    finally:
        bar.close()
    summary, per_seed, lines = confirm_tables(found)
    print("\n".join([summary.to_markdown(index=False), "", per_seed.to_markdown(index=False), "", *lines]))
    chosen = study.trials[found[0].number]
    version = records.register_best(client, spec.name, chosen.user_attrs["mlflow_run_id"])
    if version is not None:
        print(f"registered model: models:/{spec.name}@{records.BEST} is trial {chosen.number}'s (version {version})")
    return 0


def reproduce(args: argparse.Namespace) -> int:
    """Exit 0 when the reproduction agrees with the logged result, 1 when it does not."""
    if (args.run_id is None) == (args.trial is None):
        raise SweepError("give either a RUN_ID or --trial N (with --study-name, unless the store holds one study)")
    quiet_libraries()
    from sweep import console
    from sweep import reproduce as rep
    from sweep.stores import mlflow_client

    client = mlflow_client(args.tracking_uri, must_exist=True)
    run = rep.find_run(client, args.run_id, args.study_name, args.trial)
    mnist = rep.recorded_data(run, args.data_dir, warn=lambda line: print(line, file=sys.stderr))
    backend = rep.recorded_backend(run, warn=lambda line: print(line, file=sys.stderr))
    how = "re-evaluating its logged model" if args.evaluate_only else f"re-training it ({backend.name} backend)"
    print(f"reproducing {run.info.run_name} (run {run.info.run_id}) by {how}")
    bar = console.StepBar(f"reproducing {run.info.run_name}")
    try:
        comparison = rep.reproduce(client, run, mnist, backend, args.evaluate_only, on_step=bar)
    finally:
        bar.close()
    print("\n".join(rep.comparison_lines(comparison)))
    return 0 if comparison.agrees else 1


COMMANDS = {
    "report": (report_parser, report),
    "baseline": (baseline_parser, baseline),
    "confirm": (confirm_parser, confirm),
    "reproduce": (reproduce_parser, reproduce),
}


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
