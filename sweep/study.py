"""The Optuna side: open the study, enqueue the baseline, run the objective up to the target.

`--trials N` is a target for the study, not a count for this process: workers stop starting
trials once finished plus running trials reach it, so re-running a command after an
interruption, or running it in several processes, only adds what is missing.
"""

from __future__ import annotations

from collections.abc import Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from sweep.data import Mnist
from sweep.errors import SweepError
from sweep.spec import Spec
from sweep.tracking import StudyTracker, mask_url
from sweep.train import HYPERPARAMETERS, TrainingDiverged, train

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def connect_storage(storage_url: str) -> optuna.storages.RDBStorage:
    try:
        return optuna.storages.RDBStorage(storage_url)
    except Exception as e:  # SQLAlchemy raises a different type for each way a URL can be wrong
        raise SweepError(f"cannot open Optuna storage {mask_url(storage_url)}: {str(e).splitlines()[0]}") from None


def load_study(study_name: str, storage_url: str) -> optuna.Study:
    """An existing study, for reading."""
    storage = connect_storage(storage_url)
    if study_name not in {s.study_name for s in storage.get_all_studies()}:
        raise SweepError(f"no study '{study_name}' in Optuna storage {mask_url(storage_url)} (see --storage, --study-name)")
    return optuna.load_study(study_name=study_name, storage=storage)


def open_study(spec: Spec, storage_url: str) -> optuna.Study:
    """Load or create the study; a new one gets the baseline as trial 0."""
    name = spec.name
    storage = connect_storage(storage_url)
    study = optuna.create_study(storage=storage, study_name=name, direction="maximize", load_if_exists=True)
    study.sampler = spec.make_sampler(len(study.get_trials(deepcopy=False)))
    recorded = study.user_attrs.get("spec_digest")
    if recorded is None:
        study.set_user_attr("spec_digest", spec.digest)
        study.set_user_attr("spec", spec.source)
    elif recorded != spec.digest:
        raise SweepError(f"study '{name}' was created from a different study file; give this one a new --study-name")
    if not study.get_trials(deepcopy=False):
        study.enqueue_trial(spec.baseline_params(), user_attrs={"baseline": True}, skip_if_exists=True)
    return study


def finished_trials(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def claimed_trials(study: optuna.Study) -> int:
    """Finished trials plus those running now, here or in another worker."""
    return len(study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING)))


def run_study(
    study: optuna.Study,
    spec: Spec,
    tracker: StudyTracker,
    mnist: Mnist,
    target: int,
    timeout: float | None = None,
    on_trial: Callable[[FrozenTrial], None] | None = None,
) -> None:
    """Run trials in this process until the study has `target` finished trials."""

    def objective(trial: optuna.Trial) -> float:
        config = spec.suggest(trial)
        with tracker.trial_run(trial.number, config, mnist.md5) as run:
            trial.set_user_attr("mlflow_run_id", run.run_id)
            result = train(config, mnist, on_eval=run.log_curve_point)
            run.log_result(result, config.train_steps)
        # For reading only (progress lines, optuna-dashboard): Optuna optimises validation accuracy.
        for name, acc in result.accuracies.items():
            trial.set_user_attr(name, str(acc))
        trial.set_user_attr("train_seconds", result.train_seconds)
        return result.val_accuracy

    def after_trial(study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.state == TrialState.COMPLETE and study.best_trial.number == trial.number:
            params = {k: trial.params[k] for k in HYPERPARAMETERS if k in trial.params}
            tracker.record_best(trial.number, params, trial.value, trial.user_attrs["mlflow_run_id"])
        if on_trial is not None:
            on_trial(trial)
        if claimed_trials(study) >= target:
            study.stop()

    if claimed_trials(study) < target:
        study.optimize(objective, timeout=timeout, catch=(TrainingDiverged,), callbacks=[after_trial])
