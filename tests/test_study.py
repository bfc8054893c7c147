"""Opening a study, with no training: trial 0 and the queue after it (enqueued and warm-start
points), the sampler and pruner a spec asks for, and the spec a study remembers."""

from __future__ import annotations

import logging

import optuna
import pytest
from mlflow import MlflowClient

from sweep.errors import SweepError
from sweep.search.attributes import ATTR_SPEC
from sweep.search.spec import load_spec, parse_spec
from sweep.search.study import TrialSeeded, open_study
from tests.conftest import tracking_store

SOURCE = """name = "source"
[fixed]
epochs = 20
lr_schedule = "one_cycle"
[search.num_units]
type = "int"
low = 128
high = 320
[search.learning_rate]
type = "float"
low = 1e-3
high = 8e-3
"""

TARGET = """name = "target"
[fixed]
eval_points = 10
[baseline]
epochs = 2
[search.num_units]
type = "int"
low = 128
high = 256
[search.learning_rate]
type = "float"
low = 1e-3
high = 1e-2
[search.epochs]
type = "int"
low = 2
high = 20
[search.lr_schedule]
type = "categorical"
choices = ["constant", "one_cycle"]
[warm_start]
study = "source"
top = 3
"""


def source_study(storage: str, values: dict[int, tuple[int, float]]) -> None:
    """A finished study `source` (its spec kept, as a sweep keeps it): trial -> (units, validation)."""
    spec = parse_spec(SOURCE, "source.toml")
    study = optuna.create_study(study_name="source", storage=storage, direction="maximize")
    study.set_user_attr(ATTR_SPEC, spec.source)
    distributions = {
        "num_units": optuna.distributions.IntDistribution(128, 320),
        "learning_rate": optuna.distributions.FloatDistribution(1e-3, 8e-3),
    }
    for number in sorted(values):
        units, value = values[number]
        study.add_trial(
            optuna.trial.create_trial(
                params={"num_units": units, "learning_rate": 0.004}, distributions=distributions, value=value
            )
        )


def opened(tmp_path, text: str, storage: str):
    """The study opened from `text`, and the lines it said."""
    lines = []

    class Keep(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())

    logger, handler = logging.getLogger("sweep"), Keep()
    logger.addHandler(handler)
    level, logger.level = logger.level, logging.INFO
    try:
        study = open_study(parse_spec(text, "target.toml"), storage, MlflowClient(tracking_store(tmp_path)))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return study, lines


def test_warm_start_enqueues_the_best_trials_of_another_study_in_order_after_the_baseline(tmp_path):
    storage = f"sqlite:///{tmp_path}/optuna.db"
    source_study(storage, {0: (128, 0.990), 1: (300, 0.995), 2: (200, 0.993), 3: (160, 0.980), 4: (250, 0.992)})
    study, lines = opened(tmp_path, TARGET, storage)
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert [t.user_attrs.get("baseline") for t in waiting] == [True, None, None]
    assert [t.user_attrs.get("warm_start") for t in waiting[1:]] == [
        {"study": "source", "trial": 2},
        {"study": "source", "trial": 4},
    ]
    # each point is its whole configuration there (epochs and schedule from source's [fixed])
    assert waiting[1].system_attrs["fixed_params"] == {
        "num_units": 200,
        "learning_rate": 0.004,
        "epochs": 20,
        "lr_schedule": "one_cycle",
    }
    assert lines == [
        "warm start: source trial 1 skipped: num_units = 300 lies outside its range [128, 256]",
        "warm start: source trial 2 enqueued (validation 99.30% there)",
        "warm start: source trial 4 enqueued (validation 99.20% there)",
    ]


def test_warm_start_from_a_missing_study_is_one_line_and_no_error(tmp_path):
    study, lines = opened(tmp_path, TARGET, f"sqlite:///{tmp_path}/optuna.db")
    assert lines == ["warm start: no study 'source' in this storage; nothing enqueued"]
    assert len(study.trials) == 1 and study.trials[0].user_attrs == {"baseline": True}


def test_a_study_continues_with_its_spec_as_data_and_refuses_another(tmp_path):
    storage, spec = f"sqlite:///{tmp_path}/optuna.db", TARGET.replace('[warm_start]\nstudy = "source"\ntop = 3\n', "")
    opened(tmp_path, spec, storage)
    opened(
        tmp_path, "# comments and layout may change\n" + spec.replace("low = 2\n", "low   = 2   # epochs\n"), storage
    )
    with pytest.raises(SweepError, match="study 'target' was created from a different study file"):
        opened(tmp_path, spec.replace("high = 20", "high = 21"), storage)


def test_the_spec_chooses_optunas_sampler_and_pruner(tmp_path):
    smoke = load_spec("smoke")
    assert isinstance(smoke.make_pruner(), optuna.pruners.NopPruner)  # pruner "none"
    assert isinstance(load_spec("tutorial").make_pruner(), optuna.pruners.MedianPruner)
    default = parse_spec('name = "d"\n[search.num_units]\ntype = "int"\nlow = 8\nhigh = 160\n', "d.toml")
    assert isinstance(default.make_pruner(), optuna.pruners.MedianPruner) and isinstance(
        default.make_sampler(0), optuna.samplers.TPESampler
    )
    hyperband = parse_spec(
        default.source + '[pruner]\ntype = "hyperband"\nmin_resource = 2\nreduction_factor = 2\n', "h.toml"
    )
    pruner = hyperband.make_pruner()
    assert (
        isinstance(pruner, optuna.pruners.HyperbandPruner)
        and pruner._min_resource == 2
        and pruner._reduction_factor == 2
    )
    random = parse_spec(default.source + '[sampler]\ntype = "random"\nseed = 7\n', "r.toml")
    assert isinstance(random.make_sampler(0), optuna.samplers.RandomSampler)
    study = open_study(random, f"sqlite:///{tmp_path}/optuna.db", MlflowClient(tracking_store(tmp_path)))
    assert isinstance(study.sampler, TrialSeeded) and isinstance(study.pruner, optuna.pruners.MedianPruner)


def test_two_sampler_seeds_give_two_searches(tmp_path):
    """Each trial's sampler is seeded by the spec's seed and the trial number together: seed 1's
    trials are not seed 0's shifted by one (as seed + number would make them)."""
    text = 'name = "s"\n[search.x]\ntype = "float"\nlow = 0\nhigh = 1\n'.replace("x]", "learning_rate]").replace(
        "low = 0", "low = 1e-3"
    )
    proposals = {}
    for seed in (0, 1):
        spec = parse_spec(text + f'[sampler]\ntype = "random"\nseed = {seed}\n', "s.toml")
        study = optuna.create_study(sampler=TrialSeeded(spec.make_sampler))
        proposals[seed] = [study.ask().suggest_float("learning_rate", 1e-3, 1) for _ in range(6)]
    assert not set(proposals[0]) & set(proposals[1])
    again = optuna.create_study(
        sampler=TrialSeeded(parse_spec(text + '[sampler]\ntype = "random"\n', "s.toml").make_sampler)
    )
    assert [again.ask().suggest_float("learning_rate", 1e-3, 1) for _ in range(6)] == proposals[0]  # reproducible
