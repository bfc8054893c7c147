"""What a person sees while a command runs: progress bars, one line per trial, where time went,
and how to browse the results. (sweep/cli.py decides what to say; this says it.)"""

from __future__ import annotations

import os
import time

import optuna
from mlflow import MlflowClient
from optuna.trial import FrozenTrial, TrialState
from tqdm import tqdm

from sweep import records
from sweep.attrs import FAILURE, MLFLOW_RUN_ID, PRUNED, RESUMED, STOPPED, SURPLUS, TRAIN_IMAGES, TRAIN_SECONDS
from sweep.budget import study_images
from sweep.config import CurvePoint, TrainResult
from sweep.stats import Accuracy, images


def trial_line(trial: FrozenTrial, accuracies: dict[str, Accuracy] | None) -> str:
    """One summary line per finished trial (`accuracies`: its run's, when it completed), with
    the MLflow run id that `reproduce` takes."""
    params = " ".join(f"{k}={'none' if v is None else f'{v:.3g}' if isinstance(v, float) else v}" for k, v in trial.params.items())
    head = f"trial {trial.number:4d}  {params}"
    a = trial.user_attrs
    run = f"  run {a[MLFLOW_RUN_ID]}" if MLFLOW_RUN_ID in a else ""
    resumed = f"  (resumed at step {a[RESUMED]['step']})" if RESUMED in a else ""
    if trial.state == TrialState.PRUNED:
        return f"{head}  pruned at {a[PRUNED]['at']}, val {Accuracy(*a[PRUNED]['val'])}{resumed}{run}"
    if a.get(STOPPED):
        return (f"{head}  {a[FAILURE]}; queued again, it resumes from its checkpoint after "
                f"{images(a.get(TRAIN_IMAGES, 0))} images when the study runs next{run}")
    if accuracies is None:
        return f"{head}  {trial.state.name.lower()}: {a.get(FAILURE, 'see its MLflow run')}{run}"
    return (f"{head}  val {accuracies['val_accuracy']}  test {accuracies['test_accuracy']}  "
            f"first128 {accuracies['test_accuracy_first128']}  {images(a[TRAIN_IMAGES])} images  "
            f"{a[TRAIN_SECONDS]:.0f}s{resumed}{run}")


def study_line(name: str, finished: int, target: int, max_images: int | None, spent: int) -> str:
    """Where the study stands at the end of a run, and whether --max-images ended it."""
    line = f"study '{name}': {finished}/{target} trials finished, {images(spent)} training images spent"
    if max_images is not None and spent >= max_images and finished < target:
        line += f"; stopped by --max-images {images(max_images)}: run again with a larger budget to continue"
    return line


def best_line(trial: FrozenTrial, accuracies: dict[str, Accuracy]) -> str:
    return (f"best on validation: trial {trial.number}, val {accuracies['val_accuracy']}, test {accuracies['test_accuracy']}, "
            f"first 128 test images {accuracies['test_accuracy_first128']}")


def seed_line(result: TrainResult) -> str:
    """The accuracies and training time of one seed's run (baseline's and confirm's)."""
    a = {k: str(v) for k, v in result.accuracies.items()}
    return (f"val {a['val_accuracy']}  test {a['test_accuracy']}  first128 {a['test_accuracy_first128']}  "
            f"{result.train_seconds:.0f}s")


def time_line(wall: float, training: float, trained_images: int, workers: int, cpu: str) -> str:
    """Where this run's time went: optimizer steps versus everything else (start-up, data,
    evaluation, Optuna and MLflow bookkeeping, saving models, the report). Minutes depend on
    the CPU; training images do not."""
    share = training / (wall * workers)
    of = "the wall time" if workers == 1 else f"{workers} workers x the wall time"
    return (f"time: {wall / 60:.1f} min wall on {cpu}; training {images(trained_images)} images in "
            f"{training / 60:.1f} min = {100 * share:.1f}% of {of}, everything else {100 * (1 - share):.1f}%")


def browse_line(tracking_uri: str, shown_uri: str, experiment_id: str) -> str:
    """How to open the study's runs table (MLflow 3 opens an experiment on its GenAI view)."""
    view = f"#/experiments/{experiment_id}/runs?workflowType=machine_learning"
    if tracking_uri.startswith(("http://", "https://")):
        return f"browse: {shown_uri.rstrip('/')}/{view}"
    return f"browse: mlflow ui --backend-store-uri {shown_uri}   then open http://127.0.0.1:5000/{view}"


class StepBar:
    """A bar over one training's steps, with its last validation accuracy: the `on_step` of
    `sweep.train.train`."""

    def __init__(self, desc: str, position: int = 0):
        self.desc, self.position, self.bar = desc, position, None

    def __call__(self, done: int, steps: int, last: CurvePoint | None) -> None:
        if self.bar is None:
            self.bar = tqdm(total=steps, desc=self.desc, unit="step", position=self.position, leave=False, dynamic_ncols=True)
        if last is not None:
            self.bar.set_postfix_str(f"val {100 * last.val_accuracy:.2f}% (n={last.val.total})", refresh=False)
        self.bar.update(done - self.bar.n)  # redraws at most every tqdm's mininterval: no terminal I/O per call

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class SweepProgress:
    """A bar over the study's trials (under --timeout, over its time budget, which is what ends
    it), below it the running trial's steps, and above them a line per finished trial."""

    def __init__(self, study: optuna.Study, client: MlflowClient, target: int, timeout: float | None,
                 max_images: int | None = None):
        from sweep.workers import finished_trials

        self.study, self.client, self.target, self.timeout, self.started = study, client, target, timeout, time.monotonic()
        self.max_images = max_images
        self.finished = finished_trials
        self.number, self.trial = None, StepBar("")
        self.seen = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
        if timeout is None:
            done = min(self.finished(study), target)
            self.bar = tqdm(total=target, initial=done, desc=study.study_name, unit="trial", dynamic_ncols=True)
        else:
            self.bar = tqdm(total=timeout, desc=study.study_name, dynamic_ncols=True,
                            bar_format="{desc} |{bar}| {elapsed} of the {total:.0f} s budget{postfix}")
        self.show()

    def show(self) -> None:
        finished = min(self.finished(self.study), self.target)
        best = f"best val {100 * self.study.best_value:.2f}%" if self.study.best_trials else ""
        spent = "" if self.max_images is None else f"{images(study_images(self.study))} of {images(self.max_images)} images"
        if self.timeout is None:
            self.bar.n = finished
            self.bar.set_postfix_str(", ".join(filter(None, [best, spent])), refresh=False)
        else:
            self.bar.n = min(time.monotonic() - self.started, self.timeout)
            self.bar.set_postfix_str(", ".join(filter(None, [f"{finished}/{self.target} trials", best, spent])), refresh=False)
        self.bar.refresh()

    def trial_done(self, trial: FrozenTrial) -> None:
        """A trial of this process ended: its line, and the bar moves."""
        self.seen.add(trial.number)
        complete = trial.state == TrialState.COMPLETE
        self.write(trial_line(trial, records.final_accuracies(self.client, trial.user_attrs[MLFLOW_RUN_ID]) if complete else None))
        self.show()

    def poll(self) -> None:
        """--n-jobs: the lines of trials the workers ended since the last look."""
        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)):
            if trial.number not in self.seen and not trial.user_attrs.get(SURPLUS):
                self.trial_done(trial)
        self.show()

    def step(self, number: int, done: int, steps: int, last: CurvePoint | None) -> None:
        if number != self.number:
            self.trial.close()
            self.number, self.trial = number, StepBar(f"  trial {number}", position=1)
        self.trial(done, steps, last)
        if self.timeout is not None and time.monotonic() - self.bar.last_print_t > self.bar.mininterval:
            self.show()  # the budget bar moves with time, not with trials

    def write(self, line: str) -> None:
        self.trial.close()
        self.number = None
        self.bar.write(line)

    def close(self) -> None:
        self.trial.close()
        self.bar.close()


def quiet_libraries(tensorflow: bool = True) -> None:
    """Our own lines say what happened; the libraries' start-up chatter would bury them."""
    import logging
    import warnings

    if tensorflow:
        quiet_tensorflow()
    import mlflow  # noqa: F401  (sets its loggers' levels when imported: import it before setting them)

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # failed and pruned trials get our own line
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeat
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
