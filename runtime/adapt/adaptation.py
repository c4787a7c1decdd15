"""Adaptation while a run goes: observe against the plan, ask the policy, carry it out.

At each evaluation the executor hands over; this module measures the three drift signals
against the current stage's plan (spend rate, throughput, convergence), projects the rest of
the run at the observed speed and the current prices, and asks ``runtime.adapt.policy.Policy``.
It then carries the decision out on the executor: a replan (``planner.replan``) applied as a
batch-size change (learning rate rescaled, short warm-up) or a hardware switch (checkpoint,
move, resume); a pause through a price peak (checkpoint, storage charged only); a rollback to
the checkpoint taken just before an adaptation that made validation loss worse; or a stop.
Every replan is an event in the ledger and in MLflow with its reason and the old and new
predicted totals.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch

from planner.plan import StagePlan
from planner.replan import ReplanRequest, replan
from runtime.files import atomic_write_bytes
from runtime.adapt.policy import Action, Decision, Observation, Policy

if TYPE_CHECKING:
    from runtime.run.executor import Executor

__all__ = ["Adaptation"]


@dataclass
class _Window:
    busy_s: float  # run time in steps and evaluations (checkpoints, moves and pauses excluded)
    busy_usd: float
    samples: int


class Adaptation:
    """The executor's adaptive side: one per run."""

    def __init__(self, ex: "Executor") -> None:
        rt = ex.spec.runtime
        self.ex = ex
        self.policy = Policy(threshold=rt.drift_threshold, window=rt.window, cooldown_s=rt.cooldown_s,
                             pause_threshold=rt.pause_threshold, rollback_threshold=rt.rollback_threshold)
        self.enabled = rt.adapt
        self.prefer = rt.prefer
        self.bad: set[tuple[str, int]] = set()
        self.last: _Window | None = None
        self.evals_since = 1 << 30
        self.loss_before: float | None = None
        self.rollback_path = ex.run_dir / "before-adaptation.pt"
        self.rollback_stages: list[StagePlan] | None = None
        self.changed_option: tuple[str, int] | None = None
        self.replans = 0
        self.curves = ex.plan.models.get("curves", {}).get(ex.cand.config_id, {})
        #: the prices the current schedule was made with (the plan's, then each replan's)
        self.schedule_prices = {o.id: float(o.price_usd_per_h) for o in ex.plan.offers}
        #: observed step time over the profile's, per offer, kept after the run leaves the offer
        #: (until it is observed again), so that a replan does not send the run back to a
        #: slowed offer at its profiled speed; and the factors the current stages were made with
        self.speed: dict[str, float] = {}
        self.embedded: dict[str, float] = {}
        self.rollback_embedded: dict[str, float] = {}

    # -- signals ------------------------------------------------------------------------------
    def _planned_rate(self, st: StagePlan) -> float:
        """Planned samples per second of the stage, evaluations included."""
        per_step = st.step_s + st.eval_s * st.batch_size * st.workers / self.ex.spec.runtime.eval_every_samples
        return st.batch_size * st.workers / per_step if per_step > 0 else math.inf

    def _reference_progress(self, accuracy: float) -> float | None:
        """Ideal samples (E_min units) the profile needed to reach ``accuracy``."""
        best = None
        for b, curve in self.curves.items():
            b = int(b)
            prev = (0, 0.0)
            for s, a in curve:
                if a >= accuracy:
                    s0, a0 = prev
                    frac = (accuracy - a0) / (a - a0) if a > a0 else 1.0
                    samples = s0 + frac * (s - s0)
                    ideal = samples / (1.0 + b / self.ex.stage.b_noise)
                    best = ideal if best is None else min(best, ideal)
                    break
                prev = (s, a)
        return best

    def _remaining(self, now: float, tput_factor: float) -> tuple[float, float]:
        """Seconds and dollars of the rest of the plan at the observed speed and current prices."""
        ex = self.ex
        secs = usd = 0.0
        if ex.beyond:  # past the plan: the rest is unknown, so nothing is projected
            return secs, usd
        for i in range(ex.stage_i, len(ex.stages)):
            st = ex.stages[i]
            left = st.samples - (ex.stage_done if i == ex.stage_i else 0)
            if left <= 0:
                continue
            rate = self._planned_rate(st) * (tput_factor if st.hardware == ex.hw else 1.0)
            dt = left / rate
            usd += ex.meter.cost_ahead(st.hardware, now + secs, dt)
            secs += dt
        return secs, usd

    def _pause_until(self, now: float) -> float | None:
        ex = self.ex
        limit = ex.planned_price(ex.hw) * (1.0 + self.policy.pause_threshold)
        for t in ex.prices.changes(ex.hw, now, ex.spec.deadline_s):
            if ex.prices.price_usd_per_h(ex.hw, t) <= limit and ex.prices.available(ex.hw, t):
                return t
        return None

    def observe(self, val_loss: float, accuracy: float) -> Decision:
        ex = self.ex
        emu = ex.emulated(ex.hw)
        now = ex.meter.now(emu)
        spent = ex.meter.spent
        self.evals_since += 1
        cur = _Window(ex.busy_s, ex.busy_usd, ex.trainer.samples_seen)
        prev, self.last = self.last, cur
        if prev is None or cur.busy_s <= prev.busy_s or cur.samples <= prev.samples:
            return Decision(Action.CONTINUE, "first observation")
        st = ex.stage
        dt = cur.busy_s - prev.busy_s
        planned_usd_s = ex.planned_price(ex.hw) / 3600.0
        spend_ratio = ((cur.busy_usd - prev.busy_usd) / dt) / planned_usd_s if planned_usd_s > 0 else 1.0
        tput_ratio = ((cur.samples - prev.samples) / dt) / self._planned_rate(st)
        ref = self._reference_progress(accuracy)
        conv_ratio = (ex.progress / ref) if ref else 1.0
        factor = self.policy.detectors["throughput"].level if self.policy.detectors["throughput"].n else tput_ratio
        left_s, left_usd = self._remaining(now, max(factor, 1e-6))
        change, which = self._price_change(now)
        obs = Observation(
            t_s=now, spent_usd=spent, budget_usd=ex.budget, deadline_s=ex.spec.deadline_s,
            spend_rate_ratio=spend_ratio, throughput_ratio=tput_ratio, convergence_ratio=conv_ratio,
            projected_cost_usd=spent + left_usd, projected_end_s=now + left_s,
            price_ratio=ex.prices.price_usd_per_h(ex.hw, now) / max(ex.planned_price(ex.hw), 1e-30),
            pause_until_s=self._pause_until(now), remaining_s=left_s, val_loss=val_loss,
            evals_since_adaptation=self.evals_since, loss_before_adaptation=self.loss_before,
            prefer=self.prefer, price_change=change, price_change_offer=which)
        return self.policy.decide(obs)

    def _price_change(self, now: float) -> tuple[float, str]:
        """The largest move (as a ratio, either way) of an available offer's price since the
        schedule was made, and that offer."""
        ex = self.ex
        best, which = 1.0, ""
        for hw, then in self.schedule_prices.items():
            if then <= 0 or not ex.prices.available(hw, now):
                continue
            r = ex.prices.price_usd_per_h(hw, now) / then
            if max(r, 1.0 / r) > max(best, 1.0 / best):
                best, which = r, hw
        return best, which

    # -- carrying decisions out ---------------------------------------------------------------------
    def act(self, decision: Decision, val_loss: float) -> str | None:
        """Carry ``decision`` out; returns a stop status ("budget") or None to go on."""
        if decision.action == Action.CONTINUE:
            return None
        if decision.action == Action.PAUSE:
            self._pause(float(decision.detail["until"]), decision.reason)
            return None
        if decision.rollback:
            self._rollback(decision.reason)
        return self._replan(decision, val_loss)

    def _pause(self, until: float, reason: str) -> None:
        ex = self.ex
        emu = ex.emulated(ex.hw)
        if ex.change_over_budget(ex.hw, extra_s=until - ex.meter.now(emu)):
            return  # the checkpoint and the storage of the wait do not fit: keep going (the cap holds)
        ex.checkpoint("pause")
        now = ex.meter.now(emu)
        ex.event("pause", reason=reason, until=until, seconds=until - now)
        ex.meter.event("pause", ex.hw, ex.stage_name, reason=reason, seconds=round(until - now, 6))
        ex.meter.wait(ex.hw, until - now, stage=ex.stage_name, emulated=emu)
        ex.charge_storage("checkpoints while paused")
        ex.meter.skip_real()
        ex.fast_until = 0.0
        self.last = None  # the pause is not throughput

    def _rollback(self, reason: str) -> None:
        ex = self.ex
        if not self.rollback_path.exists() or self.rollback_stages is None:
            return
        state = torch.load(self.rollback_path, map_location="cpu", weights_only=True)
        ex.trainer.load_state_dict(state["trainer"])
        run = state["run"]
        ex.stage_i, ex.stage_done, ex.progress = int(run["stage"]), int(run["stage_samples"]), float(run["progress"])
        ex.stages = list(self.rollback_stages)
        self.embedded = self.rollback_embedded
        ex.enter_stage()
        if self.changed_option is not None:
            self.bad.add(self.changed_option)
        if str(run["hardware"]) != ex.hw:
            ex.move_to(str(run["hardware"]))
        ex.event("rollback", reason=reason, bad=sorted(map(list, self.bad)))
        ex.meter.event("rollback", ex.hw, ex.stage_name, reason=reason)
        self.loss_before = None
        self.rollback_stages = None
        ex.fast_until = 0.0

    def _replan(self, decision: Decision, val_loss: float) -> str | None:
        ex = self.ex
        emu = ex.emulated(ex.hw)
        now = ex.meter.now(emu)
        self.replans += 1
        tput = self.policy.detectors["throughput"]
        conv = self.policy.detectors["convergence"]
        old_left_s, old_left_usd = self._remaining(now, tput.level if tput.n else 1.0)
        if tput.n:  # the detector compares with the current stage, made with ``embedded``
            self.speed[ex.hw] = self.embedded.get(ex.hw, 1.0) / max(tput.level, 1e-3)
        req = ReplanRequest(
            current_hardware=ex.hw, stage_index=ex.stage_i, stages_left=max(1, len(ex.stages) - ex.stage_i), progress_done=ex.progress,
            convergence_factor=min(max(conv.shift, 0.5), 3.0) if conv.ready else 1.0,
            step_factor=dict(self.speed),
            prices_usd_per_h={o.id: ex.prices.price_usd_per_h(o.id, now) for o in ex.plan.offers},
            budget_left_usd=ex.budget - ex.meter.spent - ex.reserve_usd(),
            time_left_s=ex.spec.deadline_s - now, prefer=decision.objective, bad=frozenset(self.bad))
        new = replan(ex.plan, ex.cand, req, solver=ex.spec.planner.solver)
        if not (new.feasible and new.cost_usd <= req.budget_left_usd) and req.convergence_factor > 1.0:
            # Stopping gives up the target, and the observed convergence is the noisiest signal
            # (accuracy wobbles most near its plateau): stop only if the rest does not fit even at
            # the profile's convergence. Going on cannot overspend: the hard cap still holds.
            hopeful = replan(ex.plan, ex.cand, replace(req, convergence_factor=1.0), solver=ex.spec.planner.solver)
            if hopeful.feasible and hopeful.cost_usd <= req.budget_left_usd:
                new = hopeful
        self.schedule_prices = dict(req.prices_usd_per_h)
        first = (new.stages[0].hardware, new.stages[0].batch_size * new.stages[0].workers) if new.stages else None
        fits_budget = new.cost_usd <= req.budget_left_usd
        current = (ex.hw, ex.trainer.batch_size)
        outcome = self.policy.after_replan(current, first, new.feasible, fits_budget, decision.reason)
        record = {"reason": decision.reason, "action": outcome.action.value, "old_cost_usd": old_left_usd,
                  "new_cost_usd": new.cost_usd, "old_wall_s": old_left_s, "new_wall_s": new.wall_s,
                  "feasible": new.feasible, "stages": [f"{s.hardware} b{s.batch_size}" for s in new.stages],
                  "step_factor": {h: round(f, 3) for h, f in sorted(req.step_factor.items())}}
        ex.event("replan", **record)
        ex.meter.event("replan", ex.hw, ex.stage_name,
                       **{k: v for k, v in record.items() if k not in ("stages", "step_factor")})
        ex.log(f"replan at {now:.1f} s: {outcome.reason} (predicted rest ${old_left_usd:.3g} / {old_left_s:.1f} s "
               f"-> ${new.cost_usd:.3g} / {new.wall_s:.1f} s)")
        if outcome.action == Action.CONTINUE:
            self.policy.acknowledge(decision)
            return None
        self.policy.adapted(now)
        self.last = None
        if outcome.action == Action.STOP:
            return "budget"
        if first is not None and ex.change_over_budget(first[0]):
            ex.event("replan_unaffordable", reason="the checkpoint and move do not fit the budget left")
            return "budget"
        # the rollback point: the state just before the change
        ex.checkpoint("before adaptation")
        state = {"trainer": ex.trainer.state_dict(), "run": {
            "stage": ex.stage_i, "stage_samples": ex.stage_done, "progress": ex.progress, "hardware": ex.hw}}
        buf = io.BytesIO()
        torch.save(state, buf)
        atomic_write_bytes(self.rollback_path, buf.getvalue())
        self.rollback_stages = list(ex.stages)
        self.rollback_embedded, self.embedded = self.embedded, dict(req.step_factor)
        self.loss_before = val_loss
        self.evals_since = 0
        self.changed_option = first
        ex.stages = ex.stages[:ex.stage_i] + [replace(s, index=ex.stage_i + j) for j, s in enumerate(new.stages)]
        ex.stage_done = 0
        ex.apply_stage()
        ex.checkpoint("after adaptation")  # resume and preemption restore to the new plan, here
        return None

