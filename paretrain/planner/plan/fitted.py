"""The fitted models a plan file carries, as typed records: what every replan rebuilds from.

A replan must rebuild exactly the options the plan chose from, so the plan keeps, for every
config it planned: the step model of every (offer, precision, workers) it could run on (with
the instances it rents and the bytes it stores), the convergence fit and the stage B_noise
model of every accuracy level, the gradient-noise curve and the profile's learning curves.
Floats are written at full precision (JSON round-trips them exactly), so a replan with nothing
changed computes the plan's own numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from paretrain.planner.measure.fits import ConvergenceFit, NoiseCurve, StageNoise, StepTimeModel
from paretrain.planner.measure.throughput import StepModel, SyncModel

__all__ = [
    "ConvergenceRecord",
    "Curves",
    "LearningCurveRecord",
    "NoiseCurveRecord",
    "PlanModels",
    "StepModelRecord",
]

#: batch size -> [(samples, accuracy)] measured while profiling convergence
Curves = dict[int, list[tuple[int, float]]]


def _pairs(v: Any, a: type, b: type) -> tuple[tuple[Any, Any], ...]:
    return tuple((a(x), b(y)) for x, y in v)


@dataclass(frozen=True, slots=True)
class StepModelRecord:
    """Step time of ``config_id`` on ``hardware`` at ``precision`` with ``workers`` workers:
    ``alpha_s + beta_s * b`` (the measured mean at a measured batch size) plus the all-reduce
    ``sync_latency_s * (n - 1) + 2 (n - 1) / n * grad_bytes / sync_bandwidth_bps``."""

    hardware: str
    config_id: str
    precision: str
    workers: int
    alpha_s: float
    beta_s: float
    b_range: tuple[int, int]
    measured: tuple[tuple[int, float], ...]  # (batch size, mean step seconds) as measured, times speed_factor
    sync_latency_s: float
    sync_bandwidth_bps: float
    sync_max_workers: int
    grad_bytes: float
    eval_s: float
    ckpt_s: float
    modeled: bool
    memory: tuple[tuple[int, int], ...]  # (batch size, peak bytes)
    instances: int  # instances of the offer the workers rent
    storage_bytes: float  # checkpoints and data kept while the stage runs
    spread: float = (
        0.0  # pass-to-pass spread of the measured step times (paretrain.planner.measure.uncertainty)
    )
    fixed_s: float = 0.0  # a fresh run's warm-up beyond its steady steps (the first stage pays it)
    rendezvous_s: float = 0.0  # forming the group of a stage with several workers
    contention: float = 1.0  # each worker's compute slowdown while all compute (local processes)
    speed_factor: float = (
        1.0  # ``measured`` and ``eval_s`` are the profile's times this (paretrain.planner.measure.throughput)
    )

    def __post_init__(self) -> None:
        if self.workers < 1 or self.instances < 1:
            raise ValueError(
                f"step model {self.key}: `workers >= 1 and instances >= 1` must hold, "
                f"got workers={self.workers}, instances={self.instances}"
            )

    @property
    def key(self) -> tuple[str, str, str, int]:
        return (self.hardware, self.config_id, self.precision, self.workers)

    def model(self) -> StepModel:
        """The ``paretrain.planner.measure.throughput.StepModel`` this record was written from."""
        single = StepTimeModel(self.alpha_s, self.beta_s, self.b_range[0], self.b_range[1], self.measured)
        sync = SyncModel(
            self.sync_latency_s,
            self.sync_bandwidth_bps,
            self.sync_max_workers,
            rendezvous_s=self.rendezvous_s,
            contention=self.contention,
        )
        return StepModel(
            single,
            sync,
            self.grad_bytes,
            self.eval_s,
            self.modeled,
            dict(self.memory),
            self.ckpt_s,
            self.spread,
            self.fixed_s,
            self.speed_factor,
        )

    @classmethod
    def of(
        cls, key: tuple[str, str, str, int], m: StepModel, instances: int, storage_bytes: float
    ) -> StepModelRecord:
        h, cid, q, n = key
        return cls(
            h,
            cid,
            q,
            int(n),
            float(m.single.alpha),
            float(m.single.beta),
            (int(m.single.b_min), int(m.single.b_max)),
            _pairs(m.single.measured, int, float),
            float(m.sync.latency_s),
            float(m.sync.bandwidth_bps),
            int(m.sync.max_workers_measured),
            float(m.grad_bytes),
            float(m.eval_s),
            float(m.ckpt_s),
            bool(m.modeled),
            _pairs(sorted(m.memory.items()), int, int),
            int(instances),
            float(storage_bytes),
            float(m.spread),
            float(m.fixed_s),
            float(m.sync.rendezvous_s if n > 1 else 0.0),
            float(m.sync.contention if n > 1 else 1.0),
            float(m.speed_factor),
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StepModelRecord:
        return cls(
            **{
                **d,
                "b_range": (int(d["b_range"][0]), int(d["b_range"][1])),
                "measured": _pairs(d["measured"], int, float),
                "memory": _pairs(d["memory"], int, int),
            }
        )


@dataclass(frozen=True, slots=True)
class ConvergenceRecord:
    """``E(B) = e_min (1 + B / b_noise)`` for ``config_id`` to ``level``; the stages follow the
    config's noise curve times ``noise_scale`` (None: ``b_noise`` for every stage)."""

    config_id: str
    level: float
    e_min: float
    b_noise: float
    points: tuple[tuple[int, int], ...]  # (batch size, samples to reach the level) measured
    max_batch: int
    noise_scale: float | None = None
    #: extrapolated from a truncated run's learning curve (``paretrain.planner.measure.truncated``)
    extrapolated: bool = False

    def fit(self) -> ConvergenceFit:
        return ConvergenceFit(
            self.e_min, self.b_noise, self.points, self.max_batch, extrapolated=self.extrapolated
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ConvergenceRecord:
        return cls(**{**d, "points": _pairs(d["points"], int, int)})


@dataclass(frozen=True, slots=True)
class NoiseCurveRecord:
    """The smoothed gradient-noise curve of ``config_id`` (``paretrain.planner.measure.fits.NoiseCurve``)."""

    config_id: str
    log_a: float
    slope: float
    p_min: int
    p_max: int

    def curve(self) -> NoiseCurve:
        return NoiseCurve(self.log_a, self.slope, self.p_min, self.p_max)


@dataclass(frozen=True, slots=True)
class LearningCurveRecord:
    """Validation accuracy of ``config_id`` along a profiling run at ``batch_size``."""

    config_id: str
    batch_size: int
    points: tuple[tuple[int, float], ...]  # (samples, accuracy)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LearningCurveRecord:
        return cls(**{**d, "points": _pairs(d["points"], int, float)})


@dataclass(frozen=True, slots=True)
class PlanModels:
    """Every fitted model of a plan, with lookups."""

    step_time: tuple[StepModelRecord, ...] = ()
    convergence: tuple[ConvergenceRecord, ...] = ()
    noise: tuple[NoiseCurveRecord, ...] = ()
    curves: tuple[LearningCurveRecord, ...] = ()
    egress_bytes: float = 0.0  # what leaving an offer moves: the largest checkpoint
    pruned_options: int = 0

    def step_model(self, hardware: str, config_id: str, precision: str, workers: int = 1) -> StepModelRecord:
        for r in self.step_time:
            if r.key == (hardware, config_id, precision, workers):
                return r
        raise KeyError((hardware, config_id, precision, workers))

    def step_models(self, config_id: str) -> tuple[StepModelRecord, ...]:
        return tuple(r for r in self.step_time if r.config_id == config_id)

    def convergence_of(self, config_id: str, level: float) -> ConvergenceRecord:
        for r in self.convergence:
            if r.config_id == config_id and abs(r.level - level) < 1e-9:
                return r
        raise KeyError((config_id, level))

    def noise_curve(self, config_id: str) -> NoiseCurve | None:
        return next((r.curve() for r in self.noise if r.config_id == config_id), None)

    def stage_noise(self, config_id: str, level: float) -> StageNoise:
        """B_noise along training for ``config_id`` to ``level``, as the plan's stages have it."""
        conv = self.convergence_of(config_id, level)
        curve = self.noise_curve(config_id)
        if conv.noise_scale is None or curve is None:
            return StageNoise(conv.b_noise)
        return StageNoise(conv.b_noise, curve, conv.noise_scale)

    def curves_of(self, config_id: str) -> Curves:
        return {r.batch_size: list(r.points) for r in self.curves if r.config_id == config_id}

    def to_dict(self) -> dict[str, Any]:
        return {
            f.name: (
                [_plain(asdict(r)) for r in getattr(self, f.name)]
                if isinstance(getattr(self, f.name), tuple)
                else getattr(self, f.name)
            )
            for f in fields(self)
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PlanModels:
        return cls(
            step_time=tuple(StepModelRecord.from_dict(r) for r in d["step_time"]),
            convergence=tuple(ConvergenceRecord.from_dict(r) for r in d["convergence"]),
            noise=tuple(NoiseCurveRecord(**r) for r in d["noise"]),
            curves=tuple(LearningCurveRecord.from_dict(r) for r in d["curves"]),
            egress_bytes=float(d["egress_bytes"]),
            pruned_options=int(d["pruned_options"]),
        )


def _plain(v: Any) -> Any:
    """Tuples as lists, so that a record's dict is what ``json.loads`` gives back."""
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v
