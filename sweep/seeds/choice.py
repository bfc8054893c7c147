"""The study's top trials, confirmed over seeds, and the choice among them. One seed's validation
score, and the best of many trials' especially, runs high (the winner's curse), so candidates
are ranked by *mean* validation accuracy over seeds 0..S-1; test accuracy never decides.

"As good as the best" is a paired question: every candidate's seed s validated on the same
images (fold s mod 12), so McNemar's exact test on the images where the two disagree, pooled
over the seeds both have, says whether the ranking could be noise. Among the candidates that
cannot be told apart from the best, the cheapest (at least 1% fewer training images per
training) is chosen, as the report's "cheapest as good" line does for trials.

A trial's own run is its configuration's seed 0; the other seeds are runs nested under the
study's `confirm` parent run, trained by `sweep.seeds.train` and read here, with no TensorFlow,
by it and by the report.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import optuna
from mlflow import MlflowClient
from mlflow.entities import Run
from optuna.trial import FrozenTrial, TrialState

from sweep.errors import SweepError
from sweep.search.attributes import ATTR_MLFLOW_RUN_ID
from sweep.stats import VAL_ACCURACY, Accuracy, Paired, seed_interval
from sweep.tracking import queries
from sweep.tracking.schema import METRIC_TRAIN_SECONDS, PARAM_CPU, ROLE_CONFIRM
from sweep.training.data import FOLDS

ALPHA = 0.05  # below this p-value two candidates are told apart
CHEAPER = 0.99  # a candidate is cheaper with at most this share of the best one's training images


@dataclass(frozen=True)
class Confirmed:
    """One configuration (a trial's) and its accuracies by seed."""

    number: int
    params: dict
    search_val: float  # the trial's validation accuracy when the study ran it: what chose it for confirming
    seeds: dict[int, dict[str, Accuracy]]  # seed -> each accuracy (sweep.stats.ACCURACIES)
    costs: dict[int, tuple[int, float]]  # seed -> training images, optimizer seconds
    folds: dict[int, int]  # seed -> the validation fold it used
    run_ids: dict[int, str]  # seed -> its MLflow run
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
        return self.search_val - self.mean(VAL_ACCURACY)


def top_trials(study: optuna.Study, top: int) -> list[FrozenTrial]:
    """The completed trials with the highest validation accuracy; ties go to the earlier trial,
    as Optuna's best_trial breaks them."""
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not done:
        raise SweepError(f"study '{study.study_name}' has no completed trial to confirm")
    return sorted(done, key=lambda t: (-t.value, t.number))[:top]


def own_run(client: MlflowClient, trial: FrozenTrial) -> Run:
    return client.get_run(trial.user_attrs[ATTR_MLFLOW_RUN_ID])


def runs_by_seed(
    client: MlflowClient, trial: FrozenTrial, confirm_runs: list[Run], any_fold: bool = False
) -> dict[int, Run]:
    """The finished runs of the trial's configuration, by seed: its own run and, among
    confirm's (`queries.seed_runs`), the trial's; only those on their seed's own fold, unless
    `any_fold`."""
    own = own_run(client, trial)
    found = {queries.seed_of(own): own}
    for run in confirm_runs:
        if queries.trial_number(run) == trial.number:
            found.setdefault(queries.seed_of(run), run)
    return {s: r for s, r in found.items() if any_fold or queries.fold_of(r) == s % FOLDS}


def confirmed(client: MlflowClient, trial: FrozenTrial, confirm_runs: list[Run]) -> Confirmed:
    runs = dict(sorted(runs_by_seed(client, trial, confirm_runs).items()))
    return Confirmed(
        trial.number,
        trial.params,
        trial.value,
        {seed: queries.accuracies_of(run) for seed, run in runs.items()},
        {
            seed: (queries.images_of(run), run.data.metrics.get(METRIC_TRAIN_SECONDS, float("nan")))
            for seed, run in runs.items()
        },
        {seed: queries.fold_of(run) for seed, run in runs.items()},
        {seed: run.info.run_id for seed, run in runs.items()},
        ", ".join(sorted({run.data.params.get(PARAM_CPU, "a CPU not recorded") for run in runs.values()})),
    )


def confirmed_trials(client: MlflowClient, study: optuna.Study) -> list[Confirmed]:
    """Every trial with confirm runs, best mean validation accuracy first (what the report reads)."""
    runs = queries.seed_runs(client, study.study_name, ROLE_CONFIRM)
    numbers = {queries.trial_number(run) for run in runs}
    trials = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.number in numbers]
    return by_mean_validation([confirmed(client, t, runs) for t in trials])


def by_mean_validation(found: list[Confirmed]) -> list[Confirmed]:
    return sorted(found, key=lambda c: (-c.mean(VAL_ACCURACY), c.number))


@dataclass(frozen=True)
class Choice:
    """confirm's choice: the candidates by mean validation accuracy, each other one paired with the
    best (None where a seed lacks its predictions: runs logged before they were), and the one chosen."""

    ranked: list[Confirmed]
    paired: dict[int, tuple[Paired, int] | None]  # trial -> (pooled over the seeds both have, how many seeds)
    chosen: Confirmed

    def apart(self, number: int) -> bool | None:
        """Whether the candidate can be told apart from the best (None: no paired data)."""
        found = self.paired.get(number)
        return None if found is None else found[0].p_value < ALPHA


Hits = Callable[[str], "np.ndarray | None"]  # a run id -> per validation image, right or wrong (None: not logged)


def val_hits(client: MlflowClient, run_id: str) -> np.ndarray | None:
    """Per validation image: did the run's model get it right? None for runs logged before predictions."""
    arrays = queries.predictions_of(client, run_id)
    return None if arrays is None else arrays["val"] == arrays["val_labels"]


def paired_over_seeds(a: Confirmed, b: Confirmed, hits: Hits) -> tuple[Paired, int] | None:
    """A and B paired on the validation images of every seed both have, pooled."""
    only_a = only_b = seeds = 0
    for seed in sorted(set(a.seeds) & set(b.seeds)):
        hits_a, hits_b = hits(a.run_ids[seed]), hits(b.run_ids[seed])
        if hits_a is None or hits_b is None:
            return None
        paired = Paired.of(hits_a, hits_b)
        only_a, only_b, seeds = only_a + paired.only_a, only_b + paired.only_b, seeds + 1
    return (Paired(only_a, only_b), seeds) if seeds else None


def choose(ranked: list[Confirmed], hits: Hits) -> Choice:
    """The best on mean validation accuracy, unless a cheaper candidate cannot be told apart
    from it (McNemar, p >= 0.05): then the cheapest of those. `hits` reads a run's predictions."""
    best = ranked[0]
    paired = {c.number: paired_over_seeds(c, best, hits) for c in ranked[1:]}
    tied = [
        c
        for c in ranked[1:]
        if paired[c.number] is not None
        and paired[c.number][0].p_value >= ALPHA
        and c.mean_cost(0) <= CHEAPER * best.mean_cost(0)
    ]
    chosen = min(tied, key=lambda c: (c.mean_cost(0), ranked.index(c))) if tied else best
    return Choice(ranked, paired, chosen)
