"""A study file that extends another (`extends = "recipe"`): the other's tables with its own on top.

One space studied at several budgets is then one file plus a few lines per budget, not copies
that drift apart. The rules, table by table:
- `name` is the file's own (two studies never share one); `description` is inherited unless given;
- `[fixed]`, `[baseline]`, `[sampler]`: setting by setting, the file's own win;
- `[search.<name>]`: dimension by dimension, the file's own win;
- `[pruner]`, `[warm_start]`, `[[enqueue]]`: the file's own replace the other's whole;
- a setting the file fixes is no longer searched, nor given in the other's baseline or enqueued
  points (fixing `epochs` studies the other's space at one budget); one it searches is no longer fixed.
"""

from __future__ import annotations

from typing import Any

BY_SETTING = ("fixed", "baseline", "sampler", "search")  # merged key by key; the rest are replaced whole


def merged(base: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    """`own` (a parsed study file, without its `extends`) on top of `base` (the one it extends).
    Tables of the wrong type are left for the spec's own checks to name."""
    spec = {key: value for key, value in base.items() if key not in ("name", "extends")}
    for key, value in own.items():
        inherited = spec.get(key)
        both_tables = isinstance(value, dict) and isinstance(inherited, dict)
        spec[key] = {**inherited, **value} if key in BY_SETTING and both_tables else value

    fixed_here, searched_here = _table(own, "fixed"), _table(own, "search")
    if isinstance(spec.get("search"), dict):
        spec["search"] = {k: v for k, v in spec["search"].items() if k not in fixed_here or k in searched_here}
    if isinstance(spec.get("fixed"), dict):
        spec["fixed"] = {k: v for k, v in spec["fixed"].items() if k not in searched_here or k in fixed_here}
    if isinstance(spec.get("baseline"), dict):
        spec["baseline"] = {k: v for k, v in spec["baseline"].items() if k not in fixed_here}
    if isinstance(spec.get("enqueue"), list) and "enqueue" not in own:
        spec["enqueue"] = [
            {k: v for k, v in point.items() if k not in fixed_here} if isinstance(point, dict) else point
            for point in spec["enqueue"]
        ]
    return spec


def _table(raw: dict[str, Any], key: str) -> set[str]:
    value = raw.get(key, {})
    return set(value) if isinstance(value, dict) else set()
