"""The search space as a study file writes it: each searched setting (`Param`, Optuna's suggest
arguments) and the checks every setting's value passes before anything is written."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from sweep.errors import SweepError
from sweep.training.config import FIRST_TEST_IMAGES, LR_SCHEDULES, TrainConfig
from sweep.training.data import FOLDS

PARAM_KEYS = {"type", "low", "high", "log", "step", "choices"}
NONE = "none"  # in a list of choices: the setting left unset (clip_norm = None: no clipping), as TOML has no null
POSITIVE = {
    "num_units",
    "batch_size",
    "train_steps",
    "eval_every",
    "curve_val_limit",
    "train_limit",
    "val_limit",
    "test_limit",
    "epochs",
    "clip_norm",
    "learning_rate",
    "weight_decay",
}
POSITIVE |= {"adam_epsilon", "one_cycle_final_div", "head_init_stddev"}
BOUNDED = {  # setting -> (test, what it must be)
    "label_smoothing": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "ema_momentum": (lambda v: 0 < v < 1, "in (0, 1)"),
    "shift_pixels": (lambda v: 0 <= v <= 8, "between 0 and 8"),
    "rotate_degrees": (lambda v: 0 <= v <= 45, "between 0 and 45"),
    "adam_beta1": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "adam_beta2": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "one_cycle_pct_start": (lambda v: 0 < v < 1, "in (0, 1)"),
    "val_fold": (lambda v: 0 <= v < FOLDS, f"between 0 and {FOLDS - 1}"),
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


def setting_value(key: str, value: Any, where: str, path: Path) -> Any:
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
        raise SweepError(
            f"study file {path}: {where} = {value} must be at least {FIRST_TEST_IMAGES} "
            "(the tutorial's figure needs them)"
        )
    return float(value) if expected is float else value


def settings(table: Any, where: str, path: Path) -> dict[str, Any]:
    """Check a table of TrainConfig settings: known names, right types, sizes above zero."""
    if not isinstance(table, dict):
        raise SweepError(f"study file {path}: [{where}] must be a table")
    types = TrainConfig.field_types()
    for key in table:
        if key not in types:
            raise SweepError(f"study file {path}: unknown setting '{key}' in [{where}] (known: {', '.join(types)})")
    return {key: setting_value(key, value, f"{where}.{key}", path) for key, value in table.items()}


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
                raise SweepError(f'{where}: choices[{k}] = "{NONE}", but {name} cannot be unset')
            values.append(None)
        else:
            values.append(setting_value(name, choice, f"search.{name}.choices[{k}]", path))
    if len(set(values)) < len(values):
        raise SweepError(f"{where}: choices repeat a value")
    return Param(name, "categorical", choices=tuple(values))


def searched_param(name: str, table: Any, path: Path) -> Param:
    where = f"study file {path}: search.{name}"
    if not isinstance(table, dict):
        raise SweepError(f'{where} must be a table with type, low, high (or type = "categorical", choices)')
    unknown = set(table) - PARAM_KEYS
    if unknown:
        raise SweepError(f"{where}: unknown key '{sorted(unknown)[0]}' (known: {', '.join(sorted(PARAM_KEYS))})")
    kind, expected = table.get("type"), TrainConfig.field_types()[name]
    if kind == "categorical":
        return _choices(name, table, where, path)
    if expected not in (int, float):
        raise SweepError(
            f'{where}: {name} is {expected.__name__}: search it with type = "categorical", choices = [...]'
        )
    missing = {"type", "low", "high"} - set(table)
    if missing:
        raise SweepError(f"{where}: missing '{sorted(missing)[0]}'")
    if "choices" in table:
        raise SweepError(f'{where}: choices go with type = "categorical"')
    if kind not in ("int", "float") or (kind == "float") != (expected is float):
        raise SweepError(
            f"{where}: type = {kind!r}, but {name} is {expected.__name__}: "
            f'use type = "{expected.__name__}" or "categorical"'
        )
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


def outside(param: Param, value: Any) -> str | None:
    """What is wrong with a value for a searched setting, if anything."""
    if param.contains(value):
        return None
    if param.type == "categorical":
        return f"{param.name} = {NONE if value is None else value} is not one of its choices"
    return f"{param.name} = {value} lies outside its range [{param.low}, {param.high}]"
