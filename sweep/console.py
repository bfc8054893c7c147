"""What a person sees while a command runs, in one voice: the tool's messages (`logging`, one
handler set where the command line starts: information on stdout, warnings on stderr, written
around the progress bars), the bars themselves, one line per trial, where time went, and how to
browse the results. The libraries' own chatter is quieted."""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings

import optuna
from mlflow import MlflowClient
from optuna.trial import FrozenTrial, TrialState
from tqdm import tqdm

from sweep.search.attributes import (
    ATTR_FAILURE,
    ATTR_MLFLOW_RUN_ID,
    ATTR_PRUNED,
    ATTR_RESUMED,
    ATTR_STOPPED,
    ATTR_SURPLUS,
    ATTR_TRAIN_IMAGES,
    ATTR_TRAIN_SECONDS,
)
from sweep.search.budget import study_images
from sweep.stats import FIRST128_ACCURACY, TEST_ACCURACY, VAL_ACCURACY, Accuracy, images
from sweep.tracking.queries import final_accuracies
from sweep.training.config import CurvePoint, TrainResult

log = logging.getLogger(__name__)
QUIET_ENVIRONMENT = {  # set where the command line starts, before TensorFlow or MLflow is imported
    "TF_CPP_MIN_LOG_LEVEL": "2",  # TensorFlow's C++ start-up chatter (oneDNN, CPU features)
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # one bar per uploaded checkpoint otherwise
}


class _Console(logging.Handler):
    """The tool's messages as plain lines, written around tqdm's bars: information to stdout,
    warnings and errors to stderr (whatever sys.stdout and sys.stderr are when it writes)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stdout if record.levelno < logging.WARNING else sys.stderr)
        except Exception:  # noqa: BLE001  logging's own rule: a handler never raises
            self.handleError(record)


def setup_logging(level: int = logging.INFO) -> None:
    """One handler for the tool's loggers, replacing any an earlier command in this process set."""
    logger = logging.getLogger("sweep")
    for handler in [h for h in logger.handlers if isinstance(h, _Console)]:
        logger.removeHandler(handler)
    logger.addHandler(_Console())
    logger.setLevel(level)
    logger.propagate = False


def trial_line(trial: FrozenTrial, accuracies: dict[str, Accuracy] | None) -> str:
    """One summary line per finished trial (`accuracies`: its run's, when it completed), with
    the MLflow run id that `reproduce` takes."""
    params = " ".join(
        f"{k}={'none' if v is None else f'{v:.3g}' if isinstance(v, float) else v}" for k, v in trial.params.items()
    )
    head = f"trial {trial.number:4d}  {params}"
    a = trial.user_attrs
    run = f"  run {a[ATTR_MLFLOW_RUN_ID]}" if ATTR_MLFLOW_RUN_ID in a else ""
    resumed = f"  (resumed at step {a[ATTR_RESUMED]['step']})" if ATTR_RESUMED in a else ""
    if trial.state == TrialState.PRUNED:
        return f"{head}  pruned at {a[ATTR_PRUNED]['at']}, val {Accuracy(*a[ATTR_PRUNED]['val'])}{resumed}{run}"
    if a.get(ATTR_STOPPED):
        return (
            f"{head}  {a[ATTR_FAILURE]}; queued again, it resumes from its checkpoint after "
            f"{images(a.get(ATTR_TRAIN_IMAGES, 0))} images when the study runs next{run}"
        )
    if accuracies is None:
        return f"{head}  {trial.state.name.lower()}: {a.get(ATTR_FAILURE, 'see its MLflow run')}{run}"
    return (
        f"{head}  val {accuracies[VAL_ACCURACY]}  test {accuracies[TEST_ACCURACY]}  "
        f"first128 {accuracies[FIRST128_ACCURACY]}  {images(a[ATTR_TRAIN_IMAGES])} images  "
        f"{a[ATTR_TRAIN_SECONDS]:.0f}s{resumed}{run}"
    )


def study_line(name: str, finished: int, target: int, max_images: int | None, spent: int) -> str:
    """Where the study stands at the end of a run, and whether --max-images ended it."""
    line = f"study '{name}': {finished}/{target} trials finished, {images(spent)} training images spent"
    if max_images is not None and spent >= max_images and finished < target:
        line += f"; stopped by --max-images {images(max_images)}: run again with a larger budget to continue"
    return line


def best_line(trial: FrozenTrial, accuracies: dict[str, Accuracy]) -> str:
    return (
        f"best on validation: trial {trial.number}, val {accuracies[VAL_ACCURACY]}, test {accuracies[TEST_ACCURACY]}, "
        f"first 128 test images {accuracies[FIRST128_ACCURACY]}"
    )


def seed_line(result: TrainResult) -> str:
    """The accuracies and training time of one seed's run (baseline's and confirm's)."""
    a = {k: str(v) for k, v in result.accuracies.items()}
    return (
        f"val {a[VAL_ACCURACY]}  test {a[TEST_ACCURACY]}  first128 {a[FIRST128_ACCURACY]}  {result.train_seconds:.0f}s"
    )


def time_line(wall: float, training: float, trained_images: int, workers: int, cpu: str) -> str:
    """Where this run's time went: optimizer steps versus everything else (start-up, data,
    evaluation, Optuna and MLflow bookkeeping, saving models, the report). Minutes depend on
    the CPU; training images do not."""
    share = training / (wall * workers)
    of = "the wall time" if workers == 1 else f"{workers} workers x the wall time"
    return (
        f"time: {wall / 60:.1f} min wall on {cpu}; training {images(trained_images)} images in "
        f"{training / 60:.1f} min = {100 * share:.1f}% of {of}, everything else {100 * (1 - share):.1f}%"
    )


def browse_line(tracking_uri: str, shown_uri: str, experiment_id: str) -> str:
    """How to open the study's runs table (MLflow 3 opens an experiment on its GenAI view)."""
    view = f"#/experiments/{experiment_id}/runs?workflowType=machine_learning"
    if tracking_uri.startswith(("http://", "https://")):
        return f"browse: {shown_uri.rstrip('/')}/{view}"
    return f"browse: mlflow ui --backend-store-uri {shown_uri}   then open http://127.0.0.1:5000/{view}"


class StepBar:
    """A bar over one training's steps, with its last validation accuracy: called between steps
    (a training's `Hooks.on_step`)."""

    def __init__(self, desc: str, position: int = 0):
        self.desc, self.position, self.bar = desc, position, None

    def __call__(self, done: int, steps: int, last: CurvePoint | None) -> None:
        if self.bar is None:
            self.bar = tqdm(
                total=steps, desc=self.desc, unit="step", position=self.position, leave=False, dynamic_ncols=True
            )
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

    def __init__(
        self,
        study: optuna.Study,
        client: MlflowClient,
        target: int,
        timeout: float | None,
        max_images: int | None = None,
    ):
        from sweep.search.workers import finished_trials

        self.study, self.client, self.target, self.timeout, self.started = (
            study,
            client,
            target,
            timeout,
            time.monotonic(),
        )
        self.max_images = max_images
        self.finished = finished_trials
        self.number, self.trial = None, StepBar("")
        self.seen = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
        if timeout is None:
            done = min(self.finished(study), target)
            self.bar = tqdm(total=target, initial=done, desc=study.study_name, unit="trial", dynamic_ncols=True)
        else:
            self.bar = tqdm(
                total=timeout,
                desc=study.study_name,
                dynamic_ncols=True,
                bar_format="{desc} |{bar}| {elapsed} of the {total:.0f} s budget{postfix}",
            )
        self.show()

    def show(self) -> None:
        finished = min(self.finished(self.study), self.target)
        best = f"best val {100 * self.study.best_value:.2f}%" if self.study.best_trials else ""
        spent = (
            "" if self.max_images is None else f"{images(study_images(self.study))} of {images(self.max_images)} images"
        )
        if self.timeout is None:
            self.bar.n = finished
            self.bar.set_postfix_str(", ".join(filter(None, [best, spent])), refresh=False)
        else:
            self.bar.n = min(time.monotonic() - self.started, self.timeout)
            self.bar.set_postfix_str(
                ", ".join(filter(None, [f"{finished}/{self.target} trials", best, spent])), refresh=False
            )
        self.bar.refresh()

    def trial_done(self, trial: FrozenTrial) -> None:
        """A trial of this process ended: its line, and the bar moves."""
        self.seen.add(trial.number)
        complete = trial.state == TrialState.COMPLETE
        self.trial.close()
        self.number = None
        log.info(
            trial_line(trial, final_accuracies(self.client, trial.user_attrs[ATTR_MLFLOW_RUN_ID]) if complete else None)
        )
        self.show()

    def poll(self) -> None:
        """--n-jobs: the lines of trials the workers ended since the last look."""
        for trial in self.study.get_trials(
            deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        ):
            if trial.number not in self.seen and not trial.user_attrs.get(ATTR_SURPLUS):
                self.trial_done(trial)
        self.show()

    def step(self, number: int, done: int, steps: int, last: CurvePoint | None) -> None:
        if number != self.number:
            self.trial.close()
            self.number, self.trial = number, StepBar(f"  trial {number}", position=1)
        self.trial(done, steps, last)
        if self.timeout is not None and time.monotonic() - self.bar.last_print_t > self.bar.mininterval:
            self.show()  # the budget bar moves with time, not with trials

    def close(self) -> None:
        self.trial.close()
        self.bar.close()


def quiet_libraries(tensorflow: bool = True) -> None:
    """Our own lines say what happened; the libraries' start-up chatter would bury them."""
    if tensorflow:
        quiet_tensorflow()
    import mlflow  # noqa: F401  (sets its loggers' levels when imported: import it before setting them)

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
