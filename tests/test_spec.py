"""Study specs: the shipped ones load, and every validation rule gives a one-line error."""

from dataclasses import replace

import pytest

from sweep.errors import SweepError
from sweep.search.spec import load_spec, parse_spec, with_sampler_seed
from sweep.training.config import TrainConfig
from tests.conftest import REPO

GOOD = """
name = "t"
[fixed]
train_steps = 10
[search.num_units]
type = "int"
low = 32
high = 512
log = true
[search.learning_rate]
type = "float"
low = 1e-4
high = 1e-2
log = true
"""


CATEGORICAL = '\n[search.{name}]\ntype = "categorical"\nchoices = {choices}\n'


def write(tmp_path, text):
    path = tmp_path / "study.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("path", sorted((REPO / "studies").glob("*.toml")), ids=lambda p: p.stem)
def test_every_shipped_study_file_loads_under_its_own_name(path):
    spec = load_spec(path)
    assert spec.name == path.stem  # `--study NAME` finds the file of that name
    if spec.warm_start is not None:  # a warm start names a study the tool ships
        assert (REPO / "studies" / f"{spec.warm_start[0]}.toml").exists()


def test_tutorial_spec_baseline_is_the_tutorial():
    spec = load_spec(REPO / "studies" / "tutorial.toml")
    assert (
        replace(spec.baseline, curve_val_limit=None) == TrainConfig()
    )  # that limit changes what is measured, not the weights
    assert spec.baseline.curve_val_limit == 1000
    assert set(spec.search) == {"num_units", "learning_rate", "batch_size", "forget_bias"}
    assert spec.params(spec.baseline) == {
        "num_units": 128,
        "learning_rate": 0.001,
        "batch_size": 128,
        "forget_bias": 1.0,
    }


def test_beat_claim_spec_trains_by_epochs_from_the_tutorial_then_a_known_point():
    spec = load_spec(REPO / "studies" / "beat-claim.toml")
    assert spec.params(spec.baseline) == spec.params(TrainConfig())
    assert spec.fixed.epochs and spec.fixed.lr_schedule == "one_cycle" and spec.fixed.clip_norm
    assert [c.num_units for c in spec.enqueue] == [256] and spec.enqueue[0].epochs == spec.fixed.epochs


def test_claim_spec_is_beat_claims_recipe_with_shifts_from_its_trial_15():
    claim, beat = load_spec(REPO / "studies" / "claim.toml"), load_spec(REPO / "studies" / "beat-claim.toml")
    assert replace(claim.fixed, shift_pixels=0) == beat.fixed and claim.fixed.shift_pixels == 1
    assert claim.params(claim.baseline) == claim.params(TrainConfig())  # trial 0 is still the tutorial's values
    assert claim.params(claim.enqueue[0]) == {
        "num_units": 195,
        "learning_rate": 0.004717,
        "batch_size": 98,
        "forget_bias": 0.809,
    }


def test_recipe_spec_starts_from_the_tutorials_values_at_its_smallest_budget_and_copies_nothing_in():
    spec = load_spec(REPO / "studies" / "recipe.toml")
    assert spec.params(spec.baseline) == spec.params(replace(TrainConfig(), epochs=6, shift_pixels=1))
    assert spec.baseline.epochs == spec.search["epochs"].low and spec.fixed.lr_schedule == "one_cycle"
    assert not spec.enqueue and spec.warm_start is None
    assert {"epochs", "shift_pixels", "num_units", "learning_rate", "batch_size", "forget_bias"} == set(spec.search)
    assert not spec.search["num_units"].log and not spec.search["learning_rate"].log  # most draws where the claim lives
    assert spec.pruner == "none" and spec.fixed.eval_points  # curve points at fractions of each trial's own schedule


def test_the_search_benchmarks_earlier_method_is_the_recipe_study_as_it_was():
    """bench/search-methods/recipe-tpe-median.toml keeps the method recipe.toml shipped until
    2026-12-03, which the benchmark compares the shipped one with."""
    spec = load_spec(REPO / "bench" / "search-methods" / "recipe-tpe-median.toml")
    assert (
        replace(spec.baseline, curve_val_limit=None, eval_points=None) == TrainConfig()
    )  # 799 steps, constant, no shifts
    assert {"train_steps", "lr_schedule", "shift_pixels", "clip_norm", "label_smoothing"} <= set(spec.search)
    assert spec.pruner == "median" and spec.sampler_settings == {"n_startup_trials": 5, "multivariate": True}


def test_cheap_claim_spec_trains_four_epochs_whatever_the_batch():
    spec = load_spec(REPO / "studies" / "cheap-claim.toml")
    assert spec.fixed.epochs == 4 and "epochs" not in spec.search and "train_steps" not in spec.search
    assert 0 <= spec.fixed.images(55_000) - 220_000 < spec.fixed.batch_size  # the last batch rounds up


def test_smoke_spec_limits_the_data():
    spec = load_spec(REPO / "studies" / "smoke.toml")
    assert spec.fixed.train_limit and spec.fixed.val_limit and spec.fixed.test_limit >= 128
    assert spec.baseline.num_units == 16 and spec.baseline.learning_rate == TrainConfig().learning_rate


def test_good_spec_fills_in_the_tutorial(tmp_path):
    spec = load_spec(write(tmp_path, GOOD))
    assert spec.fixed.train_steps == 10 and spec.fixed.batch_size == 128 and spec.fixed.forget_bias == 1.0


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda t: t + "\n[extra]\na = 1\n", "unknown key 'extra'"),
        (lambda t: t.replace('name = "t"', ""), "needs name"),
        (lambda t: t.replace("train_steps = 10", "train_stepz = 10"), "unknown setting 'train_stepz'"),
        (lambda t: t.replace("train_steps = 10", "train_steps = 0"), "train_steps = 0 must be positive"),
        (lambda t: t.replace("train_steps = 10", "train_steps = 1.5"), "must be int"),
        (lambda t: t.replace("train_steps = 10", "test_limit = 100"), "at least 128"),
        (lambda t: t.replace("low = 32", "low = 600"), "low = 600 is above high = 512"),
        (lambda t: t.replace("low = 1e-4", "low = 0.0"), "log range must stay above 0"),
        (lambda t: t.replace('type = "int"', 'type = "float"'), 'use type = "int"'),
        (lambda t: t.replace("high = 512\n", ""), "missing 'high'"),
        (
            lambda t: t.replace("log = true\n[search.learning_rate]", "lg = true\n[search.learning_rate]"),
            "unknown key 'lg'",
        ),
        (lambda t: t + '\n[search.dropout]\ntype = "float"\nlow = 0\nhigh = 1\n', "cannot search 'dropout'"),
        (lambda t: t + "\n[baseline]\nnum_units = 16\n", "baseline num_units = 16 lies outside its range"),
        (lambda t: t + "\n[baseline]\nbatch_size = 64\n", "baseline.batch_size is not searched"),
        (lambda t: t.replace("train_steps = 10", "num_units = 64"), "both fixed and searched"),
        (lambda t: t + '\n[sampler]\ntype = "grid"\n', "sampler type 'grid'"),
        (lambda t: t.replace("train_steps = 10", "epochs = 3"), None),
        (lambda t: t.replace("train_steps = 10", "train_steps = 10\nepochs = 3"), "epochs and train_steps both set"),
        (
            lambda t: t.replace("train_steps = 10", 'lr_schedule = "cosine"'),
            "lr_schedule = 'cosine' is not one of constant, one_cycle",
        ),
        (lambda t: t.replace("train_steps = 10", "clip_norm = -1.0"), "clip_norm = -1.0 must be positive"),
        (
            lambda t: t + '\n[search.lr_schedule]\ntype = "int"\nlow = 0\nhigh = 1\n',
            'lr_schedule is str: search it with type = "categorical"',
        ),
        (lambda t: t + CATEGORICAL.format(name="lr_schedule", choices='["constant", "one_cycle"]'), None),
        (
            lambda t: t + CATEGORICAL.format(name="lr_schedule", choices='["constant", "cosine"]'),
            "choices\\[1\\] = 'cosine' is not one of constant, one_cycle",
        ),
        (
            lambda t: t + CATEGORICAL.format(name="lr_schedule", choices="[]"),
            "needs choices = \\[...\\], a non-empty list",
        ),
        (
            lambda t: t + CATEGORICAL.format(name="shift_pixels", choices="[0, 1.5]"),
            "shift_pixels.choices\\[1\\] = 1.5 must be int",
        ),
        (
            lambda t: t + CATEGORICAL.format(name="shift_pixels", choices="[0, 9]"),
            "choices\\[1\\] = 9 must be between 0 and 8",
        ),
        (lambda t: t + CATEGORICAL.format(name="shift_pixels", choices="[1, 1]"), "choices repeat a value"),
        (
            lambda t: t + CATEGORICAL.format(name="shift_pixels", choices='["none", 1]'),
            'choices\\[0\\] = "none", but shift_pixels cannot be unset',
        ),
        (lambda t: t + CATEGORICAL.format(name="clip_norm", choices='["none", 1.0, 2]'), None),
        (
            lambda t: t + CATEGORICAL.format(name="clip_norm", choices='["none", 1.0]') + "low = 1\n",
            "a categorical setting takes only choices, not 'low'",
        ),
        (
            lambda t: (
                t + CATEGORICAL.format(name="clip_norm", choices='["none", 1.0]') + "\n[baseline]\nclip_norm = 3.0\n"
            ),
            "baseline clip_norm = 3.0 is not one of its choices",
        ),
        (
            lambda t: t + '\n[search.shift_pixels]\ntype = "int"\nlow = 0\nhigh = 2\nchoices = [1]\n',
            "choices go with type",
        ),
        (
            lambda t: (
                t.replace("train_steps = 10", "batch_size = 64")
                + '\n[search.epochs]\ntype = "int"\nlow = 2\nhigh = 8\n'
            ),
            "searching epochs needs eval_points in \\[fixed\\]",
        ),
        (
            lambda t: (
                t.replace("train_steps = 10", "eval_points = 4")
                + '\n[search.train_steps]\ntype = "int"\nlow = 10\nhigh = 800\n'
            ),
            None,
        ),
        (
            lambda t: t.replace("train_steps = 10", "eval_points = 4\neval_every = 2"),
            "eval_points and eval_every both set",
        ),
        (lambda t: t + '\n[warm_start]\nstudy = "beat-claim"\ntop = 3\n', None),
        (lambda t: t + '\n[warm_start]\nstudy = "beat-claim"\n', 'takes study = "NAME" and top = K'),
        (
            lambda t: t + '\n[warm_start]\nstudy = "beat-claim"\ntop = 0\n',
            "warm_start.top = 0 must be a whole number ≥ 1",
        ),
        (lambda t: t + "\n[sampler]\nn_startup_trials = 3\nmultivariate = true\n", None),
        (
            lambda t: t + "\n[sampler]\nn_startup_trials = -1\n",
            "sampler.n_startup_trials = -1 must be a whole number ≥ 0",
        ),
        (
            lambda t: t + '\n[sampler]\ntype = "random"\nn_startup_trials = 3\n',
            "sampler.n_startup_trials is not a random sampler setting",
        ),
        (lambda t: t + "\n[[enqueue]]\nnum_units = 1024\n", "enqueue\\[0\\] num_units = 1024 lies outside its range"),
        (lambda t: t + "\n[[enqueue]]\nclip_norm = 1.0\n", "enqueue\\[0\\].clip_norm is not searched"),
        (lambda t: t + "\nname2 = [", "not valid TOML"),
        (lambda t: "", "is empty"),
    ],
)
def test_invalid_specs_are_refused_in_one_line(tmp_path, change, message):
    if message is None:  # the control: this change alone is valid
        load_spec(write(tmp_path, change(GOOD)))
        return
    with pytest.raises(SweepError, match=message) as info:
        load_spec(write(tmp_path, change(GOOD)))
    assert "\n" not in str(info.value)


def test_missing_spec_file(tmp_path):
    with pytest.raises(SweepError, match="cannot read it"):
        load_spec(tmp_path / "none.toml")


def test_categorical_and_unset_choices_reach_the_configuration(tmp_path):
    import optuna

    text = (
        GOOD
        + CATEGORICAL.format(name="clip_norm", choices='["none", 0.5]')
        + CATEGORICAL.format(name="lr_schedule", choices='["one_cycle"]')
    )
    text = (
        text.replace("train_steps = 10", 'train_steps = 10\nlr_schedule = "one_cycle"')
        .replace("\n[search.lr_schedule]", "\n[search.label_smoothing]")
        .replace('["one_cycle"]', "[0.0, 0.1]")
    )
    spec = load_spec(write(tmp_path, text))
    assert spec.search["clip_norm"].choices == (None, 0.5) and spec.baseline.clip_norm is None
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = {spec.suggest(study.ask()).clip_norm for _ in range(20)}
    assert seen == {None, 0.5}
    assert {spec.suggest(study.ask()).label_smoothing for _ in range(20)} == {0.0, 0.1}


def test_a_specs_identity_is_its_data_not_its_text(tmp_path):
    """Comments and layout may change; a value may not."""
    same = load_spec(write(tmp_path, "# a comment\n" + GOOD.replace("low = 32", "low   =   32  # units")))
    assert same.identity == load_spec(write(tmp_path, GOOD)).identity
    assert load_spec(write(tmp_path, GOOD.replace("low = 32", "low = 33"))).identity != same.identity


BASE = """
name = "base"
description = "the base space"
[fixed]
eval_points = 6
clip_norm = 1.0
[baseline]
epochs = 2
shift_pixels = 1
[[enqueue]]
epochs = 3
num_units = 200
[search.epochs]
type = "int"
low = 2
high = 10
[search.shift_pixels]
type = "int"
low = 0
high = 2
[search.num_units]
type = "int"
low = 32
high = 512
[sampler]
seed = 4
n_startup_trials = 3
[pruner]
type = "median"
n_startup_trials = 2
"""


def test_a_study_file_that_extends_another_fixes_its_budget_and_keeps_the_rest(tmp_path):
    (tmp_path / "base.toml").write_text(BASE)
    own = '# at 4 epochs\nextends = "base"\nname = "base-4"\n[fixed]\nepochs = 4\neval_points = 4\n'
    own += '[sampler]\nseed = 7\n[pruner]\ntype = "none"\n[search.num_units]\ntype = "int"\nlow = 64\nhigh = 256\n'
    spec = load_spec(write(tmp_path, own))
    assert spec.name == "base-4" and spec.description == "the base space"  # the name is its own
    assert (spec.fixed.epochs, spec.fixed.eval_points, spec.fixed.clip_norm) == (4, 4, 1.0)
    assert set(spec.search) == {"shift_pixels", "num_units"}  # a fixed setting is no longer searched
    assert spec.search["num_units"].low == 64  # its own dimension wins whole
    assert (spec.baseline.epochs, spec.baseline.shift_pixels) == (4, 1)  # ...nor given in a point
    assert [(p.epochs, p.num_units) for p in spec.enqueue] == [(4, 200)]
    assert (spec.sampler_seed, spec.sampler_settings) == (7, {"n_startup_trials": 3})  # setting by setting
    assert (spec.pruner, spec.pruner_settings) == ("none", {})  # the pruner replaced whole

    # The study keeps the two merged, with the file's comments: it stands when the base changes.
    assert spec.source.startswith("# at 4 epochs\n") and "extends" not in spec.source.replace("extends base", "")
    (tmp_path / "base.toml").unlink()
    kept = parse_spec(spec.source, "(kept)")
    assert kept == replace(spec, source=kept.source) and kept.identity == spec.identity
    # The same study written out in full is the same study.
    assert parse_spec(spec.source.split("merged:\n")[1], "(full)").identity == spec.identity


def test_a_study_file_may_search_what_the_one_it_extends_fixes(tmp_path):
    (tmp_path / "base.toml").write_text(BASE)
    own = 'extends = "base"\nname = "wider"\n[search.clip_norm]\ntype = "categorical"\nchoices = ["none", 1.0]\n'
    spec = load_spec(write(tmp_path, own))
    assert "clip_norm" in spec.search and spec.fixed.clip_norm is None


def test_a_shipped_frontier_budget_is_the_recipes_space_at_that_budget():
    recipe, four = load_spec("recipe"), load_spec("recipe-4-epochs")
    assert set(four.search) == set(recipe.search) - {"epochs"} and four.fixed.epochs == 4
    assert all(four.search[name] == recipe.search[name] for name in four.search)
    assert four.warm_start == ("recipe", 1)


def test_the_wide_3_epoch_study_widens_only_num_units_and_tries_640_units_first():
    three, wide = load_spec("recipe-3-epochs"), load_spec("recipe-3-epochs-wide")
    assert wide.fixed == three.fixed and set(wide.search) == set(three.search)
    assert [n for n in wide.search if wide.search[n] != three.search[n]] == ["num_units"]
    assert (wide.search["num_units"].low, wide.search["num_units"].high) == (128, 1024)
    (point,) = wide.enqueue
    assert point.num_units == 640 and point.epochs == 3
    assert wide.warm_start == ("recipe-3-epochs", 1)


@pytest.mark.parametrize(
    "name, base, change",
    [
        ("recipe-3-epochs-640", "recipe-3-epochs", {"num_units": 640}),
        ("recipe-20-epochs-rotated", "recipe-20-epochs", {"rotate_degrees": 10.0}),
        ("recipe-3-epochs-rotated", "recipe-3-epochs", {"rotate_degrees": 10.0}),
    ],
)
def test_a_one_change_study_is_the_study_at_its_budget_with_one_setting_fixed(name, base, change):
    """What it warm-starts from, its baseline and every trial differ from that study in one setting."""
    spec, other = load_spec(name), load_spec(base)
    assert spec.fixed == replace(other.fixed, **change) and spec.baseline == replace(other.baseline, **change)
    assert spec.search == {n: p for n, p in other.search.items() if n not in change}
    assert spec.warm_start == (base, 1) and not spec.enqueue


def test_the_small_batch_3_epoch_study_halves_its_first_points_batch_and_widens_only_that_range():
    three, small = load_spec("recipe-3-epochs"), load_spec("recipe-3-epochs-small-batch")
    assert small.fixed == three.fixed and small.baseline == three.baseline
    assert [n for n in small.search if small.search[n] != three.search[n]] == ["batch_size"]
    assert small.search["batch_size"].low == 16 <= small.baseline.batch_size <= small.search["batch_size"].high
    reference, same_rate, scaled_rate = small.enqueue
    assert same_rate == replace(reference, batch_size=reference.batch_size // 2)
    assert scaled_rate == replace(same_rate, learning_rate=scaled_rate.learning_rate)
    assert scaled_rate.learning_rate == pytest.approx(reference.learning_rate / 2**0.5, rel=1e-3)


def test_the_3_epoch_settings_study_searches_three_recipe_settings_from_the_small_batch_studys_reference():
    three, settings = load_spec("recipe-3-epochs"), load_spec("recipe-3-epochs-settings")
    added = {"label_smoothing", "head_init_stddev", "one_cycle_pct_start"}
    assert set(settings.search) == set(three.search) | added
    assert settings.fixed == replace(three.fixed, label_smoothing=TrainConfig().label_smoothing)
    (point,) = settings.enqueue  # the same training as the small-batch study's first point
    assert point == load_spec("recipe-3-epochs-small-batch").enqueue[0]
    for name in added:
        assert settings.search[name].low <= getattr(settings.baseline, name) <= settings.search[name].high


THE_RECIPE_POINT = {  # recipe (sampler seed 3) trial 1, the 0.33 M point: docs/results.md's ablation commands
    "num_units": 413,
    "learning_rate": 0.005634272708911882,
    "batch_size": 96,
    "forget_bias": 0.7659833488735528,
    "shift_pixels": 2,
}


@pytest.mark.parametrize(
    "name, base, change",
    [
        ("recipe-20-epochs-413-rotated", "recipe-20-epochs-rotated", {}),
        ("recipe-4-epochs-rotated", "recipe-4-epochs", {"rotate_degrees": 10.0}),
    ],
)
def test_a_study_that_writes_out_the_recipes_point_is_its_base_with_one_change(name, base, change):
    spec, other = load_spec(name), load_spec(base)
    assert spec.fixed == replace(other.fixed, **change) and spec.baseline == replace(other.baseline, **change)
    assert spec.search == other.search
    (point,) = spec.enqueue
    assert point == replace(spec.fixed, **THE_RECIPE_POINT)


def test_the_4_epoch_settings_study_is_the_3_epoch_one_a_budget_on_starting_from_the_4_epoch_point():
    three, four = load_spec("recipe-3-epochs-settings"), load_spec("recipe-4-epochs-settings")
    assert four.fixed == replace(three.fixed, epochs=4, eval_points=4) and four.search == three.search
    assert four.baseline == replace(three.baseline, epochs=4, eval_points=4)
    the_point, three_epochs_choice = four.enqueue
    recipe_settings = {"label_smoothing": 0.1, "head_init_stddev": 1.0, "one_cycle_pct_start": 0.3}
    assert the_point == replace(four.fixed, **THE_RECIPE_POINT, **recipe_settings)
    assert three_epochs_choice.epochs == 4 and three_epochs_choice.head_init_stddev < 1.0


@pytest.mark.parametrize(
    "own, base, message",
    [
        ('extends = "nowhere"\nname = "x"\n', None, "extends nowhere, but .* cannot be read"),
        ('extends = 3\nname = "x"\n', None, 'extends = "NAME" names another study file'),
        ('extends = "base"\n', BASE, "needs a name"),
        ('extends = "study"\nname = "x"\n', None, "extends study, which extends it back"),
        ('extends = "base"\nname = "x"\n', BASE.replace('name = "base"', 'extends = "study"\nname = "b"'), "back"),
        (
            'extends = "base"\nname = "x"\n[fixed]\nnum_units = 64\n'
            '[search.num_units]\ntype = "int"\nlow = 1\nhigh = 9',
            BASE,
            "both",
        ),
    ],
)
def test_a_bad_extends_is_refused_in_one_line(tmp_path, own, base, message):
    if base is not None:
        (tmp_path / "base.toml").write_text(base)
    with pytest.raises(SweepError, match=message) as info:
        load_spec(write(tmp_path, own))
    assert "\n" not in str(info.value)


def test_another_sampler_seed_is_the_same_search_drawn_again():
    recipe = load_spec("recipe")
    text = with_sampler_seed(recipe.source, 5)
    again = parse_spec(text, "(seed 5)")
    assert again.sampler_seed == 5 and recipe.sampler_seed == 0
    assert replace(again, sampler_seed=0, source="", identity="") == replace(recipe, source="", identity="")
    assert text.startswith("# Which recipe reaches the claim")  # what it is for, still said
