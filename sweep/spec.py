"""Study specs: the search space as data (`studies/*.toml`), validated before anything is written.

A spec names what its trials share (`[fixed]`), what Optuna searches (`[search.<name>]`: any
TrainConfig setting, by a range or a list of choices), trial 0 (`[baseline]`), trials to run
next (`[[enqueue]]`, and `[warm_start]`: the best trials of another study), the sampler and the
pruner. Whatever a spec leaves out is the tutorial's recipe (`TrainConfig` defaults), so the
tutorial is written down once, in `sweep/config.py`.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from sweep.config import FIRST_TEST_IMAGES, LR_SCHEDULES, TrainConfig
from sweep.errors import SweepError

SAMPLERS = {  # type -> (class, the settings a spec may give besides seed)
    "tpe": (optuna.samplers.TPESampler, {"n_startup_trials": int, "multivariate": bool}),
    "random": (optuna.samplers.RandomSampler, {}),
}
PRUNERS = {  # type -> (class, the settings a spec may give)
    "median": (optuna.pruners.MedianPruner, {"n_startup_trials", "n_warmup_steps", "interval_steps"}),
    "hyperband": (optuna.pruners.HyperbandPruner, {"min_resource", "max_resource", "reduction_factor"}),
    "none": (optuna.pruners.NopPruner, set()),
}
STUDIES = Path(__file__).with_name("studies")  # the tool's own study files (the repository's studies/ links here)
TABLES = {"name", "description", "fixed", "baseline", "enqueue", "warm_start", "search", "sampler", "pruner"}
PARAM_KEYS = {"type", "low", "high", "log", "step", "choices"}
NONE = "none"  # in a list of choices: the setting left unset (clip_norm = None: no clipping), as TOML has no null
BUDGETS = ("train_steps", "epochs")  # searched, trials differ in length
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
    """One searched setting: Optuna's suggest_int / suggest_float / suggest_categorical arguments."""

    name: str
    type: str  # "int", "float" or "categorical"
    low: float = 0
    high: float = 0
    log: bool = False
    step: float | None = None
    choices: tuple = ()  # categorical only; None stands for "unset"

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.type == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.type == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)

    def contains(self, value: Any) -> bool:
        if self.type == "categorical":
            return value in self.choices
        return value is not None and self.low <= value <= self.high

    def __str__(self) -> str:
        """As the parent run's params show it."""
        if self.type == "categorical":
            return f"categorical {[NONE if c is None else c for c in self.choices]}"
        return f"{self.type} [{self.low}, {self.high}]{' log' if self.log else ''}"


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
    sampler_settings: dict[str, Any]
    pruner: str
    pruner_settings: dict[str, int]
    warm_start: tuple[str, int] | None  # (another study, how many of its best trials) to enqueue
    source: str  # the TOML text, logged with the study so it can be read back later
    identity: str  # a digest of the parsed tables: comments and layout do not change it

    def make_sampler(self, trial_number: int) -> optuna.samplers.BaseSampler:
        """The spec's sampler, seeded by the spec's seed and the trial number together: seed + number
        would make seed 1's trial k seed 0's trial k + 1, the same search shifted by one."""
        seed = int(np.random.SeedSequence([self.sampler_seed, trial_number]).generate_state(1)[0])
        return SAMPLERS[self.sampler][0](seed=seed, **self.sampler_settings)

    def make_pruner(self) -> optuna.pruners.BasePruner:
        return PRUNERS[self.pruner][0](**self.pruner_settings)

    def suggest(self, trial: optuna.Trial) -> TrainConfig:
        """The trial's configuration: the fixed settings plus the sampler's choices."""
        return replace(self.fixed, **{name: p.suggest(trial) for name, p in self.search.items()})

    def params(self, config: TrainConfig) -> dict[str, Any]:
        """The searched values of a configuration, as Optuna's trial params."""
        return {name: getattr(config, name) for name in self.search}


def _value(key: str, value: Any, where: str, path: Path) -> Any:
    """A setting's value checked (right type, in bounds) and as TrainConfig takes it."""
    expected = TrainConfig.field_types()[key]
    ok = isinstance(value, expected) or (expected is float and isinstance(value, int))
    if not ok or isinstance(value, bool):
        raise SweepError(f"study file {path}: {where} = {value!r} must be {expected.__name__}")
    problem = bad_value(key, value)
    if problem:
        raise SweepError(f"study file {path}: {where} = {value} {problem}")
    if key == "lr_schedule" and value not in LR_SCHEDULES:
        raise SweepError(f"study file {path}: {where} = {value!r} is not one of {', '.join(LR_SCHEDULES)}")
    if key == "test_limit" and value < FIRST_TEST_IMAGES:
        raise SweepError(f"study file {path}: {where} = {value} must be at least {FIRST_TEST_IMAGES} (the tutorial's figure needs them)")
    return float(value) if expected is float else value


def _settings(table: Any, where: str, path: Path) -> dict[str, Any]:
    """Check a table of TrainConfig settings: known names, right types, sizes above zero."""
    if not isinstance(table, dict):
        raise SweepError(f"study file {path}: [{where}] must be a table")
    types = TrainConfig.field_types()
    for key in table:
        if key not in types:
            raise SweepError(f"study file {path}: unknown setting '{key}' in [{where}] (known: {', '.join(types)})")
    return {key: _value(key, value, f"{where}.{key}", path) for key, value in table.items()}


def _choices(name: str, table: dict, where: str, path: Path) -> Param:
    """A searched setting given as a list of choices; "none" leaves an optional setting unset."""
    extra = sorted(set(table) - {"type", "choices"})
    if extra:
        raise SweepError(f"{where}: a categorical setting takes only choices, not '{extra[0]}'")
    choices = table.get("choices")
    if not isinstance(choices, list) or not choices:
        raise SweepError(f"{where}: needs choices = [...], a non-empty list")
    optional = TrainConfig.optional_fields()
    values = []
    for k, choice in enumerate(choices):
        if choice == NONE:
            if name not in optional:
                raise SweepError(f"{where}: choices[{k}] = \"{NONE}\", but {name} cannot be unset")
            values.append(None)
        else:
            values.append(_value(name, choice, f"search.{name}.choices[{k}]", path))
    if len(set(values)) < len(values):
        raise SweepError(f"{where}: choices repeat a value")
    return Param(name, "categorical", choices=tuple(values))


def _param(name: str, table: Any, path: Path) -> Param:
    where = f"study file {path}: search.{name}"
    if not isinstance(table, dict):
        raise SweepError(f"{where} must be a table with type, low, high (or type = \"categorical\", choices)")
    unknown = set(table) - PARAM_KEYS
    if unknown:
        raise SweepError(f"{where}: unknown key '{sorted(unknown)[0]}' (known: {', '.join(sorted(PARAM_KEYS))})")
    kind, expected = table.get("type"), TrainConfig.field_types()[name]
    if kind == "categorical":
        return _choices(name, table, where, path)
    if expected not in (int, float):
        raise SweepError(f"{where}: {name} is {expected.__name__}: search it with type = \"categorical\", choices = [...]")
    missing = {"type", "low", "high"} - set(table)
    if missing:
        raise SweepError(f"{where}: missing '{sorted(missing)[0]}'")
    if "choices" in table:
        raise SweepError(f"{where}: choices go with type = \"categorical\"")
    if kind not in ("int", "float") or (kind == "float") != (expected is float):
        raise SweepError(f"{where}: type = {kind!r}, but {name} is {expected.__name__}: use type = \"{expected.__name__}\" or \"categorical\"")
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
        if (problem := outside(param, getattr(config, param.name))) is not None:
            raise SweepError(f"study file {path}: {where} {problem}")
    return config


def outside(param: Param, value: Any) -> str | None:
    """What is wrong with a value for a searched setting, if anything."""
    if param.contains(value):
        return None
    if param.type == "categorical":
        return f"{param.name} = {NONE if value is None else value} is not one of its choices"
    return f"{param.name} = {value} lies outside its range [{param.low}, {param.high}]"


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


def with_sampler_seed(source: str, seed: int, path: str | Path) -> str:
    """The spec's text with its sampler seed set to `seed`, all else as it was (comments too):
    the same search, another draw of it."""
    lines = source.splitlines()
    header = next((k for k, line in enumerate(lines) if line.split("#")[0].strip() == "[sampler]"), None)
    if header is None:
        lines += ["", "[sampler]", f"seed = {seed}"]
    else:
        end = next((k for k in range(header + 1, len(lines)) if lines[k].lstrip().startswith("[")), len(lines))
        given = next((k for k in range(header + 1, end) if lines[k].split("=")[0].strip() == "seed"), None)
        if given is None:
            lines.insert(header + 1, f"seed = {seed}")
        else:
            lines[given] = f"seed = {seed}"
    text = "\n".join(lines) + "\n"
    before, after = tomllib.loads(source), tomllib.loads(text)
    before.setdefault("sampler", {})["seed"] = seed
    if before != after:
        raise SweepError(f"study file {path}: cannot set its sampler seed (write [sampler] seed = N on a line of its own)")
    return text


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
    given = set(fixed_table) | set(search)
    by_steps = sorted({"train_steps", "eval_every"} & given)
    if "epochs" in given and by_steps:
        raise SweepError(f"study file {path}: epochs and {by_steps[0]} both set; trained by epochs, a trial's curve has a point per epoch")
    if "eval_points" in given and "eval_every" in given:
        raise SweepError(f"study file {path}: eval_points and eval_every both set; keep one")
    searched_budget = sorted(set(BUDGETS) & set(search))
    if searched_budget and "eval_points" not in fixed_table:
        raise SweepError(f"study file {path}: searching {searched_budget[0]} needs eval_points in [fixed]: trials of "
                         "different lengths are compared by the pruner at the same fractions of their schedules")
    fixed = replace(TrainConfig(), **fixed_table)
    baseline = _point(raw.get("baseline", {}), "baseline", fixed, search, path)
    enqueue = raw.get("enqueue", [])
    if not isinstance(enqueue, list):
        raise SweepError(f"study file {path}: enqueue must be a list of tables ([[enqueue]])")
    enqueue = tuple(_point(table, f"enqueue[{i}]", fixed, search, path) for i, table in enumerate(enqueue))

    sampler = raw.get("sampler", {})
    if not isinstance(sampler, dict):
        raise SweepError(f"study file {path}: [sampler] must be a table")
    kind, seed = sampler.get("type", "tpe"), sampler.get("seed", 0)
    if kind not in SAMPLERS:
        raise SweepError(f"study file {path}: sampler type {kind!r} is not one of {', '.join(SAMPLERS)}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise SweepError(f"study file {path}: sampler seed = {seed!r} must be an integer")
    sampler_settings = {k: v for k, v in sampler.items() if k not in ("type", "seed")}
    for key, value in sampler_settings.items():
        known = SAMPLERS[kind][1]
        if key not in known:
            raise SweepError(f"study file {path}: sampler.{key} is not a {kind} sampler setting "
                             f"(known: {', '.join(['type', 'seed', *sorted(known)])})")
        if not isinstance(value, known[key]) or (known[key] is int and (isinstance(value, bool) or value < 0)):
            raise SweepError(f"study file {path}: sampler.{key} = {value!r} must be "
                             f"{'true or false' if known[key] is bool else 'a whole number ≥ 0'}")
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
    warm_start = raw.get("warm_start")
    if warm_start is not None:
        if not isinstance(warm_start, dict) or set(warm_start) != {"study", "top"}:
            raise SweepError(f"study file {path}: [warm_start] takes study = \"NAME\" and top = K")
        if not isinstance(warm_start["study"], str) or not warm_start["study"].strip():
            raise SweepError(f"study file {path}: warm_start.study must name a study")
        top = warm_start["top"]
        if not isinstance(top, int) or isinstance(top, bool) or top < 1:
            raise SweepError(f"study file {path}: warm_start.top = {top!r} must be a whole number ≥ 1")
        warm_start = (warm_start["study"].strip(), top)
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise SweepError(f"study file {path}: description must be a string")
    identity = hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return Spec(name.strip(), description.strip(), fixed, baseline, enqueue, search, kind, seed, sampler_settings,
                pruner_type, pruner_settings, warm_start, source, identity)
