"""The commands, each a few calls into the modules that do the work: `run` (a sweep), `report`,
`baseline`, `confirm` and `reproduce`. Every input is checked before anything is recorded;
TensorFlow is imported only by the commands that train, and only once their inputs are checked.
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from sweep.attrs import MLFLOW_RUN_ID
from sweep.config import DEFAULT_STUDY
from sweep.errors import SweepError

if TYPE_CHECKING:  # imported where used: TensorFlow is slow to import
    from mlflow import MlflowClient

    from sweep.data import Mnist
    from sweep.model import Backend


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
    from sweep.budget import Budget, study_images
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
    budget = Budget(study, args.timeout, args.max_images)
    progress = None if args.worker else console.SweepProgress(study, client, args.trials, args.timeout, args.max_images)
    try:
        with stopping_at_safe_points():
            if args.n_jobs > 1:
                stores = {"OPTUNA_STORAGE": args.storage, "MLFLOW_TRACKING_URI": args.tracking_uri}
                run_workers(worker_argv(argv), args.n_jobs, stores, progress.poll)
            else:
                run_study(study, spec, tracker, mnist, backend, args.trials, budget,
                          on_trial=progress and progress.trial_done, on_progress=progress and progress.step,
                          say=progress.write if progress else (lambda line: None))
    except Interrupted as e:
        tracker.close(records.KILLED)
        return stopped(e.signum, "the running trial was checkpointed and queued again (its MLflow run KILLED), to resume "
                                 f"first on the way to {args.trials} trials")
    except BaseException:
        tracker.close(records.FAILED)
        raise
    finally:
        if progress:
            progress.close()
    tracker.close(records.FINISHED)
    if args.worker:
        return 0
    out = Path("reports") / spec.name
    write_report(study, client, out)
    print(console.study_line(spec.name, finished_trials(study), args.trials, args.max_images, study_images(study)))
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
    from sweep.report import confirm_tables
    from sweep.seeds import confirm as confirm_top

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
