"""The validated spec: one frozen dataclass per section, and its mapping (``spec_to_dict``).

``paretrain.planner.inputs.spec_parse`` builds a ``Spec`` from the spec file (YAML) or any
spec mapping; ``spec_to_dict`` writes it back as the validated mapping a plan file holds, which
parses again into an equal ``Spec``. ``digest`` is the SHA-256 of that mapping's canonical JSON.

>>> from paretrain.planner.inputs.spec_parse import parse_spec_text
>>> spec = parse_spec_text("name: x\\nworkload: {name: mnist1d}\\ntarget: {goal: 0.8, max_samples: 1000}\\n"
...                        "budget: {total_usd: 1}\\ndeadline_s: 60\\nconfigs: [{id: a, family: mlp}]")
>>> spec.budget.train_usd
0.6
>>> spec_to_dict(spec)["budget"]["envelopes"]["train"]
0.6
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from paretrain.planner.inputs.metric import Metric
from paretrain.planner.inputs.space import Config
from paretrain.planner.inputs.spec_fields import (
    DEFAULT_CPU_PRICE,
    DEFAULT_GPU_PRICE,
    SPEC_FIELDS,
    SPEC_SCHEMA,
)

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
    "spec_to_dict",
]


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

    def __post_init__(self) -> None:
        # a ``python:`` name carries its module and factory, as the spec parser fills them in
        if self.name.startswith("python:"):
            object.__setattr__(self, "python", self.name[len("python:") :])

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
    level: float  # the target metric's value these hold at


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
    fidelity: str = "asha"  # "asha" | "median" (paretrain.planner.search.rungs)


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
    convergence: str = "full"  # "full" | "truncated" (paretrain.planner.measure.budgeted)
    profile_fraction: float = 0.1
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
    on_divergence: str = "retry"  # "retry" once at half the learning rate, or "stop"
    max_memory_mb: float | None = None  # a CPU step's estimated peak above it halves the batch


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

    @property
    def experiment(self) -> str:
        return self.tracking.experiment or self.name

    @property
    def digest(self) -> str:
        """Identifies the spec's content (not its comments, layout or defaults left out)."""
        canonical = json.dumps(spec_to_dict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    @property
    def data(self) -> dict[str, Any]:
        """The validated mapping (``spec_to_dict``)."""
        return spec_to_dict(self)


def spec_to_dict(spec: Spec) -> dict[str, Any]:
    """The validated mapping of ``spec``, every default written out and every envelope
    resolved: ``parse_spec`` turns it back into an equal ``Spec`` (its ``path`` aside).
    Tuples become lists, so that it equals its own JSON read back."""
    b, h = spec.budget, spec.hardware
    return {
        "schema": SPEC_SCHEMA,
        "name": spec.name,
        "workload": _section(spec.workload),
        "configs": [c.to_dict() for c in spec.configs],
        "target": _section(spec.target),
        "budget": {
            "total_usd": b.total_usd,
            "envelopes": {"profile": b.profile_usd, "search": b.search_usd, "train": b.train_usd},
            "approval_above_usd": b.approval_above_usd,
            "project_ceiling_usd": b.project_ceiling_usd,
            "period": b.period,
        },
        "deadline_s": spec.deadline_s,
        "hardware": {
            "local": h.local,
            "catalog": h.catalog,
            "allow": list(h.allow),
            "prices": {"cpu_vcpu_usd_per_h": h.cpu_vcpu_usd_per_h, "gpu_usd_per_h": h.gpu_usd_per_h},
            "spot": h.spot,
        },
        "profiles": list(spec.profiles),
        "convergence": None
        if spec.convergence is None
        else {k: _section(hint) for k, hint in spec.convergence.items()},
        "search": _section(spec.search),
        "planner": _section(spec.planner),
        "runtime": _section(spec.runtime),
        "tracking": _section(spec.tracking),
    }


def _section(obj: Any) -> dict[str, Any]:
    return {f.name: _plain(getattr(obj, f.name)) for f in fields(obj)}


def _plain(value: Any) -> Any:
    """A copy of ``value`` in JSON's shapes: mappings as dicts, tuples and lists as lists."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
