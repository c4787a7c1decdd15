"""Plan, Candidate and StagePlan: what a plan holds, typed.

A plan holds everything a run needs: the validated spec (a ``Spec``), the configs, the offers,
the Pareto candidates and the fitted models every replan rebuilds its options from
(``paretrain.planner.plan.fitted``). ``paretrain.planner.plan.make`` builds one from the solver's
front; ``paretrain.planner.plan.plan_file`` writes and reads it (``paretrain.plan/4``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from paretrain.planner.errors import InputError
from paretrain.planner.inputs.catalog import Offer
from paretrain.planner.inputs.metric import Metric
from paretrain.planner.inputs.space import Config
from paretrain.planner.inputs.spec import Spec
from paretrain.planner.measure.fits import StageNoise
from paretrain.planner.measure.uncertainty import Interval
from paretrain.planner.plan.fitted import (
    ConvergenceRecord,
    Curves,
    PlanModels,
    StepModelRecord,
)
from paretrain.planner.plan.plan_body import body_fingerprint, plan_body
from paretrain.planner.program.reuse import StartFrom

if TYPE_CHECKING:
    from paretrain.planner.measure.fits import NoiseCurve

__all__ = ["Candidate", "Plan", "StagePlan"]


@dataclass(frozen=True, slots=True)
class StagePlan:
    index: int
    hardware: str
    precision: str
    batch_size: int
    workers: int
    samples: int
    steps: int
    lr: float
    cost_usd: float
    wall_s: float
    b_noise: float
    modeled: bool = False
    extrapolated: bool = False
    spot: bool = False
    instances: int = 1
    step_s: float = 0.0  # predicted seconds per step (with the all-reduce term)
    eval_s: float = 0.0  # predicted seconds per evaluation


@dataclass(frozen=True, slots=True)
class Candidate:
    """One Pareto point: a config trained to ``level`` of the target metric (the spec's
    ``target.metric``, in its own units: a val_accuracy to reach, or a val_bpb to get below) by a
    sequence of stages."""

    id: str
    config_id: str
    level: float
    cost_usd: float
    wall_s: float
    stages: tuple[StagePlan, ...]
    notes: tuple[str, ...] = ()
    #: P10/P50/P90 of cost and wall time, of the samples the level needs, and the share of
    #: draws in which the planned samples reach it (``paretrain.planner.measure.uncertainty``)
    cost_interval: Interval | None = None
    wall_interval: Interval | None = None
    samples_interval: Interval | None = None
    p_reach: float | None = None
    #: the run starts from the profile's checkpoint of its config (``paretrain.planner.program.reuse``):
    #: the stages, ``samples`` and the predictions count only the samples still needed
    start: StartFrom | None = None

    @property
    def samples(self) -> int:
        """Samples the candidate trains (those of a checkpoint it starts from not counted)."""
        return sum(s.samples for s in self.stages)

    @property
    def reused_samples(self) -> int:
        """Samples the checkpoint it starts from has trained (0: it starts from scratch)."""
        return self.start.samples if self.start is not None else 0

    @property
    def hardware(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.hardware for s in self.stages))


@dataclass(frozen=True, slots=True)
class Plan:
    spec_digest: str
    profile_key: str
    spec: Spec
    configs: tuple[Config, ...]
    offers: tuple[Offer, ...]
    candidates: tuple[Candidate, ...]
    chosen: str
    cheapest: str
    fastest: str
    solver: Mapping[str, Any] = field(default_factory=dict)
    models: PlanModels = field(default_factory=PlanModels)
    notes: tuple[str, ...] = ()

    @property
    def metric(self) -> Metric:
        """The target metric and its direction (a candidate's ``level`` is in its units)."""
        return self.spec.target.metric_obj

    def candidate(self, which: str) -> Candidate:
        """``knee`` (the chosen one), ``cheapest``, ``fastest``, ``accurate`` (the highest level,
        the cheapest of those) or a candidate id."""
        ident = {
            "knee": self.chosen,
            "chosen": self.chosen,
            "cheapest": self.cheapest,
            "fastest": self.fastest,
            "accurate": self.most_accurate,
        }.get(which, which)
        for c in self.candidates:
            if c.id == ident:
                return c
        ids = ", ".join(c.id for c in self.candidates)
        raise InputError(
            f"--candidate {which!r} is not in the plan. To fix: use knee, cheapest, "
            f"fastest, accurate or one of {ids}"
        )

    @property
    def most_accurate(self) -> str:
        """The id of the candidate at the highest level of the target metric (the cheapest of them)."""
        m = self.metric
        best = max(self.candidates, key=lambda c: (m.score(c.level), -c.cost_usd, -c.wall_s))
        return best.id

    def config(self, config_id: str) -> Config:
        for c in self.configs:
            if c.id == config_id:
                return c
        raise KeyError(config_id)

    def offer(self, offer_id: str) -> Offer:
        for o in self.offers:
            if o.id == offer_id:
                return o
        raise KeyError(offer_id)

    def step_model(self, hardware: str, config_id: str, precision: str, workers: int = 1) -> StepModelRecord:
        """The step model of one (offer, config, precision, workers); ``KeyError`` if not planned."""
        return self.models.step_model(hardware, config_id, precision, workers)

    def step_models(self, config_id: str) -> tuple[StepModelRecord, ...]:
        """Every step model of ``config_id``: the options a replan may choose from."""
        return self.models.step_models(config_id)

    def convergence(self, config_id: str, level: float) -> ConvergenceRecord:
        return self.models.convergence_of(config_id, level)

    def noise_curve(self, config_id: str) -> NoiseCurve | None:
        return self.models.noise_curve(config_id)

    def stage_noise(self, config_id: str, level: float) -> StageNoise:
        return self.models.stage_noise(config_id, level)

    def curves(self, config_id: str) -> Curves:
        """batch size -> [(samples, metric value)] of the profile's convergence runs."""
        return self.models.curves_of(config_id)

    @property
    def fingerprint(self) -> str:
        """The SHA-256 (16 hex digits) of the plan file's canonical body (``plan_body``)."""
        return body_fingerprint(plan_body(self))
