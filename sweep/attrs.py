"""The Optuna attributes the tool writes on studies and trials: every key is spelled here.

Optuna's storage holds what the search needs (its trials' states and values) and what
workers need to share (who runs what, what was stopped and resumes where). A trial's results
are its MLflow run's (`sweep.records`); `MLFLOW_RUN_ID` points to it.
"""

# On the study
SPEC = "spec"  # the TOML text of the spec the study was created from; compared as data

# On a trial: where it came from
BASELINE = "baseline"  # trial 0: the spec's [baseline]
ENQUEUED = "enqueued"  # one of the spec's [[enqueue]] trials
WARM_START = "warm_start"  # {"study": name, "trial": number}: a [warm_start] point
CARRIED = (BASELINE, ENQUEUED, WARM_START)  # kept by the trial that continues a stopped one

# On a trial: how it ran
MLFLOW_RUN_ID = "mlflow_run_id"  # the trial's MLflow run: its metrics, curve, model
WORKER = "worker"  # {"host", "pid", "started"}: the process that runs it
TRAIN_SECONDS = "train_seconds"  # optimizer seconds so far (a resumed trial's include its predecessors')
TRAIN_IMAGES = "train_images"  # training images so far: steps x batch size (likewise)
RESUMED = "resumed"  # {"step", "seconds", "images"}: what a resumed trial took over from its checkpoint

# On a trial: how it ended, if not as COMPLETE
PRUNED = "pruned"  # {"at": where, "val": [correct, total]}
FAILURE = "failure"  # why it failed
STOPPED = "stopped"  # it was stopped on purpose (--timeout, Ctrl-C, SIGTERM), not by its own fault
SURPLUS = "surplus"  # not run: the target was reached, or it was a second copy of an enqueued trial
RESUMES = "resumes"  # the number of the stopped trial this one continues
DEATHS = "deaths"  # how often the workers of the trials it continues died


def spent(user_attrs: dict) -> tuple[int, float]:
    """The training images and optimizer seconds a trial spent itself: its totals so far, less
    what it took over from the checkpoint it resumed."""
    resumed = user_attrs.get(RESUMED, {})
    return (user_attrs.get(TRAIN_IMAGES, 0) - resumed.get("images", 0),
            user_attrs.get(TRAIN_SECONDS, 0.0) - resumed.get("seconds", 0.0))
