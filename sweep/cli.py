"""The command line: parse, check every input, then run; errors become one line here.

`python sweep.py --trials N` runs a study up to N finished trials. Settings come from flags,
else from the ecosystem's environment variables (MLFLOW_TRACKING_URI, OPTUNA_STORAGE,
SWEEP_DATA_DIR), else from defaults in the current folder. Each command is a few calls into
the modules that do the work; TensorFlow is imported only by commands that train.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sweep.attrs import MLFLOW_RUN_ID
from sweep.config import DEFAULT_STUDY, GRACE_PERIOD, HEARTBEAT_INTERVAL, LSTM_BACKENDS
from sweep.errors import SweepError

if TYPE_CHECKING:  # imported where used: TensorFlow is slow to import, and --help should be fast
    from mlflow import MlflowClient

    from sweep.data import Mnist
    from sweep.model import Backend
    from sweep.spec import Spec


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


def add_stores(p: argparse.ArgumentParser, storage: bool = True) -> None:
    """--storage and --tracking-uri, defaulting to the environment as it is when parsing."""
    if storage:
        p.add_argument("--storage", default=os.environ.get("OPTUNA_STORAGE", "sqlite:///optuna.db"),
                       help="Optuna storage URL (default $OPTUNA_STORAGE, else sqlite:///optuna.db)")
    p.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db"),
                   help="MLflow tracking URI (default $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)")


def add_data_dir(p: argparse.ArgumentParser, default_from_environment: bool = True) -> None:
    p.add_argument("--data-dir", default=os.environ.get("SWEEP_DATA_DIR") if default_from_environment else None,
                   help="directory with the four MNIST IDX files (default $SWEEP_DATA_DIR; unset: download once)")


def add_training(p: argparse.ArgumentParser) -> None:
    """What every command that trains takes: the data, the stores, the LSTM backend."""
    add_data_dir(p)
    add_stores(p)
    p.add_argument("--lstm-backend", choices=LSTM_BACKENDS, default="auto",
                   help="how the LSTM trains: native (a compiled CPU op, fastest on a CPU), keras (keras.layers.LSTM; "
                        "cuDNN on a GPU) or auto (keras on a GPU, else native if it builds, else keras; the default)")


def add_study_name(p: argparse.ArgumentParser) -> None:
    p.add_argument("--study-name", help="the study (default: the only one in the storage)")


def sweep_parser() -> Parser:
    p = Parser(prog="sweep.py", description="Optuna sweeps of the 2017 tutorial LSTM on MNIST, recorded in MLflow.",
               epilog="other commands: sweep.py report | baseline | confirm | reproduce RUN_ID (each with --help)")
    p.add_argument("--trials", type=positive_int, default=20, help="target number of finished trials in the study (default 20)")
    p.add_argument("--study", default=DEFAULT_STUDY, help="study spec: a TOML file, or the name of one of the tool's own "
                                                          f"(tutorial, recipe, beat-claim, claim, smoke; default {DEFAULT_STUDY})")
    p.add_argument("--study-name", help="Optuna study and MLflow experiment name (default: the spec's name)")
    add_training(p)
    p.add_argument("--timeout", type=positive_float, metavar="SECONDS",
                   help="the sweep's time budget: after it no trial starts, and a running one is checkpointed and "
                        "stopped, to resume first when the same command runs again")
    p.add_argument("--n-jobs", type=positive_int, default=1, help="worker processes on this machine (default 1)")
    p.add_argument("--heartbeat-interval", type=positive_int, default=HEARTBEAT_INTERVAL, metavar="SECONDS",
                   help=f"seconds between a running trial's heartbeats in the Optuna storage (default {HEARTBEAT_INTERVAL})")
    p.add_argument("--grace-period", type=positive_int, default=GRACE_PERIOD, metavar="SECONDS",
                   help="a trial without a heartbeat this long belongs to a lost worker: it is failed and queued again, "
                        f"to resume from its last checkpoint (default {GRACE_PERIOD})")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # one of --n-jobs' processes
    return p


def report_parser() -> Parser:
    p = Parser(prog="sweep.py report", description="Write the study's report (CSV, Markdown, HTML, plots) and log it to MLflow.")
    add_study_name(p)
    add_stores(p)
    p.add_argument("--out", type=Path, help="output folder (default reports/<study>/)")
    return p


def seeds_parser(command: str) -> Parser:
    """`baseline` and `confirm`: one configuration, or the top trials', over seeds."""
    about = {"baseline": "Train the study's baseline (trial 0's configuration) with several seeds.",
             "confirm": "Train the study's top trials again with several seeds and choose among them on mean validation accuracy."}
    p = Parser(prog=f"sweep.py {command}", description=about[command])
    if command == "confirm":
        p.add_argument("--top", type=positive_int, default=3, help="how many trials, best validation accuracy first (default 3)")
    p.add_argument("--seeds", type=positive_int, default=5, help="seeds 0..S-1; recorded seeds are not trained again, stopped "
                                                                 "ones resume (default 5)")
    if command == "baseline":
        p.add_argument("--study", help="study spec, file or name (default: the spec of --study-name, or of the storage's "
                                       f"only study; with neither, {DEFAULT_STUDY})")
    add_study_name(p)
    add_training(p)
    return p


def reproduce_parser() -> Parser:
    p = Parser(prog="sweep.py reproduce", description="Train a logged trial again from its MLflow run and compare results.")
    p.add_argument("run_id", nargs="?", help="the trial's MLflow run id")
    p.add_argument("--trial", type=int, help="the trial number instead (of --study-name, default: the store's only study)")
    add_study_name(p)
    p.add_argument("--evaluate-only", action="store_true", help="re-evaluate the logged model instead of re-training")
    add_data_dir(p, default_from_environment=False)  # the run's own folder comes before $SWEEP_DATA_DIR
    add_stores(p, storage=False)
    return p


def prepare(data_dir: str | None, lstm_backend: str) -> tuple[Mnist, Backend]:
    """What every training command needs, checked before anything is recorded: MNIST, and the
    LSTM backend (the native op is built on first use)."""
    from sweep.data import load_mnist
    from sweep.model import choose_backend

    return load_mnist(data_dir), choose_backend(lstm_backend)


def stopped(signum: int, what: str) -> int:
    """Ctrl-C or SIGTERM ended a command between two steps: say so; the exit code."""
    print(f"stopped by {signal.Signals(signum).name}: {what}; run the same command again to continue", file=sys.stderr)
    return 128 + signum


def register(client: MlflowClient, study_name: str, trial_number: int, run_id: str, by_confirm: bool) -> None:
    """Point `models:/<study>@best` at the chosen trial's model. A choice over seeds (confirm's)
    outweighs one seed's: once confirm has chosen, a sweep leaves the alias alone."""
    from sweep import records

    if not by_confirm and records.seed_runs(client, study_name, records.CONFIRM):
        print(f"models:/{study_name}@{records.BEST} stays confirm's choice; `python sweep.py confirm` weighs new trials")
    elif (version := records.register_best(client, study_name, run_id)) is not None:
        print(f"registered: models:/{study_name}@{records.BEST} (version {version}, trial {trial_number})")


def run(args: argparse.Namespace, argv: list[str], started: float) -> int:
    from sweep.spec import load_spec

    spec = load_spec(args.study)  # checked before TensorFlow is imported: a bad study file is answered at once
    if args.study_name:
        spec = dataclasses.replace(spec, name=args.study_name)
    from sweep import console

    console.quiet_libraries()
    from sweep import attrs, records
    from sweep.config import cpu_model
    from sweep.report import write_report
    from sweep.stores import check_storage, mask_url, mlflow_client
    from sweep.study import open_study, run_study
    from sweep.workers import Interrupted, finished_trials, run_workers, stopping_at_safe_points

    mnist, backend = prepare(args.data_dir, args.lstm_backend)
    check_storage(args.storage)  # before the MLflow store is created: bad input writes nothing
    client = mlflow_client(args.tracking_uri)
    study = open_study(spec, args.storage, client, args.heartbeat_interval, args.grace_period,
                       say=(lambda line: None) if args.worker else print)
    tracker = records.StudyTracker(client, spec, args.storage)
    earlier = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}  # not this run's
    progress = None if args.worker else console.SweepProgress(study, client, args.trials, args.timeout)
    try:
        with stopping_at_safe_points():
            if args.n_jobs > 1:
                stores = {"OPTUNA_STORAGE": args.storage, "MLFLOW_TRACKING_URI": args.tracking_uri}
                run_workers(worker_argv(argv), args.n_jobs, stores, progress.poll)
            else:
                run_study(study, spec, tracker, mnist, backend, args.trials, args.timeout,
                          on_trial=progress and progress.trial_done, on_progress=progress and progress.step,
                          say=progress.write if progress else (lambda line: None))
    except Interrupted as e:
        tracker.close("KILLED")
        return stopped(e.signum, "the running trial was checkpointed and queued again (its MLflow run KILLED), to resume "
                                 f"first on the way to {args.trials} trials")
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
    spent = [attrs.spent(t.user_attrs) for t in study.get_trials(deepcopy=False) if t.number not in earlier]
    print(console.time_line(time.monotonic() - started, sum(s for _, s in spent), sum(i for i, _ in spent), args.n_jobs, cpu_model()))
    if study.best_trials:
        best = study.best_trial
        print(console.best_line(best, records.final_accuracies(client, best.user_attrs[MLFLOW_RUN_ID])))
        register(client, spec.name, best.number, best.user_attrs[MLFLOW_RUN_ID], by_confirm=False)
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
    from sweep import console

    console.quiet_libraries(tensorflow=False)  # a report needs no TensorFlow
    from sweep.report import write_report
    from sweep.stores import load_study, mlflow_client, require_file, the_study

    require_file(args.storage, "Optuna storage", "--storage")
    study = load_study(the_study(args.study_name, args.storage), args.storage)
    client = mlflow_client(args.tracking_uri, must_exist=True)
    out = args.out or Path("reports") / study.study_name
    frame = write_report(study, client, out)
    print(f"report of {len(frame)} trials: {out / 'report.md'}, {out / 'report.html'}, {out / 'trials.csv'}")
    return 0


def over_seeds(what: str, train: Callable[[Callable, Callable, Callable], object]) -> tuple[int | None, object]:
    """Run `train(on_seed, on_step, say)` under a bar over each seed's steps, stoppable between
    two steps by Ctrl-C or SIGTERM: (the exit code if it was stopped, else None; its result)."""
    from sweep import console
    from sweep.workers import Interrupted, check_stop, stopping_at_safe_points

    bar = console.StepBar(f"{what}, a seed")

    def on_seed(number: int | None, seed: int, result) -> None:
        bar.close()
        print(("" if number is None else f"trial {number:4d} ") + f"seed {seed}  {console.seed_line(result)}")

    def on_step(done: int, steps: int, last) -> None:
        check_stop()
        bar(done, steps, last)

    def say(line: str) -> None:
        bar.close()
        print(line)

    try:
        with stopping_at_safe_points():
            return None, train(on_seed, on_step, say)
    except Interrupted as e:
        bar.close()
        return stopped(e.signum, "the seed in training was checkpointed (its MLflow run KILLED), to resume"), None
    finally:
        bar.close()


def rewrite_report(client: MlflowClient, study_name: str, storage: str) -> None:
    """After baseline or confirm: the study's report (and its parent run's copy) says what they added."""
    from sweep.report import write_report
    from sweep.stores import load_study, study_names

    if study_name in study_names(storage):
        out = Path("reports") / study_name
        write_report(load_study(study_name, storage), client, out)
        print(f"report: {out / 'report.html'}")


def baseline(args: argparse.Namespace) -> int:
    from sweep.spec import load_spec
    from sweep.stores import kept_spec, study_names

    if args.study:
        spec = load_spec(args.study)
        spec = dataclasses.replace(spec, name=args.study_name) if args.study_name else spec
    elif args.study_name or study_names(args.storage):
        spec = kept_spec(args.study_name, args.storage)
    else:
        spec = load_spec(DEFAULT_STUDY)
    from sweep import console

    console.quiet_libraries()
    from sweep import seeds
    from sweep.stores import mlflow_client

    mnist, backend = prepare(args.data_dir, args.lstm_backend)
    client = mlflow_client(args.tracking_uri)
    code, _ = over_seeds(f"baseline of '{spec.name}'", lambda on_seed, on_step, say: seeds.baseline(
        client, spec, mnist, backend, args.seeds, on_seed, on_step, say))
    if code is not None:
        return code
    print(f"baseline of '{spec.name}': seeds 0-{args.seeds - 1} recorded")
    rewrite_report(client, spec.name, args.storage)
    return 0


def confirm(args: argparse.Namespace) -> int:
    from sweep import console
    from sweep.stores import kept_spec, load_study, mlflow_client, require_file

    require_file(args.storage, "Optuna storage", "--storage")
    console.quiet_libraries(tensorflow=False)  # before the study opens: Optuna warns about its heartbeat then
    spec = kept_spec(args.study_name, args.storage)  # the spec the study was created from
    study = load_study(spec.name, args.storage)
    console.quiet_libraries()
    from sweep.confirm import confirm as confirm_top
    from sweep.report import confirm_tables

    client = mlflow_client(args.tracking_uri, must_exist=True)
    mnist, backend = prepare(args.data_dir, args.lstm_backend)
    code, found = over_seeds(f"confirming '{spec.name}'", lambda on_seed, on_step, say: confirm_top(
        client, spec, study, mnist, backend, args.top, args.seeds, on_seed, on_step, say))
    if code is not None:
        return code
    summary, per_seed, lines = confirm_tables(found)
    print("\n".join([summary.to_markdown(index=False), "", per_seed.to_markdown(index=False), "", *lines]))
    chosen = study.trials[found[0].number]
    register(client, spec.name, chosen.number, chosen.user_attrs[MLFLOW_RUN_ID], by_confirm=True)
    rewrite_report(client, spec.name, args.storage)
    return 0


def reproduce(args: argparse.Namespace) -> int:
    """Exit 0 when the reproduction agrees with the logged result, 1 when it does not."""
    if (args.run_id is None) == (args.trial is None):
        raise SweepError("give either a RUN_ID or --trial N (with --study-name, unless the store holds one study)")
    from sweep import console

    console.quiet_libraries()
    from sweep import reproduce as rep
    from sweep.stores import mlflow_client

    client = mlflow_client(args.tracking_uri, must_exist=True)
    run = rep.find_run(client, args.run_id, args.study_name, args.trial)
    warn = lambda line: print(line, file=sys.stderr)  # noqa: E731
    mnist, backend = rep.recorded_data(run, args.data_dir, warn), rep.recorded_backend(run, warn)
    how = "re-evaluating its logged model" if args.evaluate_only else f"re-training it ({backend.name} backend)"
    print(f"reproducing {run.info.run_name} (run {run.info.run_id}) by {how}")
    bar = console.StepBar(f"reproducing {run.info.run_name}")
    try:
        comparison = rep.reproduce(client, run, mnist, backend, args.evaluate_only, warn=warn, on_step=bar)
    finally:
        bar.close()
    print("\n".join(rep.comparison_lines(comparison)))
    return 0 if comparison.agrees else 1


COMMANDS = {
    "report": (report_parser, report),
    "baseline": (lambda: seeds_parser("baseline"), baseline),
    "confirm": (lambda: seeds_parser("confirm"), confirm),
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
