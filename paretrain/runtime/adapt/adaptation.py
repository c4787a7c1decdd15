"""Adaptation while a run goes: observe a snapshot against the plan, ask the policy, and say
what should change.

At each evaluation the executor hands over a ``Snapshot`` (plain numbers: where the run is,
what it has spent and done) and, when one was due, the refit of the run's own learning curve
(``paretrain.runtime.adapt.learning``). ``Adaptation.decide`` measures the three drift signals
against the current stage's plan (spend rate, throughput, convergence), projects the rest of the
run at the observed speed and the current prices, sets the curve against the plan's interval
and the samples the run can still train, and asks ``paretrain.runtime.adapt.policy.Policy``.
``Adaptation.replan`` turns a decision into a ``Change``: new stages for the rest of the run
from ``paretrain.planner.plan.replan`` (the same cost model as the plan), classified as a batch-size change,
a move to another offer, no change, or a stop. ``Adaptation.rollback`` says which stages to go
back to after an adaptation that made validation loss worse. The executor carries every
change out and reports back (``committed``, ``paused``); this module never touches the
trainer, the meter or the run's files.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from paretrain.planner.inputs.spec import Spec
from paretrain.planner.plan.plan import Candidate, Plan, StagePlan
from paretrain.planner.plan.replan import ReplanRequest, replan
from paretrain.runtime.adapt.learning import Refit, RunCurve
from paretrain.runtime.adapt.policy import (
    Action,
    CurveObservation,
    Decision,
    Observation,
    Policy,
    Triple,
)
from paretrain.runtime.money.prices import PriceSource

__all__ = ["Adaptation", "Change", "Snapshot"]


@dataclass(frozen=True)
class Snapshot:
    """The run at one evaluation, as the executor sees it."""

    now: float
    spent: float
    budget: float
    reserve_usd: float  # the next step, an evaluation and a final checkpoint, priced now
    hw: str
    stage_i: int
    stages: tuple[StagePlan, ...]
    stage_done: int
    progress: float
    beyond: bool
    samples: int
    batch_size: int
    busy_s: float
    busy_usd: float
    val_loss: float
    level: float
    held_s: float = 0.0  # seconds the run has held its current (emulated) offer: its billing hold so far

    @property
    def stage(self) -> StagePlan:
        return self.stages[min(self.stage_i, len(self.stages) - 1)]


@dataclass(frozen=True)
class Change:
    """What a replan asks of the run: ``action`` CONTINUE (nothing), RESIZE_BATCH or SWITCH
    (take up ``stages`` from the current stage on) or STOP."""

    action: Action
    reason: str
    stages: tuple[StagePlan, ...] = ()
    first: tuple[str, int] | None = None  # (offer, global batch) of the new current stage
    record: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Window:
    busy_s: float
    busy_usd: float
    samples: int


CostAhead = Callable[[str, float, float], float]


class Adaptation:
    """The run's adaptive side: detectors, the options marked bad, the rollback point's stages."""

    def __init__(
        self, plan: Plan, cand: Candidate, spec: Spec, prices: PriceSource, cost_ahead: CostAhead
    ) -> None:
        rt = spec.runtime
        self.plan, self.cand, self.spec = plan, cand, spec
        self.prices, self.cost_ahead = prices, cost_ahead
        self.policy = Policy(
            threshold=rt.drift_threshold,
            window=rt.window,
            cooldown_s=rt.cooldown_s,
            pause_threshold=rt.pause_threshold,
            rollback_threshold=rt.rollback_threshold,
        )
        self.enabled = rt.adapt
        target = spec.target
        self.learning = RunCurve(cand, target.metric_obj.direction, target.max_samples, rt.eval_every_samples)
        self.bad: set[tuple[str, int]] = set()
        self.last: _Window | None = None
        self.evals_since = 1 << 30
        self.loss_before: float | None = None
        self.rollback_stages: tuple[StagePlan, ...] | None = None
        self.changed_option: tuple[str, int] | None = None
        self.replans = 0
        self.curves = plan.curves(cand.config_id)
        plan_prices = {o.id: o.price_usd_per_h for o in plan.offers}
        #: the prices the current schedule was made with (the plan's, then each replan's)
        self.schedule_prices = dict(plan_prices)
        self.planned_prices = plan_prices
        #: observed step time over the profile's, per offer, kept after the run leaves the offer
        #: (until it is observed again), so that a replan does not send the run back to a
        #: slowed offer at its profiled speed; and the factors the current stages were made with
        self.speed: dict[str, float] = {}
        self.embedded: dict[str, float] = {}
        self.rollback_embedded: dict[str, float] = {}
        self._pending: dict[str, float] = {}  # the factors of the change last proposed
        #: offer -> the largest per-worker batch whose step fits its memory (out of memory above)
        self.batch_cap: dict[str, int] = {}
        self.memory_due = ""  # why the rest must be replanned within ``batch_cap`` ("" when not)

    # -- signals ------------------------------------------------------------------------------
    def _planned_rate(self, st: StagePlan) -> float:
        """Planned samples per second of the stage, evaluations included."""
        every = self.spec.runtime.eval_every_samples
        per_step = st.step_s + st.eval_s * st.batch_size * st.workers / every
        return st.batch_size * st.workers / per_step if per_step > 0 else math.inf

    def _reference_progress(self, value: float, b_noise: float) -> float | None:
        """Ideal samples (E_min units) the profile needed to reach ``value`` of the target
        metric, interpolated along its learning curves in score space (higher is better)."""
        m = self.spec.target.metric_obj
        goal = m.score(value)
        best = None
        for b, curve in self.curves.items():
            prev: tuple[float, float] | None = (0, 0.0) if m.initial() == 0.0 else None
            for s, v in curve:
                a = m.score(v)
                if a >= goal:
                    if prev is None:
                        samples = float(s)
                    else:
                        s0, a0 = prev
                        samples = s0 + ((goal - a0) / (a - a0) if a > a0 else 1.0) * (s - s0)
                    ideal = samples / (1.0 + int(b) / b_noise)
                    best = ideal if best is None else min(best, ideal)
                    break
                prev = (s, a)
        return best

    def remaining(self, snap: Snapshot, tput_factor: float) -> tuple[float, float]:
        """Seconds and dollars of the rest of the plan at the observed speed and current prices."""
        secs = usd = 0.0
        if snap.beyond:  # past the plan: the rest is unknown, so nothing is projected
            return secs, usd
        for i in range(snap.stage_i, len(snap.stages)):
            st = snap.stages[i]
            left = st.samples - (snap.stage_done if i == snap.stage_i else 0)
            if left <= 0:
                continue
            rate = self._planned_rate(st) * (tput_factor if st.hardware == snap.hw else 1.0)
            dt = left / rate
            usd += self.cost_ahead(st.hardware, snap.now + secs, dt)
            secs += dt
        return secs, usd

    def _pause_until(self, snap: Snapshot) -> float | None:
        limit = self.planned_prices[snap.hw] * (1.0 + self.policy.pause_threshold)
        for t in self.prices.changes(snap.hw, snap.now, self.spec.deadline_s):
            if self.prices.price_usd_per_h(snap.hw, t) <= limit and self.prices.available(snap.hw, t):
                return t
        return None

    def _price_change(self, now: float) -> tuple[float, str]:
        """The largest move (as a ratio, either way) of an available offer's price since the
        schedule was made, and that offer."""
        best, which = 1.0, ""
        for hw, then in self.schedule_prices.items():
            if then <= 0 or not self.prices.available(hw, now):
                continue
            r = self.prices.price_usd_per_h(hw, now) / then
            if max(r, 1.0 / r) > max(best, 1.0 / best):
                best, which = r, hw
        return best, which

    def curve(self, snap: Snapshot, refit: Refit | None) -> CurveObservation | None:
        """The run's refitted curve against its limits, for the policy (None: no refit now)."""
        if refit is None:
            return None
        tput = self.policy.detectors["throughput"]
        rate = self._planned_rate(snap.stage) * (max(tput.level, 1e-6) if tput.n else 1.0)
        return self.learning.observe(
            refit,
            samples=snap.samples,
            budget_left_usd=snap.budget - snap.spent - snap.reserve_usd,
            samples_per_s=rate if rate < math.inf else 0.0,
            usd_per_s=self.cost_ahead(snap.hw, snap.now, 1.0),
            level=snap.level,
            metric=self.spec.target.metric_obj.name,
        )

    def out_of_reach(self, snap: Snapshot, refit: Refit | None) -> Decision:
        """The out-of-reach rule alone (a run that does not adapt still stops paying for a
        target its curve cannot reach)."""
        return self.policy.out_of_reach(self.curve(snap, refit)) or Decision(Action.CONTINUE)

    def decide(self, snap: Snapshot, refit: Refit | None = None) -> Decision:
        """The policy's answer to this evaluation (``refit``: the run's curve, refitted at it)."""
        self.evals_since += 1
        curve = self.curve(snap, refit)
        cur = _Window(snap.busy_s, snap.busy_usd, snap.samples)
        prev, self.last = self.last, cur
        if prev is None or cur.busy_s <= prev.busy_s or cur.samples <= prev.samples:
            return self.policy.out_of_reach(curve) or Decision(Action.CONTINUE, "first observation")
        dt = cur.busy_s - prev.busy_s
        planned_usd_s = self.planned_prices[snap.hw] / 3600.0
        spend_ratio = ((cur.busy_usd - prev.busy_usd) / dt) / planned_usd_s if planned_usd_s > 0 else 1.0
        tput_ratio = ((cur.samples - prev.samples) / dt) / self._planned_rate(snap.stage)
        ref = self._reference_progress(snap.level, snap.stage.b_noise)
        tput = self.policy.detectors["throughput"]
        left_s, left_usd = self.remaining(snap, max(tput.level if tput.n else tput_ratio, 1e-6))
        change, which = self._price_change(snap.now)
        price_now = self.prices.price_usd_per_h(snap.hw, snap.now)
        return self.policy.decide(
            Observation(
                t_s=snap.now,
                spent_usd=snap.spent,
                budget_usd=snap.budget,
                deadline_s=self.spec.deadline_s,
                spend_rate_ratio=spend_ratio,
                throughput_ratio=tput_ratio,
                convergence_ratio=(snap.progress / ref) if ref else 1.0,
                projected_cost_usd=snap.spent + left_usd,
                projected_end_s=snap.now + left_s,
                price_ratio=price_now / max(self.planned_prices[snap.hw], 1e-30),
                pause_until_s=self._pause_until(snap),
                remaining_s=left_s,
                val_loss=snap.val_loss,
                evals_since_adaptation=self.evals_since,
                loss_before_adaptation=self.loss_before,
                prefer=self.spec.runtime.prefer,
                price_change=change,
                price_change_offer=which,
                curve=curve,
            )
        )

    def cap_batch(self, hw: str, batch: int, reason: str) -> None:
        """A step on ``hw`` ran out of memory above per-worker ``batch``: the rest is replanned
        within it (``memory_due``) and never goes above it there."""
        self.batch_cap[hw] = min(self.batch_cap.get(hw, batch), batch)
        self.memory_due = reason

    # -- what should change ---------------------------------------------------------------------
    def _request(self, snap: Snapshot, objective: str, curve: Triple | None = None) -> ReplanRequest:
        """What the replan is asked; ``curve``: the samples to the target the run's curve
        predicts, when the replan is for it."""
        tput = self.policy.detectors["throughput"]
        conv = self.policy.detectors["convergence"]
        if tput.n:  # the detector compares with the current stage, made with ``embedded``
            self.speed[snap.hw] = self.embedded.get(snap.hw, 1.0) / max(tput.level, 1e-3)
        factor = min(max(conv.shift, 0.5), 3.0) if conv.ready else 1.0
        if curve is not None:  # the run's own curve: its P50 over the plan's
            factor = self.learning.convergence(curve)
        return ReplanRequest(
            current_hardware=snap.hw,
            stage_index=snap.stage_i,
            stages_left=max(1, len(snap.stages) - snap.stage_i),
            progress_done=snap.progress,
            convergence_factor=factor,
            prefer=objective,
            step_factor=dict(self.speed),
            prices_usd_per_h={o.id: self.prices.price_usd_per_h(o.id, snap.now) for o in self.plan.offers},
            budget_left_usd=snap.budget - snap.spent - snap.reserve_usd,
            time_left_s=self.spec.deadline_s - snap.now,
            bad=frozenset(self.bad),
            held_s=snap.held_s,
            batch_cap=dict(self.batch_cap),
        )

    def replan(self, snap: Snapshot, decision: Decision) -> Change:
        """New stages for the rest of the run, from the plan's models at what the run observed."""
        plan, cand, solver = self.plan, self.cand, self.spec.planner.solver
        self.replans += 1
        tput = self.policy.detectors["throughput"]
        old_left_s, old_left_usd = self.remaining(snap, tput.level if tput.n else 1.0)
        curve = decision.detail.get("curve_interval")
        req = self._request(snap, decision.objective, curve)
        if curve is not None:  # whatever comes of it, the replan took it in
            self.learning.expect(curve)
        new = replan(plan, cand, req, solver=solver)
        if not (new.feasible and new.cost_usd <= req.budget_left_usd) and req.convergence_factor > 1.0:
            # Stopping gives up the target, and the observed convergence is the noisiest signal
            # (accuracy wobbles most near its plateau): stop only if the rest does not fit even at
            # the profile's convergence. Going on cannot overspend: the hard cap still holds.
            hopeful = replan(plan, cand, replace(req, convergence_factor=1.0), solver=solver)
            if hopeful.feasible and hopeful.cost_usd <= req.budget_left_usd:
                new = hopeful
        self.schedule_prices = dict(req.prices_usd_per_h)
        first = (
            (new.stages[0].hardware, new.stages[0].batch_size * new.stages[0].workers) if new.stages else None
        )
        outcome = self.policy.after_replan(
            (snap.hw, snap.batch_size),
            first,
            new.feasible,
            new.cost_usd <= req.budget_left_usd,
            decision.reason,
        )
        memory = bool(decision.detail.get("memory"))
        if memory and outcome.action == Action.CONTINUE and new.stages:  # the batch already changed
            outcome = Decision(Action.RESIZE_BATCH, f"{decision.reason}: the rest replanned at that batch")
        record = {
            "reason": decision.reason,
            "action": outcome.action.value,
            "old_cost_usd": old_left_usd,
            "new_cost_usd": new.cost_usd,
            "old_wall_s": old_left_s,
            "new_wall_s": new.wall_s,
            "feasible": new.feasible,
            "convergence_factor": round(req.convergence_factor, 4),
            "stages": [f"{s.hardware} b{s.batch_size}" for s in new.stages],
            "step_factor": {h: round(f, 3) for h, f in sorted(req.step_factor.items())},
            **({"batch_cap": dict(self.batch_cap)} if memory else {}),
        }
        if outcome.action == Action.CONTINUE:
            self.policy.acknowledge(decision)
        else:
            self.policy.adapted(snap.now)
            self.last = None
        stages = tuple(replace(s, index=snap.stage_i + j) for j, s in enumerate(new.stages))
        self._pending = dict(req.step_factor)
        return Change(outcome.action, outcome.reason, stages, first, record)

    def committed(self, change: Change, snap: Snapshot) -> None:
        """The executor took ``change`` up (from ``snap``): remember how to undo it (a change
        forced by memory is not undone: the batch before it did not fit)."""
        self.rollback_stages = None if "batch_cap" in change.record else snap.stages
        self.rollback_embedded, self.embedded = self.embedded, self._pending
        self.loss_before = snap.val_loss
        self.evals_since = 0
        self.changed_option = change.first

    def rollback(self) -> tuple[StagePlan, ...] | None:
        """The stages to go back to (with the checkpoint taken before the last change), marking
        that change's option bad; None when there is nothing to go back to."""
        stages = self.rollback_stages
        if stages is None:
            return None
        self.embedded = self.rollback_embedded
        if self.changed_option is not None:
            self.bad.add(self.changed_option)
        self.loss_before = None
        self.rollback_stages = None
        return stages

    def paused(self) -> None:
        """The run waited: that time is not throughput."""
        self.last = None
