"""The MLflow schema: every tag, role, param, metric, artifact and status name the tool writes or
reads is spelled here, by kind (`TAG_`, `ROLE_`, `PARAM_`, `METRIC_`, `ARTIFACT_`, `STATUS_`).

An experiment per study holds one parent run per study (`ROLE_STUDY`), a nested run per trial
(`ROLE_TRIAL`), and the runs of `baseline`, `confirm` and `reproduce`, told apart by `TAG_ROLE`.
A run about one configuration holds everything needed to train it again (every TrainConfig
field as a param, the LSTM backend, the MNIST MD5s, library versions, the tool's git commit)
besides its metrics, curves, predictions and model. The three accuracies are metrics named as
`sweep.stats.ACCURACIES` names them, each with its counts and 95% interval.
"""

from mlflow.entities import RunStatus
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NOTE
from optuna.trial import TrialState

# Tags
TAG_ROLE = "sweep.role"  # which kind of run: one of the ROLE_ values
TAG_STUDY_NAME, TAG_TRIAL_NUMBER = "optuna.study_name", "optuna.trial_number"
TAG_TRIAL_STATE = "sweep.trial_state"  # COMPLETE, PRUNED or FAIL: the trial's state in Optuna
TAG_FAILURE, TAG_PRUNED = "sweep.failure", "sweep.pruned"  # why a run ended early
TAG_REPRODUCES, TAG_REPRODUCED = "sweep.reproduces", "sweep.reproduced"  # on a reproduction, and on its original
TAG_REPRODUCTION_MODE, TAG_REPRODUCTION_RESULT = "sweep.reproduction.mode", "sweep.reproduction.result"
TAG_REPRODUCTION_ENVIRONMENT = "sweep.reproduction.environment"
TAG_GIT_COMMIT = "sweep.git_commit"  # the tool's commit, on every run about a configuration
TAG_DATA_DIR = "sweep.data_dir"  # where MNIST was read (absent: downloaded)
TAG_CHECKPOINT = "sweep.checkpoint"  # the artifact path of the run's latest checkpoint, while it has one
TAG_RESUMED_FROM, TAG_RESUMED_AT = "sweep.resumed_from", "sweep.resumed_at"  # the run whose checkpoint it continued
TAG_WARM_START = "sweep.warm_start"  # "<study>#<trial>": where an enqueued configuration came from
TAG_BEST_TRIAL, TAG_BEST_RUN, TAG_BEST_PARAM = "best.trial_number", "best.run_id", "best."  # on the study's run
TAG_NOTE = MLFLOW_RUN_NOTE  # the run's or experiment's description in the UI
TAG_PARENT = MLFLOW_PARENT_RUN_ID

# Roles: the values of TAG_ROLE
ROLE_STUDY, ROLE_TRIAL, ROLE_REPRODUCTION = "study", "trial", "reproduction"
ROLE_BASELINE, ROLE_BASELINE_SEED = "baseline", "baseline-seed"  # the spec's baseline over seeds
ROLE_CONFIRM, ROLE_CONFIRM_SEED = "confirm", "confirm-seed"  # a top trial's configuration with other seeds
SEED_ROLES = {ROLE_BASELINE: ROLE_BASELINE_SEED, ROLE_CONFIRM: ROLE_CONFIRM_SEED}  # a parent's role -> its seeds'

# Params (besides every TrainConfig field, logged under its own name)
PARAM_CPU = "cpu"  # the CPU's model name (minutes and the last bits of weights depend on it)
PARAM_SEED = "seed"  # the TrainConfig field that tells seed runs apart
PARAM_VAL_FOLD = "val_fold"  # the TrainConfig field naming the validation fold

# Metrics (besides the accuracies)
METRIC_TRAIN_SECONDS, METRIC_TRAIN_IMAGES = (
    "train_seconds",
    "train_images",
)  # so far at each curve point; in all at the last
METRIC_TRAIN_LOSS, METRIC_SAMPLES_PER_SECOND = "train_loss", "samples_per_second"
METRIC_WEIGHTS_DIFFERENCE = "weights_max_abs_difference"  # a reproduction's, against the logged model
COUNT_SUFFIXES = ("_correct", "_total")  # an accuracy's counts: `val_accuracy_correct`, ...
INTERVAL_SUFFIXES = ("_ci95_low", "_ci95_high")  # and its 95% Wilson interval

# Artifacts
ARTIFACT_MODEL = "model"  # the MLflow model (Keras flavour)
ARTIFACT_V1_MODEL = "model/model.keras"  # runs logged before the stock Keras LSTM
ARTIFACT_CHECKPOINTS = "checkpoint"  # the folder that holds a run's latest checkpoint
ARTIFACT_PREDICTIONS = "predictions.npz"  # each validation and test image's predicted class
ARTIFACT_REPORT, ARTIFACT_STUDY_FILE = "report", "study.toml"  # on the study's parent run

# Statuses: an MLflow run's, and the trial states TAG_TRIAL_STATE takes
STATUS_FINISHED, STATUS_FAILED, STATUS_KILLED, STATUS_RUNNING = (
    RunStatus.to_string(s) for s in (RunStatus.FINISHED, RunStatus.FAILED, RunStatus.KILLED, RunStatus.RUNNING)
)
STATE_COMPLETE, STATE_PRUNED, STATE_FAIL = (s.name for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))

# The model registry
ALIAS_BEST = "best"  # the registered model's alias for the chosen trial: models:/<study>@best
