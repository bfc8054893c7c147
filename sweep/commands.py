"""The commands, each a few calls into the packages that do the work: `run` (a sweep), `report`,
`baseline`, `confirm` and `reproduce`. Every input is checked before anything is recorded;
TensorFlow is imported only by the commands that train, and only once their inputs are checked.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from sweep.errors import SweepError
from sweep.search.attributes import ATTR_MLFLOW_RUN_ID
from sweep.search.spec import DEFAULT_STUDY

if TYPE_CHECKING:  # imported where used: TensorFlow is slow to import
    from mlflow import MlflowClient

    from sweep.training.data import Mnist
    from sweep.training.model import Backend

log = logging.getLogger(__name__)


def prepare(data_dir: str | None, lstm_backend: str) -> tuple[Mnist, Backend]:
    """What every training command needs, checked before anything is recorded: MNIST, and the
    LSTM backend (the native op is built on first use)."""
    from sweep.training.data import load_mnist
    from sweep.training.model import choose_backend

    return load_mnist(data_dir), choose_backend(lstm_backend)


def stopped(signum: int, what: str) -> int:
    """Ctrl-C or SIGTERM ended a command between two steps: say so; the exit code."""
    log.warning(f"stopped by {signal.Signals(signum).name}: {what}; run the same command again to continue")
    return 128 + signum


def register(client: MlflowClient, study_name: str, trial_number: int, run_id: str, by_confirm: bool) -> None:
    """Point `models:/<study>@best` at the chosen trial's model, and say so."""
    from sweep.tracking.registry import register_choice

    log.info(register_choice(client, study_name, trial_number, run_id, by_confirm))


def run(args: argparse.Namespace, argv: list[str], started: float) -> int:
    from sweep.search.spec import load_spec

    spec = load_spec(args.study)  # checked before TensorFlow is imported: a bad study file is answered at once
    if args.study_name:
        spec = dataclasses.replace(spec, name=args.study_name)
    from sweep import console

    console.quiet_libraries()
    from sweep.report.write import write_report
    from sweep.search.attributes import spent
    from sweep.search.budget import Budget, study_images
    from sweep.search.storage import check_storage
    from sweep.search.study import open_study, run_study
    from sweep.search.workers import finished_trials, run_workers, worker_argv
    from sweep.stopping import Interrupted, SafeStop
    from sweep.stores import hide_password
    from sweep.tracking.queries import final_accuracies
    from sweep.tracking.schema import STATUS_FAILED, STATUS_KILLED
    from sweep.tracking.store import mlflow_client
    from sweep.tracking.study import StudyTracker
    from sweep.training.config import cpu_model

    mnist, backend = prepare(args.data_dir, args.lstm_backend)
    check_storage(args.storage)  # before the MLflow store is created: bad input writes nothing
    client = mlflow_client(args.tracking_uri)
    study = open_study(spec, args.storage, client, args.heartbeat_interval, args.grace_period)
    tracker = StudyTracker(client, spec.name, spec.description, spec.source, spec.settings(), args.storage)
    earlier = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}  # not this run's
    budget = Budget(study, args.timeout, args.max_images)
    progress = None if args.worker else console.SweepProgress(study, client, args.trials, args.timeout, args.max_images)
    try:
        with SafeStop() as stop:
            if args.n_jobs > 1:
                stores = {"OPTUNA_STORAGE": args.storage, "MLFLOW_TRACKING_URI": args.tracking_uri}
                run_workers(worker_argv(argv), args.n_jobs, stores, progress.poll, stop)
            else:
                run_study(
                    study,
                    spec,
                    tracker,
                    mnist,
                    backend,
                    args.trials,
                    budget,
                    on_trial=progress and progress.trial_done,
                    on_progress=progress and progress.step,
                    stop=stop,
                )
    except Interrupted as e:
        tracker.close(STATUS_KILLED)
        return stopped(
            e.signum,
            "the running trial was checkpointed and queued again (its MLflow run KILLED), to resume "
            f"first on the way to {args.trials} trials",
        )
    except BaseException:
        tracker.close(STATUS_FAILED)
        raise
    finally:
        if progress:
            progress.close()
    tracker.close()
    if args.worker:
        return 0
    out = Path("reports") / spec.name
    write_report(study, client, out)
    log.info(console.study_line(spec.name, finished_trials(study), args.trials, args.max_images, study_images(study)))
    mine = [spent(t.user_attrs) for t in study.get_trials(deepcopy=False) if t.number not in earlier]
    log.info(
        console.time_line(
            time.monotonic() - started, sum(s for _, s in mine), sum(i for i, _ in mine), args.n_jobs, cpu_model()
        )
    )
    if study.best_trials:
        best = study.best_trial
        log.info(console.best_line(best, final_accuracies(client, best.user_attrs[ATTR_MLFLOW_RUN_ID])))
        register(client, spec.name, best.number, best.user_attrs[ATTR_MLFLOW_RUN_ID], by_confirm=False)
    log.info(f"report: {out / 'report.html'}")
    log.info(console.browse_line(args.tracking_uri, hide_password(args.tracking_uri), tracker.experiment_id))
    return 0


def report(args: argparse.Namespace) -> int:
    from sweep import console

    console.quiet_libraries(tensorflow=False)  # a report needs no TensorFlow
    from sweep.report.write import write_report
    from sweep.search.storage import load_study, the_study
    from sweep.stores import require_file
    from sweep.tracking.store import mlflow_client

    require_file(args.storage, "Optuna storage", "--storage")
    study = load_study(the_study(args.study_name, args.storage), args.storage)
    client = mlflow_client(args.tracking_uri, must_exist=True)
    out = args.out or Path("reports") / study.study_name
    frame = write_report(study, client, out)
    log.info(f"report of {len(frame)} trials: {out / 'report.md'}, {out / 'report.html'}, {out / 'trials.csv'}")
    return 0


def frontier(args: argparse.Namespace) -> int:
    from sweep import console

    console.quiet_libraries(tensorflow=False)
    from sweep.report import frontier as table_of  # the module's name is the command's
    from sweep.stores import folder_stores, hide_password

    names = args.study_name or []
    earlier = [r for path in args.rows or [] for r in table_of.read_rows(path) if not names or r["study"] in names]
    stores = [(*folder_stores(f), str(f)) for f in args.store or []]
    if not stores and not args.rows:
        stores = [(args.storage, args.tracking_uri, hide_password(args.storage))]
    found = table_of.studies_in(stores, names)
    if missing := sorted(set(names) - {study.study_name for study, _, _ in found} - {row["study"] for row in earlier}):
        raise SweepError(f"no study named {', '.join(map(repr, missing))} in the stores given")
    text = table_of.write_frontier(table_of.frontier_table(found, earlier), args.out)
    log.info(f"{text}\nfrontier: {args.out / 'frontier.md'}")
    return 0


def over_seeds(what: str, train: Callable[[Callable, Callable], object]) -> tuple[int | None, object]:
    """Run `train(on_seed, progress)` under a bar over each seed's steps, stoppable between two
    steps by Ctrl-C or SIGTERM: (the exit code if it was stopped, else None; its result)."""
    from sweep import console
    from sweep.stopping import Interrupted, SafeStop

    bar = console.StepBar(f"{what}, a seed")

    def on_seed(number: int | None, config, result) -> None:
        bar.close()
        trial = "" if number is None else f"trial {number:4d} "
        log.info(f"{trial}seed {config.seed} (val fold {config.val_fold})  {console.seed_line(result)}")

    try:
        with SafeStop() as stop:

            def progress(done: int, steps: int, last) -> None:
                stop.check()
                bar(done, steps, last)

            return None, train(on_seed, progress)
    except Interrupted as e:
        bar.close()
        return stopped(e.signum, "the seed in training was checkpointed (its MLflow run KILLED), to resume"), None
    finally:
        bar.close()


def rewrite_report(client: MlflowClient, study_name: str, storage: str) -> None:
    """After baseline or confirm: the study's report (and its parent run's copy) says what they added."""
    from sweep.report.write import write_report
    from sweep.search.storage import load_study, study_names

    if study_name in study_names(storage):
        out = Path("reports") / study_name
        write_report(load_study(study_name, storage), client, out)
        log.info(f"report: {out / 'report.html'}")


def baseline(args: argparse.Namespace) -> int:
    from sweep.search.spec import load_spec
    from sweep.search.storage import kept_spec, study_names

    if args.study:
        spec = load_spec(args.study)
        spec = dataclasses.replace(spec, name=args.study_name) if args.study_name else spec
    elif args.study_name or study_names(args.storage):
        spec = kept_spec(args.study_name, args.storage)
    else:
        spec = load_spec(DEFAULT_STUDY)
    from sweep import console

    console.quiet_libraries()
    from sweep.seeds.train import train_baseline
    from sweep.tracking.store import mlflow_client

    mnist, backend = prepare(args.data_dir, args.lstm_backend)
    client = mlflow_client(args.tracking_uri)
    code, _ = over_seeds(
        f"baseline of '{spec.name}'",
        lambda on_seed, progress: train_baseline(client, spec, mnist, backend, args.seeds, on_seed, progress),
    )
    if code is not None:
        return code
    log.info(f"baseline of '{spec.name}': seeds 0-{args.seeds - 1} recorded")
    rewrite_report(client, spec.name, args.storage)
    return 0


def confirm(args: argparse.Namespace) -> int:
    from sweep import console
    from sweep.search.storage import kept_spec, load_study
    from sweep.stores import require_file
    from sweep.tracking.store import mlflow_client

    require_file(args.storage, "Optuna storage", "--storage")
    console.quiet_libraries(tensorflow=False)  # before the study opens: Optuna warns about its heartbeat then
    spec = kept_spec(args.study_name, args.storage)  # the spec the study was created from
    study = load_study(spec.name, args.storage)
    console.quiet_libraries()
    from sweep.report.seeds import confirm_tables
    from sweep.seeds.choice import choose, val_hits
    from sweep.seeds.train import train_confirm

    client = mlflow_client(args.tracking_uri, must_exist=True)
    mnist, backend = prepare(args.data_dir, args.lstm_backend)
    code, found = over_seeds(
        f"confirming '{spec.name}'",
        lambda on_seed, progress: train_confirm(
            client, spec, study, mnist, backend, args.top, args.seeds, on_seed, progress
        ),
    )
    if code is not None:
        return code
    choice = choose(found, lambda run_id: val_hits(client, run_id))
    summary, per_seed, lines = confirm_tables(choice)
    log.info("\n".join([summary.to_markdown(index=False), "", per_seed.to_markdown(index=False), "", *lines]))
    chosen = study.trials[choice.chosen.number]
    register(client, spec.name, chosen.number, chosen.user_attrs[ATTR_MLFLOW_RUN_ID], by_confirm=True)
    rewrite_report(client, spec.name, args.storage)
    return 0


def reproduce(args: argparse.Namespace) -> int:
    """Exit 0 when the reproduction agrees with the logged result, 1 when it does not."""
    if (args.run_id is None) == (args.trial is None):
        raise SweepError("give either a RUN_ID or --trial N (with --study-name, unless the store holds one study)")
    from sweep import console

    console.quiet_libraries()
    from sweep.seeds import reproduce as rep
    from sweep.tracking.store import mlflow_client

    client = mlflow_client(args.tracking_uri, must_exist=True)
    run = rep.find_run(client, args.run_id, args.study_name, args.trial)
    mnist, backend = rep.recorded_data(run, args.data_dir), rep.recorded_backend(run)
    how = "re-evaluating its logged model" if args.evaluate_only else f"re-training it ({backend.name} backend)"
    log.info(f"reproducing {run.info.run_name} (run {run.info.run_id}) by {how}")
    bar = console.StepBar(f"reproducing {run.info.run_name}")
    try:
        comparison = rep.reproduce(client, run, mnist, backend, args.evaluate_only, progress=bar)
    finally:
        bar.close()
    log.info("\n".join(rep.comparison_lines(comparison)))
    return 0 if comparison.agrees else 1
