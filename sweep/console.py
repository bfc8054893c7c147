"""What a person sees while a command runs: progress bars, one line per trial, where time went,
and how to browse the results. (sweep/cli.py decides what to say; this says it.)"""

from __future__ import annotations

import time

from tqdm import tqdm

from sweep.config import CurvePoint, TrainResult
from sweep.stats import Accuracy


def accuracy(trial, name: str) -> str:
    """A trial's accuracy as recorded in its user attributes (counts; studies begun before
    commit cb2a94d kept it as text), fit to print."""
    value = trial.user_attrs[name]
    return value if isinstance(value, str) else str(Accuracy(*value))


def trial_line(trial) -> str:
    """One summary line per finished trial, with the MLflow run id that `reproduce` takes."""
    params = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items())
    head = f"trial {trial.number:4d}  {params}"
    a = trial.user_attrs
    run = f"  run {a['mlflow_run_id']}" if "mlflow_run_id" in a else ""
    if trial.state.name == "PRUNED":
        return f"{head}  pruned at {a['pruned']['at']}, val {Accuracy(*a['pruned']['val'])}{run}"
    if trial.value is None:
        return f"{head}  {trial.state.name.lower()}: {a.get('failure', 'see its MLflow run')}{run}"
    return (f"{head}  val {accuracy(trial, 'val_accuracy')}  test {accuracy(trial, 'test_accuracy')}  "
            f"first128 {accuracy(trial, 'test_accuracy_first128')}  {a['train_seconds']:.0f}s{run}")


def seed_line(result: TrainResult) -> str:
    """The accuracies and training time of one seed's run (baseline's and confirm's)."""
    a = {k: str(v) for k, v in result.accuracies.items()}
    return (f"val {a['val_accuracy']}  test {a['test_accuracy']}  first128 {a['test_accuracy_first128']}  "
            f"{result.train_seconds:.0f}s")


def time_line(wall: float, training: float, workers: int) -> str:
    """Where this run's time went: optimizer steps versus everything else (start-up, data,
    evaluation, Optuna and MLflow bookkeeping, saving models, the report)."""
    share = training / (wall * workers)
    of = "the wall time" if workers == 1 else f"{workers} workers x the wall time"
    return (f"time: {wall / 60:.1f} min wall; training {training / 60:.1f} min = {100 * share:.1f}% of {of}, "
            f"everything else {100 * (1 - share):.1f}%")


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
    it), and below it the running trial's steps."""

    def __init__(self, name: str, target: int, finished: int, timeout: float | None):
        self.name, self.target, self.timeout, self.started = name, target, timeout, time.monotonic()
        self.finished, self.best, self.number, self.trial = finished, "", None, StepBar("")
        if timeout is None:
            self.bar = tqdm(total=target, initial=min(finished, target), desc=name, unit="trial", dynamic_ncols=True)
        else:
            self.bar = tqdm(total=timeout, desc=name, dynamic_ncols=True,
                            bar_format="{desc} |{bar}| {elapsed} of the {total:.0f} s budget{postfix}")
        self.show()

    def show(self, finished: int | None = None, best: str | None = None) -> None:
        self.finished, self.best = finished if finished is not None else self.finished, best or self.best
        trials = f"{min(self.finished, self.target)}/{self.target} trials"
        if self.timeout is None:
            self.bar.n = min(self.finished, self.target)
            self.bar.set_postfix_str(self.best, refresh=False)
        else:
            self.bar.n = min(time.monotonic() - self.started, self.timeout)
            self.bar.set_postfix_str(", ".join(filter(None, [trials, self.best])), refresh=False)
        self.bar.refresh()

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
