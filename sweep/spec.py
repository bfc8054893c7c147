"""Study specs: the search space as data (`studies/*.toml`), validated before anything is written.

A spec names what its trials share (`[fixed]`), what Optuna searches (`[search.<name>]`), trial
0 (`[baseline]`), trials to run next (`[[enqueue]]`, optional), the sampler and the pruner.
Whatever a spec leaves out is the tutorial's recipe (`TrainConfig` defaults), so the tutorial is
written down once, in `sweep/config.py`.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import optuna

from sweep.errors import SweepError
from sweep.config import FIRST_TEST_IMAGES, LR_SCHEDULES, TrainConfig

SAMPLERS = {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler}
PRUNERS = {  # type -> (class, the settings a spec may give)
    "median": (optuna.pruners.MedianPruner, {"n_startup_trials", "n_warmup_steps", "interval_steps"}),
    "hyperband": (optuna.pruners.HyperbandPruner, {"min_resource", "max_resource", "reduction_factor"}),
    "none": (optuna.pruners.NopPruner, set()),
}
STUDIES = Path(__file__).with_name("studies")  # the tool's own study files (the repository's studies/ links here)
TABLES = {"name", "description", "fixed", "baseline", "enqueue", "search", "sampler", "pruner"}
PARAM_KEYS = {"type", "low", "high", "log", "step"}
POSITIVE = {"num_units", "batch_size", "train_steps", "eval_every", "curve_val_limit", "train_limit", "val_limit",
            "test_limit", "epochs", "clip_norm", "learning_rate", "weight_decay"}
BOUNDED = {  # setting -> (test, what it must be)
    "label_smoothing": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "ema_momentum": (lambda v: 0 < v < 1, "in (0, 1)"),
    "shift_pixels": (lambda v: 0 <= v <= 8, "between 0 and 8"),
}


def bad_value(key: str, value: float) -> str | None:
    """What is wrong with a setting's value, if anything (types aside)."""
    if key in POSITIVE and value <= 0:
        return "must be positive"
    if key in BOUNDED and not BOUNDED[key][0](value):
        return f"must be {BOUNDED[key][1]}"
    return None


@dataclass(frozen=True)
class Param:
    """One searched hyperparameter: Optuna's suggest_int / suggest_float arguments."""

    name: str
    type: str  # "int" or "float"
    low: float
    high: float
    log: bool = False
    step: float | None = None

    def suggest(self, trial: optuna.Trial) -> int | float:
        if self.type == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


@dataclass(frozen=True)
class Spec:
    name: str
    description: str
    fixed: TrainConfig  # every trial starts from this and overrides the searched fields
    baseline: TrainConfig  # trial 0
    enqueue: tuple[TrainConfig, ...]  # tried right after the baseline: known good points, say
    search: dict[str, Param]
    sampler: str
    sampler_seed: int
    pruner: str
    pruner_settings: dict[str, int]
    source: str  # the TOML text, logged with the study so it can be read back later

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.source.encode()).hexdigest()[:16]

    def make_sampler(self, offset: int) -> optuna.samplers.BaseSampler:
        return SAMPLERS[self.sampler](seed=self.sampler_seed + offset)

    def make_pruner(self) -> optuna.pruners.BasePruner:
        return PRUNERS[self.pruner][0](**self.pruner_settings)

    def suggest(self, trial: optuna.Trial) -> TrainConfig:
        """The trial's configuration: the fixed settings plus the sampler's choices."""
        return replace(self.fixed, **{name: p.suggest(trial) for name, p in self.search.items()})

    def params(self, config: TrainConfig) -> dict[str, Any]:
        """The searched values of a configuration, as Optuna's trial params."""
        return {name: getattr(config, name) for name in self.search}


def _settings(table: Any, where: str, path: Path) -> dict[str, Any]:
    """Check a table of TrainConfig settings: known names, right types, sizes above zero."""
    if not isinstance(table, dict):
        raise SweepError(f"study file {path}: [{where}] must be a table")
    types = TrainConfig.field_types()
    for key, value in table.items():
        if key not in types:
            raise SweepError(f"study file {path}: unknown setting '{key}' in [{where}] (known: {', '.join(types)})")
        expected = types[key]
        ok = isinstance(value, expected) or (expected is float and isinstance(value, int))
        if not ok or isinstance(value, bool):
            raise SweepError(f"study file {path}: {where}.{key} = {value!r} must be {expected.__name__}")
        problem = bad_value(key, value)
        if problem:
            raise SweepError(f"study file {path}: {where}.{key} = {value} {problem}")
        if key == "lr_schedule" and value not in LR_SCHEDULES:
            raise SweepError(f"study file {path}: {where}.lr_schedule = {value!r} is not one of {', '.join(LR_SCHEDULES)}")
        if key == "test_limit" and value < FIRST_TEST_IMAGES:
            raise SweepError(f"study file {path}: {where}.test_limit = {value} must be at least {FIRST_TEST_IMAGES} (the tutorial's figure needs them)")
    return {k: float(v) if types[k] is float else v for k, v in table.items()}


def _param(name: str, table: Any, path: Path) -> Param:
    where = f"study file {path}: search.{name}"
    if not isinstance(table, dict):
        raise SweepError(f"{where} must be a table with type, low, high")
    unknown = set(table) - PARAM_KEYS
    if unknown:
        raise SweepError(f"{where}: unknown key '{sorted(unknown)[0]}' (known: {', '.join(sorted(PARAM_KEYS))})")
    missing = {"type", "low", "high"} - set(table)
    if missing:
        raise SweepError(f"{where}: missing '{sorted(missing)[0]}'")
    kind, expected = table["type"], TrainConfig.field_types()[name]
    if expected not in (int, float):
        raise SweepError(f"{where}: only numbers can be searched; set {name} in [fixed]")
    if kind not in ("int", "float") or (kind == "float") != (expected is float):
        raise SweepError(f"{where}: type = {kind!r}, but {name} is {expected.__name__}: use type = \"{expected.__name__}\"")
    low, high = table["low"], table["high"]
    number = int if kind == "int" else (int, float)
    for bound in ("low", "high"):
        if not isinstance(table[bound], number) or isinstance(table[bound], bool):
            raise SweepError(f"{where}: {bound} = {table[bound]!r} must be {kind}")
    if low > high:
        raise SweepError(f"{where}: low = {low} is above high = {high}")
    log = table.get("log", False)
    if not isinstance(log, bool):
        raise SweepError(f"{where}: log = {log!r} must be true or false")
    if log and low <= 0:
        raise SweepError(f"{where}: a log range must stay above 0, got low = {low}")
    for bound in ("low", "high"):
        problem = bad_value(name, table[bound])
        if problem:
            raise SweepError(f"{where}: {bound} = {table[bound]} {problem}")
    step = table.get("step")
    if step is not None and (not isinstance(step, number) or step <= 0 or log):
        raise SweepError(f"{where}: step = {step!r} must be a positive {kind}, and log ranges take no step")
    return Param(name, kind, low, high, log, step)


def _point(table: Any, where: str, fixed: TrainConfig, search: dict[str, Param], path: Path) -> TrainConfig:
    """A trial given in the spec (the baseline, or one to enqueue): searched values only, in range."""
    values = _settings(table, where, path)
    not_searched = set(values) - set(search)
    if not_searched:
        raise SweepError(f"study file {path}: {where}.{sorted(not_searched)[0]} is not searched; set it in [fixed]")
    config = replace(fixed, **values)
    for param in search.values():
        value = getattr(config, param.name)
        if not param.contains(value):
            raise SweepError(f"study file {path}: {where} {param.name} = {value} lies outside its range [{param.low}, {param.high}]")
    return config


def find_spec(given: str | Path) -> Path:
    """A study file as given; failing that, one of the tool's own by its name, so that `smoke`
    and `studies/smoke.toml` work from any folder."""
    path = Path(given)
    own = STUDIES / (path.name if path.suffix == ".toml" else f"{path.name}.toml")
    return own if not path.is_file() and own.is_file() else path


def load_spec(given: str | Path) -> Spec:
    path = find_spec(given)
    try:
        source = path.read_text()
    except OSError as e:
        raise SweepError(f"study file {path}: cannot read it ({e.strerror})") from None
    return parse_spec(source, path)


def parse_spec(source: str, path: str | Path) -> Spec:
    """A spec from its TOML text; `path` names it in errors (a file, or where the text was kept)."""
    if not source.strip():
        raise SweepError(f"study file {path}: is empty")
    try:
        raw = tomllib.loads(source)
    except tomllib.TOMLDecodeError as e:
        raise SweepError(f"study file {path}: not valid TOML ({e})") from None

    unknown = set(raw) - TABLES
    if unknown:
        raise SweepError(f"study file {path}: unknown key '{sorted(unknown)[0]}' (known: {', '.join(sorted(TABLES))})")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise SweepError(f"study file {path}: needs name = \"...\" (the Optuna study and MLflow experiment name)")
    search_table = raw.get("search", {})
    if not isinstance(search_table, dict) or not search_table:
        raise SweepError(f"study file {path}: needs at least one [search.<name>] table")
    unknown = set(search_table) - set(TrainConfig.field_types())
    if unknown:
        raise SweepError(f"study file {path}: cannot search '{sorted(unknown)[0]}' (known: {', '.join(TrainConfig.field_types())})")
    search = {name_: _param(name_, table, path) for name_, table in search_table.items()}

    fixed_table = _settings(raw.get("fixed", {}), "fixed", path)
    both = set(fixed_table) & set(search)
    if both:
        raise SweepError(f"study file {path}: '{sorted(both)[0]}' is both fixed and searched; keep one")
    by_steps = sorted({"train_steps", "eval_every"} & (set(fixed_table) | set(search)))
    if "epochs" in set(fixed_table) | set(search) and by_steps:
        raise SweepError(f"study file {path}: epochs and {by_steps[0]} both set; trained by epochs, a trial's curve has a point per epoch")
    fixed = replace(TrainConfig(), **fixed_table)
    baseline = _point(raw.get("baseline", {}), "baseline", fixed, search, path)
    enqueue = raw.get("enqueue", [])
    if not isinstance(enqueue, list):
        raise SweepError(f"study file {path}: enqueue must be a list of tables ([[enqueue]])")
    enqueue = tuple(_point(table, f"enqueue[{i}]", fixed, search, path) for i, table in enumerate(enqueue))

    sampler = raw.get("sampler", {})
    if not isinstance(sampler, dict) or set(sampler) - {"type", "seed"}:
        raise SweepError(f"study file {path}: [sampler] takes only type and seed")
    kind, seed = sampler.get("type", "tpe"), sampler.get("seed", 0)
    if kind not in SAMPLERS:
        raise SweepError(f"study file {path}: sampler type {kind!r} is not one of {', '.join(SAMPLERS)}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise SweepError(f"study file {path}: sampler seed = {seed!r} must be an integer")
    pruner = raw.get("pruner", {})
    if not isinstance(pruner, dict):
        raise SweepError(f"study file {path}: [pruner] must be a table")
    pruner_type = pruner.get("type", "median")
    if pruner_type not in PRUNERS:
        raise SweepError(f"study file {path}: pruner type {pruner_type!r} is not one of {', '.join(PRUNERS)}")
    pruner_settings = {k: v for k, v in pruner.items() if k != "type"}
    for key, value in pruner_settings.items():
        if key not in PRUNERS[pruner_type][1]:
            known = ", ".join(sorted(PRUNERS[pruner_type][1])) or "none"
            raise SweepError(f"study file {path}: pruner.{key} is not a {pruner_type} pruner setting (known: {known})")
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise SweepError(f"study file {path}: pruner.{key} = {value!r} must be a whole number ≥ 0")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise SweepError(f"study file {path}: description must be a string")
    return Spec(name.strip(), description.strip(), fixed, baseline, enqueue, search, kind, seed, pruner_type, pruner_settings, source)
