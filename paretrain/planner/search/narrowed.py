"""The search space: the workload's families and parameters, narrowed by the spec's ``search.space``.

The space is data: the workload declares its families and their parameters
(``paretrain.planner.inputs.space``), and ``search.space`` in the spec narrows or replaces any of
it. ``suggest_config`` draws one configuration of the space for an Optuna trial.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import optuna

from paretrain.planner.errors import SpecError
from paretrain.planner.inputs.space import OPTIMIZERS, Config, Family, Param, WorkloadInfo

__all__ = ["SearchSpace", "search_space", "suggest_config"]


@dataclass(frozen=True, slots=True)
class SearchSpace:
    families: tuple[Family, ...]
    optimizers: tuple[str, ...]
    lr: Param
    weight_decay: Param


def _param_from(raw: Any, base: Param, where: str, path: str) -> Param:
    if base.kind == "choice":
        if not isinstance(raw, list) or not raw or any(v not in base.choices for v in raw):
            raise SpecError(
                where,
                path,
                f"must be a non-empty list of {', '.join(map(str, base.choices))}",
                raw,
                "list the allowed values",
            )
        return Param(base.name, "choice", choices=tuple(raw), default=raw[0])
    if (
        not isinstance(raw, list)
        or len(raw) != 2
        or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in raw)
        or not raw[0] <= raw[1]
    ):
        raise SpecError(where, path, "must be [low, high] with low <= high", raw, "give two numbers")
    if base.log and raw[0] <= 0:
        raise SpecError(where, path, "is on a log scale: low must be > 0", raw, "give a positive low bound")
    return Param(
        base.name,
        base.kind,
        float(raw[0]),
        float(raw[1]),
        log=base.log,
        default=min(max(base.default, raw[0]), raw[1]) if base.default is not None else raw[0],
    )


def search_space(info: WorkloadInfo, narrow: Mapping[str, Any], where: str = "spec") -> SearchSpace:
    """The workload's space, narrowed by ``search.space``: ``families: [..]``, ``optimizer:
    [..]``, ``lr: [low, high]``, ``weight_decay: [low, high]``, and per family
    ``{param: [low, high]}`` (or a list of choices)."""
    allowed = {"families", "optimizer", "lr", "weight_decay", *info.family_names}
    for key in narrow:
        if key not in allowed:
            raise SpecError(
                where,
                f"search.space.{key}",
                "is not a known key",
                key,
                f"use one of: {', '.join(sorted(allowed))}",
            )
    families = _families(info, narrow, where)
    opts = narrow.get("optimizer", list(OPTIMIZERS))
    if not isinstance(opts, list) or not opts or any(o not in OPTIMIZERS for o in opts):
        raise SpecError(
            where,
            "search.space.optimizer",
            f"must list some of {', '.join(OPTIMIZERS)}",
            opts,
            "write e.g. [adam]",
        )
    lr = _param_from(narrow["lr"], info.lr, where, "search.space.lr") if "lr" in narrow else info.lr
    wd = (
        _param_from(narrow["weight_decay"], info.weight_decay, where, "search.space.weight_decay")
        if "weight_decay" in narrow
        else info.weight_decay
    )
    return SearchSpace(families, tuple(opts), lr, wd)


def _families(info: WorkloadInfo, narrow: Mapping[str, Any], where: str) -> tuple[Family, ...]:
    """The families ``search.space.families`` keeps (all by default), each narrowed."""
    names = narrow.get("families", list(info.family_names))
    if not isinstance(names, list) or not names or any(n not in info.family_names for n in names):
        raise SpecError(
            where,
            "search.space.families",
            f"must list families of {info.name}",
            names,
            f"use some of: {', '.join(info.family_names)}",
        )
    return tuple(_family(info.family(name), narrow.get(name, {}) or {}, where) for name in names)


def _family(fam: Family, sub: Any, where: str) -> Family:
    """``fam`` with the parameters ``search.space.<family>`` narrows."""
    name = fam.name
    if not isinstance(sub, dict):
        raise SpecError(
            where,
            f"search.space.{name}",
            "must map parameters to ranges",
            sub,
            "write e.g. {width: [32, 256]}",
        )
    params = tuple(
        _param_from(sub[p.name], p, where, f"search.space.{name}.{p.name}") if p.name in sub else p
        for p in fam.params
    )
    for key in sub:
        if key not in fam.names:
            raise SpecError(
                where,
                f"search.space.{name}.{key}",
                f"is not a parameter of {name}",
                key,
                f"use: {', '.join(fam.names)}",
            )
    return Family(name, params)


def _suggest(trial: optuna.Trial, name: str, p: Param) -> Any:
    if p.kind == "choice":
        return trial.suggest_categorical(name, list(p.choices))
    if p.kind == "int":
        return trial.suggest_int(name, int(p.low), int(p.high), log=p.log)
    return trial.suggest_float(name, p.low, p.high, log=p.log)


def suggest_config(trial: optuna.Trial, space: SearchSpace) -> Config:
    """One configuration from the space; family parameters are named ``family.param``."""
    family = trial.suggest_categorical("family", [f.name for f in space.families])
    fam = next(f for f in space.families if f.name == family)
    params = tuple((p.name, _suggest(trial, f"{family}.{p.name}", p)) for p in fam.params)
    optimizer = trial.suggest_categorical("optimizer", list(space.optimizers))
    lr = _suggest(trial, "lr", space.lr)
    wd = _suggest(trial, "weight_decay", space.weight_decay)
    return Config(
        id=f"s{trial.number}-{family}",
        family=family,
        params=params,
        optimizer=optimizer,
        lr=float(lr),
        weight_decay=float(wd),
    )
