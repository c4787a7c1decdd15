"""The spec file (YAML) -> frozen dataclasses, every field validated.

The rules live in one table (``paretrain.planner.inputs.spec_fields.SPEC_FIELDS``) that also renders the spec's
JSON Schema (``paretrain spec-schema``). Cross-field rules live in the dataclasses' ``__post_init__``.

>>> spec = parse_spec_text("name: x\\nworkload: {name: mnist1d}\\ntarget: {goal: 0.8, max_samples: 1000}\\n"
...                        "budget: {total_usd: 1}\\ndeadline_s: 60\\nconfigs: [{id: a, family: mlp}]")
>>> spec.budget.train_usd
0.6
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from paretrain.planner.errors import InputError, SpecError
from paretrain.planner.inputs.metric import Metric
from paretrain.planner.inputs.schema import Field, check, to_json_schema
from paretrain.planner.inputs.space import OPTIMIZERS, Config, WorkloadInfo
from paretrain.planner.inputs.spec_fields import (
    DEFAULT_CPU_PRICE,
    DEFAULT_GPU_PRICE,
    SPEC_FIELDS,
    SPEC_SCHEMA,
)
from paretrain.planner.inputs.spec_workload import check_workload_name, workload_section

__all__ = [
    "DEFAULT_CPU_PRICE",
    "DEFAULT_GPU_PRICE",
    "SPEC_FIELDS",
    "SPEC_SCHEMA",
    "BudgetSpec",
    "ConvergenceHint",
    "HardwareSpec",
    "PlannerSpec",
    "RuntimeSpec",
    "SearchSpec",
    "Spec",
    "TargetSpec",
    "TrackingSpec",
    "WorkloadSpec",
    "parse_spec",
    "parse_spec_text",
    "spec_json_schema",
]

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
_OFFER = re.compile(r"^[a-z0-9_-]+/[A-Za-z0-9_.:-]+$")
_OFFER_PATTERN = re.compile(r"^[A-Za-z0-9_.:/*?\[\]!-]*[*?\[][A-Za-z0-9_.:/*?\[\]!-]*$")  # fnmatch-style


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    """The workload: ``name`` is a built-in's (``mnist1d``), or ``python:pkg.module:factory`` /
    ``file:/abs/path.py:factory`` for a user's, whose factory gets ``args`` as keywords."""

    name: str
    samples: int = 10000
    val_fraction: float = 0.1
    seed: int = 0
    python: str | None = None
    file: str | None = None
    factory: str = "make_workload"
    args: Mapping[str, Any] = field(default_factory=dict)

    @property
    def builtin(self) -> bool:
        return not self.name.startswith(("python:", "file:"))


@dataclass(frozen=True, slots=True)
class TargetSpec:
    """The metric to reach and its levels: at or above ``goal`` for a metric to maximize, at or
    below it for one to minimize; ``levels`` are sorted from the easiest (the goal) on."""

    goal: float
    max_samples: int
    levels: tuple[float, ...] = ()
    metric: str = "val_accuracy"
    direction: str = "maximize"

    def __post_init__(self) -> None:
        m = Metric(self.metric, self.direction)
        levels = tuple(sorted(set(self.levels) | {self.goal}, key=m.score))
        worse = [lv for lv in levels if m.better(self.goal, lv)]
        if worse:
            side = ">=" if m.maximize else "<="
            raise ValueError(
                f"target.levels must all be {side} target.goal ({self.goal}) for a metric to "
                f"{self.direction}; got {worse[0]}"
            )
        object.__setattr__(self, "levels", levels)

    @property
    def metric_obj(self) -> Metric:
        return Metric(self.metric, self.direction)


@dataclass(frozen=True, slots=True)
class BudgetSpec:
    total_usd: float
    profile_usd: float
    search_usd: float
    train_usd: float
    approval_above_usd: float | None = None
    project_ceiling_usd: float | None = None
    period: str = "month"

    def __post_init__(self) -> None:
        parts = self.profile_usd + self.search_usd + self.train_usd
        if parts > self.total_usd * (1 + 1e-12) + 1e-15:
            raise ValueError(f"the envelopes sum to {parts:g} USD, more than total_usd {self.total_usd:g}")

    def envelope(self, stage: str) -> float:
        return {"profile": self.profile_usd, "search": self.search_usd, "train": self.train_usd}[stage]


@dataclass(frozen=True, slots=True)
class HardwareSpec:
    allow: tuple[str, ...]
    local: str = "auto"
    catalog: str = "none"
    cpu_vcpu_usd_per_h: float = DEFAULT_CPU_PRICE
    gpu_usd_per_h: float = DEFAULT_GPU_PRICE
    spot: bool = False

    def allows(self, offer_id: str) -> bool:
        """Whether ``allow`` names ``offer_id`` or has an fnmatch pattern that matches it."""
        return any(
            fnmatch.fnmatchcase(offer_id, a) if any(c in a for c in "*?[") else offer_id == a
            for a in self.allow
        )


@dataclass(frozen=True, slots=True)
class ConvergenceHint:
    e_min: float
    b_noise: float
    accuracy: float


@dataclass(frozen=True, slots=True)
class SearchSpec:
    trials: int = 0
    sampler: str = "nsga2"
    storage: str = "sqlite:///paretrain-optuna.db"
    seed: int = 0
    space: Mapping[str, Any] = field(default_factory=dict)
    max_params: int | None = None
    max_memory_mb: float | None = None
    max_latency_ms: float | None = None
    trial_samples: int | None = None
    study: str | None = None
    front: int = 3


@dataclass(frozen=True, slots=True)
class PlannerSpec:
    stages: int = 3
    batch_sizes: tuple[int, ...] = (16, 32, 64, 128, 256)
    precisions: tuple[str, ...] = ("fp32",)
    max_workers: int = 1
    min_workers: int = 1
    solver: str = "highs"
    pareto_points: int | None = None
    time_limit_s: float = 60.0
    convergence_batch_sizes: tuple[int, ...] = (16, 64, 256)
    profile_steps: int = 50
    noise: bool = True
    confidence: float = 0.9
    exact_front: bool = False


@dataclass(frozen=True, slots=True)
class RuntimeSpec:
    loader_workers: int = 0
    drift_threshold: float = 6.0
    window: int = 10
    cooldown_s: float = 10.0
    checkpoint_every_s: float = 30.0
    keep_checkpoints: int = 3
    eval_every_samples: int = 2000
    prefer: str = "cost"
    events: tuple[Mapping[str, Any], ...] = ()
    emulate_on: str | None = None
    adapt: bool = True
    pause_threshold: float = 0.5
    rollback_threshold: float = 0.1


@dataclass(frozen=True, slots=True)
class TrackingSpec:
    uri: str | None = None
    experiment: str | None = None


@dataclass(frozen=True, slots=True)
class Spec:
    """A validated spec. ``digest`` identifies its content (not its comments or layout)."""

    path: str
    name: str
    workload: WorkloadSpec
    configs: tuple[Config, ...]
    target: TargetSpec
    budget: BudgetSpec
    deadline_s: float
    hardware: HardwareSpec
    profiles: tuple[str, ...] = ()
    convergence: Mapping[str, ConvergenceHint] | None = None
    search: SearchSpec = SearchSpec()
    planner: PlannerSpec = PlannerSpec()
    runtime: RuntimeSpec = RuntimeSpec()
    tracking: TrackingSpec = TrackingSpec()
    digest: str = ""
    data: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def experiment(self) -> str:
        return self.tracking.experiment or self.name


def spec_json_schema() -> dict[str, Any]:
    """The spec's JSON Schema, rendered from the same table that validates it."""
    return to_json_schema(SPEC_FIELDS, title="paretrain spec")


def parse_spec_text(
    text: str, where: str = "<spec>", workloads: Mapping[str, WorkloadInfo] | None = None
) -> Spec:
    """Parse and validate a spec's YAML text; raise ``InputError``/``SpecError`` on bad input."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise InputError(
            f"{where}: the spec is not valid YAML{at}: {problem}. To fix: correct the YAML syntax there"
        ) from None
    return parse_spec(data, where, workloads)


def parse_spec(data: Any, where: str = "<spec>", workloads: Mapping[str, WorkloadInfo] | None = None) -> Spec:
    """Validate a parsed spec mapping into a ``Spec``."""
    if data is None:
        raise SpecError(
            where,
            "(top level)",
            "must be a mapping of keys to values",
            "an empty file",
            "start from 'paretrain init'",
        )
    v = check(data, SPEC_FIELDS, where, "")
    w = v["workload"] = workload_section(v["workload"], where)
    check_workload_name(w["name"], where, workloads)
    info = workloads.get(w["name"]) if workloads else None
    configs = tuple(_parse_config(c, i, where, info) for i, c in enumerate(v["configs"]))
    _unique([c.id for c in configs], where, "configs", "id")
    if not configs and v["search"]["trials"] == 0 and not v["convergence"]:
        raise SpecError(
            where,
            "configs",
            "must not be empty when search.trials is 0",
            [],
            "list at least one model configuration, or set search.trials > 0",
        )
    t = v["target"]
    target = _target(t, info, where)
    # the metric and direction resolved from the workload's declaration travel with the spec
    # (in a plan file), so that it reads the same wherever it is validated again
    v["target"] = t = {**t, "metric": target.metric, "direction": target.direction}
    b, env = v["budget"], v["budget"]["envelopes"]
    budget = _budget(b, env, where)
    h = v["hardware"]
    for i, offer in enumerate(h["allow"]):
        if not (_OFFER.match(offer) or _OFFER_PATTERN.match(offer)):
            raise SpecError(
                where,
                f"hardware.allow[{i}]",
                "must look like provider/name or be a pattern",
                offer,
                "use e.g. local/cpu-1, local/cuda:0, aws/g5.xlarge, or a pattern: aws/*, lambda/*, *:spot, *",
            )
    _unique(h["allow"], where, "hardware", "allow")
    hardware = HardwareSpec(
        allow=tuple(h["allow"]),
        local=h["local"],
        catalog=h["catalog"],
        cpu_vcpu_usd_per_h=h["prices"]["cpu_vcpu_usd_per_h"],
        gpu_usd_per_h=h["prices"]["gpu_usd_per_h"],
        spot=h["spot"],
    )
    if hardware.local == "none" and all(a.startswith("local/") for a in hardware.allow):
        raise SpecError(
            where,
            "hardware.local",
            "excludes every allowed offer",
            "none",
            "set hardware.local: auto or allow catalog offers",
        )
    conv = None
    if v["convergence"]:
        conv = {k: ConvergenceHint(**c) for k, c in v["convergence"].items()}
    p = v["planner"]
    if p["stages"] > 1 and p["stages"] > t["max_samples"]:
        raise SpecError(
            where, "planner.stages", "must not exceed target.max_samples", p["stages"], "use fewer stages"
        )
    if p["min_workers"] > p["max_workers"]:
        raise SpecError(
            where,
            "planner.min_workers",
            "must not exceed planner.max_workers",
            p["min_workers"],
            f"set it to at most {p['max_workers']}, or raise planner.max_workers",
        )
    if len(p["convergence_batch_sizes"]) < 3:
        raise SpecError(
            where,
            "planner.convergence_batch_sizes",
            "needs at least 3 batch sizes to fit E(B) = E_min (1 + B / B_noise)",
            p["convergence_batch_sizes"],
            "list 3 or more batch sizes, e.g. [16, 64, 256]",
        )
    planner = PlannerSpec(
        **{
            **p,
            "batch_sizes": tuple(sorted(set(p["batch_sizes"]))),
            "precisions": tuple(dict.fromkeys(p["precisions"])),
            "convergence_batch_sizes": tuple(sorted(set(p["convergence_batch_sizes"]))),
        }
    )
    s = v["search"]
    search = SearchSpec(**s)
    canonical = json.dumps(v, sort_keys=True, separators=(",", ":"))
    return Spec(
        path=where,
        name=v["name"],
        workload=WorkloadSpec(**{**w, "args": dict(w["args"])}),
        configs=configs,
        target=target,
        budget=budget,
        deadline_s=v["deadline_s"],
        hardware=hardware,
        profiles=tuple(v["profiles"]),
        convergence=conv,
        search=search,
        planner=planner,
        runtime=RuntimeSpec(**{**v["runtime"], "events": tuple(v["runtime"]["events"])}),
        tracking=TrackingSpec(**v["tracking"]),
        digest=hashlib.sha256(canonical.encode()).hexdigest(),
        data=v,
    )


def _budget(b: Mapping[str, Any], env: Mapping[str, Any], where: str) -> BudgetSpec:
    total = b["total_usd"]
    given = {k: env[k] for k in ("profile", "search", "train") if env[k] is not None}
    rest = total - sum(given.values())
    if rest < -1e-12:
        raise SpecError(
            where,
            "budget.envelopes",
            f"must sum to at most total_usd ({total:g})",
            sum(given.values()),
            "lower the envelopes or raise budget.total_usd",
        )
    # Unset envelopes share what is left: profiling and search get a fifth each, training the rest.
    missing = [k for k in ("profile", "search", "train") if k not in given]
    shares = {"profile": 0.2, "search": 0.2, "train": 0.6}
    weight = sum(shares[k] for k in missing)
    for k in missing:
        given[k] = max(rest, 0.0) * shares[k] / weight
    return BudgetSpec(
        total_usd=total,
        profile_usd=given["profile"],
        search_usd=given["search"],
        train_usd=given["train"],
        approval_above_usd=b["approval_above_usd"],
        project_ceiling_usd=b["project_ceiling_usd"],
        period=b["period"],
    )


def _target(t: Mapping[str, Any], info: WorkloadInfo | None, where: str) -> TargetSpec:
    """The target metric (the workload's own by default), its direction and levels."""
    metric = t["metric"] or (info.target if info is not None else "val_accuracy")
    declared = info.direction(metric) if info is not None else None
    if info is not None and declared is None:
        raise SpecError(
            where,
            "target.metric",
            "is not a metric this workload reports",
            metric,
            f"use one of: {', '.join(m for m, _ in info.metrics)}",
        )
    direction = t["direction"] or declared or "maximize"
    if declared is not None and direction != declared:
        raise SpecError(
            where,
            "target.direction",
            f"must match the workload's declaration for {metric}",
            direction,
            f"use {declared}, or leave target.direction out",
        )
    if "accuracy" in metric:
        for name, value in [("goal", t["goal"])] + [(f"levels[{i}]", x) for i, x in enumerate(t["levels"])]:
            if not 0 < value <= 1:
                raise SpecError(
                    where,
                    f"target.{name}",
                    "must be an accuracy in (0, 1]",
                    value,
                    "give a validation accuracy such as 0.8",
                )
    for name, value in [("goal", t["goal"])] + [(f"levels[{i}]", x) for i, x in enumerate(t["levels"])]:
        if not math.isfinite(value):
            raise SpecError(where, f"target.{name}", "must be a finite number", value, "give a number")
    try:
        return TargetSpec(
            goal=t["goal"],
            max_samples=t["max_samples"],
            levels=tuple(t["levels"]),
            metric=metric,
            direction=direction,
        )
    except ValueError as err:
        side = ">=" if direction == "maximize" else "<="
        raise SpecError(
            where, "target.levels", f"must all be {side} target.goal", t["levels"], str(err)
        ) from None


def _parse_config(raw: Mapping[str, Any], i: int, where: str, info: WorkloadInfo | None) -> Config:
    path = f"configs[{i}]"
    cid = raw.get("id")
    if not isinstance(cid, str) or not _ID.match(cid):
        raise SpecError(
            where,
            f"{path}.id",
            "must be a name of letters, digits, '-', '_', '.' or ':'",
            cid,
            "give each config an id such as mlp-256x2",
        )
    family = raw.get("family")
    if not isinstance(family, str):
        raise SpecError(
            where,
            f"{path}.family",
            "must be a model family name",
            family,
            f"use one of: {', '.join(info.family_names) if info else 'mlp, cnn, gru'}",
        )
    fixed = {"id", "family", "optimizer", "lr", "weight_decay", "base_batch"}
    params = {k: v for k, v in raw.items() if k not in fixed}
    if info is not None:
        if family not in info.family_names:
            raise SpecError(
                where,
                f"{path}.family",
                "is not a family of this workload",
                family,
                f"use one of: {', '.join(info.family_names)}",
            )
        fam = info.family(family)
        for key, value in params.items():
            if key not in fam.names:
                raise SpecError(
                    where,
                    f"{path}.{key}",
                    f"is not a parameter of family {family}",
                    key,
                    f"use only: {', '.join(fam.names + tuple(sorted(fixed - {'id', 'family'})))}",
                )
            if not fam.param(key).admits(value):
                raise SpecError(
                    where,
                    f"{path}.{key}",
                    f"must be {fam.param(key).describe()}",
                    value,
                    "choose a value in that range",
                )
        params = {p.name: params.get(p.name, p.default) for p in fam.params}
    opt = raw.get("optimizer", "adam")
    if opt not in OPTIMIZERS:
        raise SpecError(
            where, f"{path}.optimizer", f"must be one of {', '.join(OPTIMIZERS)}", opt, "choose adam or sgd"
        )
    lr = check(raw.get("lr", 1e-3), Field("number", minimum=0, exclusive_minimum=True), where, f"{path}.lr")
    wd = check(raw.get("weight_decay", 0.0), Field("number", minimum=0), where, f"{path}.weight_decay")
    bb = check(raw.get("base_batch", 32), Field("int", minimum=1), where, f"{path}.base_batch")
    return Config(
        id=cid,
        family=family,
        params=tuple(params.items()),
        optimizer=opt,
        lr=lr,
        weight_decay=wd,
        base_batch=bb,
    )


def _unique(values: list[str] | tuple[str, ...], where: str, path: str, key: str) -> None:
    seen: set[str] = set()
    for i, value in enumerate(values):
        if value in seen:
            raise SpecError(
                where,
                f"{path}[{i}].{key}" if key != "allow" else f"{path}.allow[{i}]",
                "must be unique",
                value,
                "remove or rename the duplicate",
            )
        seen.add(value)
