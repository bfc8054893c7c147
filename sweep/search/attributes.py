"""The Optuna attributes the tool writes on studies and trials: every key is spelled here, as
`ATTR_*` (user attributes) or `SYSTEM_ATTR_*` (Optuna's own).

Optuna's storage holds what the search needs (its trials' states and values) and what workers
need to share (who runs what, what was stopped and resumes where). A trial's results are its
MLflow run's (`sweep.tracking`); `ATTR_MLFLOW_RUN_ID` points to it.
"""

# On the study
ATTR_SPEC = "spec"  # the TOML text of the spec the study was created from; compared as data

# On a trial: where it came from
ATTR_BASELINE = "baseline"  # trial 0: the spec's [baseline]
ATTR_ENQUEUED = "enqueued"  # one of the spec's [[enqueue]] trials
ATTR_WARM_START = "warm_start"  # {"study": name, "trial": number}: a [warm_start] point
CARRIED = (ATTR_BASELINE, ATTR_ENQUEUED, ATTR_WARM_START)  # kept by the trial that continues a stopped one

# On a trial: how it ran
ATTR_MLFLOW_RUN_ID = "mlflow_run_id"  # the trial's MLflow run: its metrics, curve, model
ATTR_WORKER = "worker"  # {"host", "pid", "started"}: the process that runs it
ATTR_TRAIN_SECONDS = "train_seconds"  # optimizer seconds so far (a resumed trial's include its predecessors')
ATTR_TRAIN_IMAGES = "train_images"  # training images so far: steps x batch size (likewise)
ATTR_RESUMED = "resumed"  # {"step", "seconds", "images"}: what a resumed trial took over from its checkpoint

# On a trial: how it ended, if not as COMPLETE
ATTR_PRUNED = "pruned"  # {"at": where, "val": [correct, total]}
ATTR_FAILURE = "failure"  # why it failed
ATTR_STOPPED = "stopped"  # it was stopped on purpose (--timeout, --max-images, Ctrl-C, SIGTERM), not by its own fault
ATTR_SURPLUS = "surplus"  # not run: the target was reached, or it was a second copy of an enqueued trial
ATTR_RESUMES = "resumes"  # the number of the stopped trial this one continues
ATTR_DEATHS = "deaths"  # how often the workers of the trials it continues died

# Optuna's own system attributes, as its RetryHeartbeatStaleTrialCallback and enqueue_trial write them
SYSTEM_ATTR_FAILED_TRIAL, SYSTEM_ATTR_RETRY_HISTORY = "failed_trial", "retry_history"
SYSTEM_ATTR_FIXED_PARAMS = "fixed_params"


def spent(user_attrs: dict) -> tuple[int, float]:
    """The training images and optimizer seconds a trial spent itself: its totals so far, less
    what it took over from the checkpoint it resumed."""
    resumed = user_attrs.get(ATTR_RESUMED, {})
    return (
        user_attrs.get(ATTR_TRAIN_IMAGES, 0) - resumed.get("images", 0),
        user_attrs.get(ATTR_TRAIN_SECONDS, 0.0) - resumed.get("seconds", 0.0),
    )
