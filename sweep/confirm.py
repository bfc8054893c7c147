"""The study's top trials, confirmed over seeds: one seed's validation score, and the best of
many trials' especially, runs high (the winner's curse), so the configuration of record is the
one with the best *mean* validation accuracy over seeds 0..S-1. Test accuracy never decides.

A trial's own run is its configuration's run for the trial's seed; the other seeds are runs
nested under the study's `confirm` parent run (role `confirm-seed`), trained by
`sweep.seeds.confirm` and read here, with no TensorFlow, by it and by the report.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import optuna
from mlflow import MlflowClient
from mlflow.entities import Run
from optuna.trial import FrozenTrial, TrialState

from sweep import records
from sweep.attrs import MLFLOW_RUN_ID
from sweep.errors import SweepError
from sweep.stats import Accuracy, seed_interval


@dataclass(frozen=True)
class Confirmed:
    """One configuration (a trial's) and its accuracies by seed."""

    number: int
    params: dict
    search_val: float  # the trial's validation accuracy when the study ran it: what chose it for confirming
    seeds: dict[int, dict[str, Accuracy]]  # seed -> val_accuracy, test_accuracy, test_accuracy_first128
    costs: dict[int, tuple[int, float]]  # seed -> training images, optimizer seconds
    cpu: str  # what the seconds were measured on

    def values(self, metric: str) -> list[float]:
        return [self.seeds[s][metric].value for s in sorted(self.seeds)]

    def mean(self, metric: str) -> float:
        return statistics.mean(self.values(metric))

    def sd(self, metric: str) -> float:
        return statistics.stdev(self.values(metric)) if len(self.seeds) > 1 else float("nan")

    def mean_cost(self, index: int) -> float:
        """The mean training images (0) or optimizer seconds (1) of one training."""
        return statistics.mean(cost[index] for cost in self.costs.values())

    def interval(self, metric: str) -> tuple[float, float]:
        """The 95% t-interval of the mean over seeds: how far the seed mean itself may be off."""
        return seed_interval(self.values(metric))

    def reaching(self, metric: str, level: float) -> int:
        return sum(v >= level for v in self.values(metric))

    @property
    def winners_curse(self) -> float:
        """How far the search-time validation score sits above the seed mean (in accuracy)."""
        return self.search_val - self.mean("val_accuracy")


def top_trials(study: optuna.Study, top: int) -> list[FrozenTrial]:
    """The completed trials with the highest validation accuracy; ties go to the earlier trial,
    as Optuna's best_trial breaks them."""
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not done:
        raise SweepError(f"study '{study.study_name}' has no completed trial to confirm")
    return sorted(done, key=lambda t: (-t.value, t.number))[:top]


def seed_runs(client: MlflowClient, trial: FrozenTrial, confirm_runs: list[Run]) -> dict[int, Run]:
    """The finished runs of the trial's configuration, by seed: its own run and, among
    confirm's (`records.seed_runs`), the trial's."""
    own = client.get_run(trial.user_attrs[MLFLOW_RUN_ID])
    found = {int(own.data.params["seed"]): own}
    for run in confirm_runs:
        if records.trial_number(run) == trial.number:
            found.setdefault(int(run.data.params["seed"]), run)
    return found


def confirmed(client: MlflowClient, trial: FrozenTrial, confirm_runs: list[Run]) -> Confirmed:
    runs = dict(sorted(seed_runs(client, trial, confirm_runs).items()))
    return Confirmed(trial.number, trial.params, trial.value,
                     {seed: records.accuracies_of(run) for seed, run in runs.items()},
                     {seed: (records.images_of(run), run.data.metrics.get(records.TRAIN_SECONDS, float("nan")))
                      for seed, run in runs.items()},
                     ", ".join(sorted({run.data.params.get(records.CPU, "a CPU not recorded") for run in runs.values()})))


def confirmed_trials(client: MlflowClient, study: optuna.Study) -> list[Confirmed]:
    """Every trial with confirm runs, best mean validation accuracy first (what the report reads)."""
    runs = records.seed_runs(client, study.study_name, records.CONFIRM)
    numbers = {records.trial_number(run) for run in runs}
    trials = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.number in numbers]
    return by_mean_validation([confirmed(client, t, runs) for t in trials])


def by_mean_validation(found: list[Confirmed]) -> list[Confirmed]:
    return sorted(found, key=lambda c: (-c.mean("val_accuracy"), c.number))
