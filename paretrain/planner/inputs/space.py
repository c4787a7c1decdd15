"""Model configurations and the search space a workload declares, as plain data.

A workload (``paretrain.runtime.train.workloads``) declares its model families and their parameters here as
data; the spec validates configurations against it and the search samples from it.

>>> cfg = Config("mlp-64x2", "mlp", (("depth", 2), ("width", 64)))
>>> cfg.param("width")
64
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["OPTIMIZERS", "Config", "Family", "Param", "WorkloadInfo"]

OPTIMIZERS = ("adam", "sgd")


@dataclass(frozen=True, slots=True)
class Param:
    """One tunable parameter of a model family: an int or float range, or a choice."""

    name: str
    kind: str  # "int" | "float" | "choice"
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    choices: tuple[Any, ...] = ()
    default: Any = None

    def __post_init__(self) -> None:
        if self.kind not in ("int", "float", "choice"):
            raise ValueError(f"`kind` must be int, float or choice, but got {self.kind!r}")
        if self.kind == "choice" and not self.choices:
            raise ValueError(f"choice parameter {self.name!r} needs choices")
        if self.kind != "choice" and not self.low <= self.high:
            raise ValueError(f"`low <= high` must hold, but got (low={self.low}, high={self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log-scale parameter needs low > 0, but got low={self.low}")

    def admits(self, value: Any) -> bool:
        """Whether ``value`` lies in this parameter's range."""
        if self.kind == "choice":
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.kind == "int" and not float(value).is_integer():
            return False
        return math.isfinite(value) and self.low <= value <= self.high

    def describe(self) -> str:
        if self.kind == "choice":
            return "one of " + ", ".join(map(str, self.choices))
        return f"{'an integer' if self.kind == 'int' else 'a number'} in [{self.low:g}, {self.high:g}]"


@dataclass(frozen=True, slots=True)
class Family:
    """A model family (mlp, cnn, gru) and its architecture parameters."""

    name: str
    params: tuple[Param, ...]

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)


@dataclass(frozen=True, slots=True)
class WorkloadInfo:
    """What a workload offers the planner: its families and training hyperparameters."""

    name: str
    families: tuple[Family, ...]
    description: str = ""
    input_shape: tuple[int, ...] = ()
    classes: int = 0
    lr: Param = Param("lr", "float", 1e-4, 3e-2, log=True, default=1e-3)
    weight_decay: Param = Param("weight_decay", "float", 0.0, 1e-2, default=0.0)
    #: the metrics ``evaluate`` returns, each with its direction ("maximize" | "minimize")
    metrics: tuple[tuple[str, str], ...] = (("val_loss", "minimize"), ("val_accuracy", "maximize"))
    #: the metric a spec targets when it names none
    target: str = "val_accuracy"

    def __post_init__(self) -> None:
        names = [m for m, _ in self.metrics]
        for name, direction in self.metrics:
            if direction not in ("maximize", "minimize"):
                raise ValueError(
                    f"workload {self.name}: metric {name} direction must be maximize or "
                    f"minimize, but got {direction!r}"
                )
        if self.target not in names:
            raise ValueError(
                f"workload {self.name}: `target` must be one of its metrics {names}, but got {self.target!r}"
            )
        if not self.families:
            raise ValueError(f"workload {self.name}: `families` must not be empty")

    def direction(self, metric: str) -> str | None:
        """The declared direction of ``metric``; None when the workload does not report it."""
        return dict(self.metrics).get(metric)

    def family(self, name: str) -> Family:
        for f in self.families:
            if f.name == name:
                return f
        raise KeyError(name)

    @property
    def family_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.families)


@dataclass(frozen=True, slots=True)
class Config:
    """One model configuration: family, architecture parameters and optimizer settings.

    ``params`` is a sorted tuple of (name, value) pairs so that configs hash and compare by
    value. ``base_batch`` is the batch size at which ``lr`` is tuned; other batch sizes
    rescale it (square-root rule for Adam, linear for SGD).
    """

    id: str
    family: str
    params: tuple[tuple[str, Any], ...] = ()
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    base_batch: int = 32
    tags: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError("a config needs a non-empty id")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"`optimizer` must be one of {OPTIMIZERS}, but got {self.optimizer!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"`lr > 0` must hold, but got lr={self.lr}")
        if self.base_batch < 1:
            raise ValueError(f"`base_batch >= 1` must hold, but got {self.base_batch}")
        object.__setattr__(self, "params", tuple(sorted(self.params)))

    def param(self, name: str, default: Any = None) -> Any:
        for k, v in self.params:
            if k == name:
                return v
        return default

    def lr_at(self, batch_size: int) -> float:
        """Learning rate at ``batch_size``: square-root rule for Adam, linear for SGD."""
        ratio = batch_size / self.base_batch
        return self.lr * (ratio if self.optimizer == "sgd" else math.sqrt(ratio))

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "family": self.family,
            **dict(self.params),
            "optimizer": self.optimizer,
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            "base_batch": self.base_batch,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Config:
        fixed = {"id", "family", "optimizer", "lr", "weight_decay", "base_batch"}
        params = tuple((k, v) for k, v in data.items() if k not in fixed)
        return cls(
            id=data["id"],
            family=data["family"],
            params=params,
            optimizer=data.get("optimizer", "adam"),
            lr=float(data.get("lr", 1e-3)),
            weight_decay=float(data.get("weight_decay", 0.0)),
            base_batch=int(data.get("base_batch", 32)),
        )
