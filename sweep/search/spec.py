"""Study specs: the search space as data (`studies/*.toml`), validated before anything is written.

A spec names what its trials share (`[fixed]`), what Optuna searches (`[search.<name>]`: any
TrainConfig setting, by a range or a list of choices), trial 0 (`[baseline]`), trials to run
next (`[[enqueue]]`, and `[warm_start]`: the best trials of another study), the sampler and the
pruner. Whatever a spec leaves out is the tutorial's recipe (`TrainConfig` defaults), so the
tutorial is written down once, in `sweep/training/config.py`. What one searched setting may be
is `sweep.search.space`'s business.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import asdict, dataclass, replace
from itertools import takewhile
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import tomli_w

from sweep.errors import SweepError
from sweep.search.extend import merged
from sweep.search.space import Param, outside, searched_param, settings
from sweep.training.config import TrainConfig

SAMPLERS = {  # type -> (class, the settings a spec may give besides seed)
    "tpe": (optuna.samplers.TPESampler, {"n_startup_trials": int, "multivariate": bool}),
    "random": (optuna.samplers.RandomSampler, {}),
}
PRUNERS = {  # type -> (class, the settings a spec may give)
    "median": (optuna.pruners.MedianPruner, {"n_startup_trials", "n_warmup_steps", "interval_steps"}),
    "hyperband": (optuna.pruners.HyperbandPruner, {"min_resource", "max_resource", "reduction_factor"}),
    "none": (optuna.pruners.NopPruner, set()),
}
STUDIES = Path(__file__).parent.parent / "studies"  # the tool's own study files (the repository's studies/ links here)
DEFAULT_STUDY = "tutorial"  # studies/tutorial.toml: its baseline is the tutorial's recipe
TABLES = {"extends", "name", "description", "fixed", "baseline", "enqueue", "warm_start", "search", "sampler", "pruner"}
BUDGETS = ("train_steps", "epochs")  # searched, trials differ in length


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

    def settings(self) -> dict[str, str]:
        """What the study file sets, for the record: its sampler, its fixed settings, its ranges."""
        fixed = {f"fixed.{k}": str(v) for k, v in asdict(self.fixed).items() if k not in self.search}
        return {
            "sampler": self.sampler,
            "sampler_seed": str(self.sampler_seed),
            **fixed,
            **{f"search.{p.name}": str(p) for p in self.search.values()},
        }


def _point(table: Any, where: str, fixed: TrainConfig, search: dict[str, Param], path: Path) -> TrainConfig:
    """A trial given in the spec (the baseline, or one to enqueue): searched values only, in range."""
    values = settings(table, where, path)
    not_searched = set(values) - set(search)
    if not_searched:
        raise SweepError(f"study file {path}: {where}.{sorted(not_searched)[0]} is not searched; set it in [fixed]")
    config = replace(fixed, **values)
    for param in search.values():
        if (problem := outside(param, getattr(config, param.name))) is not None:
            raise SweepError(f"study file {path}: {where} {problem}")
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


def with_sampler_seed(source: str, seed: int) -> str:
    """The spec's text with its sampler seed set to `seed`, all else as it was (its leading
    comments too): the same search, another draw of it."""
    raw = tomllib.loads(source)
    raw.setdefault("sampler", {})["seed"] = seed
    return _comments(source) + tomli_w.dumps(raw)


def _comments(source: str) -> str:
    """A study file's leading comments: what it is for and the commands that run it."""
    header = takewhile(lambda line: line.startswith("#") or not line.strip(), source.splitlines())
    return "".join(line + "\n" for line in header if line.strip())


def _toml(source: str, path: str | Path) -> dict[str, Any]:
    if not source.strip():
        raise SweepError(f"study file {path}: is empty")
    try:
        return tomllib.loads(source)
    except tomllib.TOMLDecodeError as e:
        raise SweepError(f"study file {path}: not valid TOML ({e})") from None


def _extended(raw: dict[str, Any], path: str | Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A file's tables on top of those of the file it extends (found beside it, or among the
    tool's own), and so on up; see `sweep.search.extend` for the rules."""
    base_name = raw.pop("extends")
    if not isinstance(base_name, str) or not base_name.strip():
        raise SweepError(f'study file {path}: extends = "NAME" names another study file')
    if not isinstance(raw.get("name"), str):
        raise SweepError(f'study file {path}: extends {base_name}, so it needs a name = "..." of its own')
    seen = (*seen, Path(path).resolve())
    base_path = find_spec(Path(path).parent / f"{base_name.strip()}.toml")
    if base_path.resolve() in seen:
        raise SweepError(f"study file {path}: extends {base_name}, which extends it back")
    try:
        base = _toml(base_path.read_text(), base_path)
    except OSError:
        raise SweepError(f"study file {path}: extends {base_name}, but {base_path} cannot be read") from None
    if "extends" in base:
        base = _extended(base, base_path, seen)
    return merged(base, raw)


def parse_spec(source: str, path: str | Path) -> Spec:
    """A spec from its TOML text; `path` names it in errors (a file, or where the text was kept).
    A file that extends another is kept as the two merged, its own comments first: the study's
    record stands on its own when the other file changes later."""
    raw = _toml(source, path)
    if "extends" in raw:
        base_name = raw["extends"]
        raw = _extended(raw, path)
        merged_text = tomli_w.dumps({"name": raw["name"], **raw})  # its name first, as written
        source = f"{_comments(source)}# {Path(path).name} extends {base_name}; merged:\n{merged_text}"
    unknown = set(raw) - TABLES
    if unknown:
        raise SweepError(f"study file {path}: unknown key '{sorted(unknown)[0]}' (known: {', '.join(sorted(TABLES))})")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise SweepError(f'study file {path}: needs name = "..." (the Optuna study and MLflow experiment name)')
    search_table = raw.get("search", {})
    if not isinstance(search_table, dict) or not search_table:
        raise SweepError(f"study file {path}: needs at least one [search.<name>] table")
    unknown = set(search_table) - set(TrainConfig.field_types())
    if unknown:
        raise SweepError(
            f"study file {path}: cannot search '{sorted(unknown)[0]}' (known: {', '.join(TrainConfig.field_types())})"
        )
    search = {name_: searched_param(name_, table, path) for name_, table in search_table.items()}

    fixed_table = settings(raw.get("fixed", {}), "fixed", path)
    both = set(fixed_table) & set(search)
    if both:
        raise SweepError(f"study file {path}: '{sorted(both)[0]}' is both fixed and searched; keep one")
    given = set(fixed_table) | set(search)
    by_steps = sorted({"train_steps", "eval_every"} & given)
    if "epochs" in given and by_steps:
        raise SweepError(
            f"study file {path}: epochs and {by_steps[0]} both set; trained by epochs, a trial's curve has a point "
            "per epoch"
        )
    if "eval_points" in given and "eval_every" in given:
        raise SweepError(f"study file {path}: eval_points and eval_every both set; keep one")
    searched_budget = sorted(set(BUDGETS) & set(search))
    if searched_budget and "eval_points" not in fixed_table:
        raise SweepError(
            f"study file {path}: searching {searched_budget[0]} needs eval_points in [fixed]: trials of "
            "different lengths are compared by the pruner at the same fractions of their schedules"
        )
    fixed = replace(TrainConfig(), **fixed_table)
    baseline = _point(raw.get("baseline", {}), "baseline", fixed, search, path)
    enqueue = raw.get("enqueue", [])
    if not isinstance(enqueue, list):
        raise SweepError(f"study file {path}: enqueue must be a list of tables ([[enqueue]])")
    enqueue = tuple(_point(table, f"enqueue[{i}]", fixed, search, path) for i, table in enumerate(enqueue))

    kind, seed, sampler_settings = _sampler(raw.get("sampler", {}), path)
    pruner_type, pruner_settings = _pruner(raw.get("pruner", {}), path)
    warm_start = _warm_start(raw.get("warm_start"), path)
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise SweepError(f"study file {path}: description must be a string")
    identity = hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return Spec(
        name.strip(),
        description.strip(),
        fixed,
        baseline,
        enqueue,
        search,
        kind,
        seed,
        sampler_settings,
        pruner_type,
        pruner_settings,
        warm_start,
        source,
        identity,
    )


def _sampler(sampler: Any, path: str | Path) -> tuple[str, int, dict[str, Any]]:
    """[sampler]: its type, seed and settings."""
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
            raise SweepError(
                f"study file {path}: sampler.{key} is not a {kind} sampler setting "
                f"(known: {', '.join(['type', 'seed', *sorted(known)])})"
            )
        if not isinstance(value, known[key]) or (known[key] is int and (isinstance(value, bool) or value < 0)):
            raise SweepError(
                f"study file {path}: sampler.{key} = {value!r} must be "
                f"{'true or false' if known[key] is bool else 'a whole number ≥ 0'}"
            )
    return kind, seed, sampler_settings


def _pruner(pruner: Any, path: str | Path) -> tuple[str, dict[str, int]]:
    """[pruner]: its type and settings."""
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
    return pruner_type, pruner_settings


def _warm_start(warm_start: Any, path: str | Path) -> tuple[str, int] | None:
    """[warm_start]: another study and how many of its best trials."""
    if warm_start is None:
        return None
    if not isinstance(warm_start, dict) or set(warm_start) != {"study", "top"}:
        raise SweepError(f'study file {path}: [warm_start] takes study = "NAME" and top = K')
    if not isinstance(warm_start["study"], str) or not warm_start["study"].strip():
        raise SweepError(f"study file {path}: warm_start.study must name a study")
    top = warm_start["top"]
    if not isinstance(top, int) or isinstance(top, bool) or top < 1:
        raise SweepError(f"study file {path}: warm_start.top = {top!r} must be a whole number ≥ 1")
    return warm_start["study"].strip(), top
