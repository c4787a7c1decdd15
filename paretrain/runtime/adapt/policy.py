"""The runtime's decisions, apart from doing them: each observation gets one answer.

Pure: no torch, no clocks, no files. The executor measures, builds an ``Observation`` at each
evaluation, asks ``Policy.decide`` and carries the ``Decision`` out.

Order of precedence:

1. **Rollback**: the first evaluations after an adaptation show validation loss worse than
   just before it by more than ``rollback_threshold`` (relative): go back to the checkpoint
   taken before it, mark that option bad, replan.
2. **Out of reach** (fires at once, cooldown or not): the run's own learning curve
   (``CurveObservation``, refitted by ``paretrain.runtime.adapt.learning``) says that even
   its optimistic end, the P10 of the samples to the target, lies beyond the most samples the
   run can still train: the fewer of what the budget left buys and ``target.max_samples``
   (a curve that plateaus short of the target needs infinitely many): STOP. Whichever limit
   comes first ends the run anyway, so going on would only spend. Not too early: only once
   the curve has ``min_points`` evaluations (10), the run is past ``min_fraction`` (half) of
   its planned samples, and (``confirm``) the refit before said so too. A short curve's asymptote
   is the least certain of its parameters, and its bootstrap can be overconfident: a noisy
   accuracy curve (MNIST-1D, evaluations 0.02 apart) fitted at 8 points put the whole
   ensemble below a target the run reached at 3x those samples; the next refit did not.
3. **Projected overrun** (fires at once, cooldown or not): spent + the remaining work at the
   observed throughput and the current prices would pass the budget, or its end the deadline.
   A price peak with deadline slack is waited out (PAUSE); otherwise REPLAN.
4. **Price peak**: the price is above the plan's by more than ``pause_threshold`` and the
   deadline leaves room to wait until it falls: PAUSE (storage charged only).
5. **Cooldown**: within ``cooldown_s`` of the last adaptation nothing else changes.
6. **Prices**: an offer's price moved by more than ``price_threshold`` (either way) since the
   schedule was made: REPLAN. Prices are known exactly, so no detector waits for evidence.
7. **Learning**: the run's curve (``min_points`` evaluations or more) puts the samples to the
   target, P10-P90, wholly outside the interval the schedule expects (the plan's, then the
   last such replan's), on the same side as the refit before (``confirm``): REPLAN, the
   convergence scaled by the curve's P50 over the plan's (``paretrain.runtime.adapt.learning``).
   A P50 the curve never reaches is left to rule 2.
8. **Drift**: a CUSUM alarm on spend rate (up), throughput (down) or convergence (slower):
   REPLAN.
9. **Slack**: with ``prefer: time``, spending under the plan buys speed: REPLAN for time.
10. Otherwise CONTINUE.

A replan's result is classified by ``after_replan``: RESIZE_BATCH (same offer, new batch),
SWITCH (new offer), CONTINUE (nothing better) or STOP (no schedule reaches the target within
the budget left: stop now rather than spend on a run that cannot finish).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from paretrain.runtime.adapt.drift import Detector

__all__ = ["Action", "CurveObservation", "Decision", "Observation", "Policy", "Triple"]


class Action(str, Enum):  # noqa: UP042 (str(member) prints Action.X in logs; StrEnum would not)
    CONTINUE = "continue"
    RESIZE_BATCH = "resize_batch"
    REPLAN = "replan"
    SWITCH = "switch"
    PAUSE = "pause"
    STOP = "stop"


#: P10, P50 and P90 of a predicted quantity
Triple = tuple[float, float, float]


@dataclass(frozen=True)
class CurveObservation:
    """The run's own learning curve at a refit, in samples counted from the run's start."""

    samples: int  # trained so far
    points: int  # evaluations the curve was fitted to
    planned_samples: int  # the candidate's schedule
    to_target: Triple  # samples at which the curve reaches the target (inf: never)
    previous: Triple | None  # the same at the refit before (None: this is the run's first)
    expected: Triple | None  # what the schedule expects of the same: the plan's, then a curve replan's
    reach: float  # the most samples the run can still train (the fewer of the two limits)
    reach_by: str  # which limit: "target.max_samples" or "the budget left"
    go_on_s: float  # how long training on to ``reach`` would take
    go_on_usd: float  # and what it would cost
    metric: str
    level: float  # the target metric now
    target: float  # the candidate's level
    best: tuple[float, float]  # the level the curve predicts at ``reach``: P50 and its optimistic end


@dataclass(frozen=True)
class Observation:
    t_s: float
    spent_usd: float
    budget_usd: float
    deadline_s: float
    spend_rate_ratio: float  # observed $/s over the plan's, since the last observation
    throughput_ratio: float  # observed samples/s over the plan's
    convergence_ratio: float  # samples used over the plan's samples for the accuracy seen (>1: slower)
    projected_cost_usd: float  # spent + remaining work at observed throughput and current prices
    projected_end_s: float
    price_ratio: float  # current price over the plan's, current offer
    pause_until_s: float | None  # when the price is back under the pause threshold, if known
    remaining_s: float  # remaining work at observed throughput
    val_loss: float
    evals_since_adaptation: int = 1 << 30
    loss_before_adaptation: float | None = None
    prefer: str = "cost"
    price_change: float = 1.0  # the largest move of an offer's price since the last (re)plan, as a ratio
    price_change_offer: str = ""
    curve: CurveObservation | None = None  # at an evaluation that refitted the run's curve


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str = ""
    objective: str = "cost"
    rollback: bool = False
    detail: dict[str, Any] = field(default_factory=dict)


def _side(to_target: Triple, expected: Triple) -> int:
    """Where a curve's P10-P90 of the samples to the target lies against the expected P10-P90:
    +1 wholly above (slower), -1 wholly below (faster), 0 overlapping or a P50 never reached."""
    lo, mid, hi = to_target
    a, p50, b = expected
    if not math.isfinite(mid) or p50 <= 0:
        return 0
    return int(lo > b) - int(hi < a)


#: Each drift detector's answer to the latest observation: +1 a rise, -1 a fall, 0 none.
Alarms = dict[str, int]


class Policy:
    """Answers observations; keeps its detectors and the time of the last adaptation."""

    def __init__(
        self,
        *,
        threshold: float = 6.0,
        window: int = 10,
        cooldown_s: float = 10.0,
        pause_threshold: float = 0.5,
        rollback_threshold: float = 0.1,
        slack: float = 0.2,
        rollback_evals: int = 2,
        price_threshold: float = 0.2,
        min_points: int = 10,
        min_fraction: float = 0.5,
        confirm: bool = True,
    ) -> None:
        self.cooldown_s = cooldown_s
        self.min_points, self.min_fraction, self.confirm = min_points, min_fraction, confirm
        self.price_threshold = price_threshold
        self.pause_threshold = pause_threshold
        self.rollback_threshold = rollback_threshold
        self.slack = slack
        self.rollback_evals = rollback_evals
        self.detectors = {
            name: Detector(threshold=threshold, window=window)
            for name in ("spend", "throughput", "convergence")
        }
        self.last_adaptation = -math.inf
        self.slack_used = False

    def decide(self, obs: Observation) -> Decision:
        """The first of the rules that applies, in order: rollback, out of reach, projected
        overrun, price peak, cooldown, prices, learning, drift, slack; CONTINUE when none does.
        The drift detectors see every observation past the rollback check."""
        decision = self._rollback(obs)
        if decision is not None:
            return decision
        alarms = {
            "spend": self.detectors["spend"].update(obs.spend_rate_ratio),
            "throughput": self.detectors["throughput"].update(obs.throughput_ratio),
            "convergence": self.detectors["convergence"].update(obs.convergence_ratio),
        }
        rules = (
            self._out_of_reach,
            self._overrun,
            self._price_peak,
            self._cooldown,
            self._prices,
            self._learning,
            self._drift,
            self._slack,
        )
        for rule in rules:
            decision = rule(obs, alarms)
            if decision is not None:
                return decision
        return Decision(Action.CONTINUE)

    def _rollback(self, obs: Observation) -> Decision | None:
        """1. The last change made validation loss worse: go back to before it."""
        before = obs.loss_before_adaptation
        if (
            before is not None
            and obs.evals_since_adaptation <= self.rollback_evals
            and obs.val_loss > before * (1.0 + self.rollback_threshold)
        ):
            return Decision(
                Action.REPLAN,
                f"rollback: validation loss {obs.val_loss:.4f} after the change is "
                f"worse than {before:.4f} before it by more than {self.rollback_threshold:.0%}",
                rollback=True,
            )
        return None

    def out_of_reach(self, c: CurveObservation | None) -> Decision | None:
        """2. The run's curve puts the target beyond what the run can still train, even at its
        optimistic end (P10): STOP, saying where it plateaus and what going on would cost."""
        if c is None or c.points < self.min_points or c.samples < self.min_fraction * c.planned_samples:
            return None
        if c.to_target[0] <= c.reach:
            return None
        if self.confirm and (c.previous is None or c.previous[0] <= c.reach):
            return None
        needs = "never reaches it" if math.isinf(c.to_target[0]) else f"needs {c.to_target[0]:.0f} samples"
        return Decision(
            Action.STOP,
            f"{c.metric} will not reach {c.target:g}: the run's curve levels off at {c.best[0]:.4g} "
            f"(at best {c.best[1]:.4g}) by {c.reach:.0f} samples, where {c.reach_by} ends the run; "
            f"{c.level:.4g} now after {c.samples} samples; even its optimistic P10 {needs}",
            detail={"go_on_s": c.go_on_s, "go_on_usd": c.go_on_usd, "best": c.best, "to_target": c.to_target},
        )

    def _out_of_reach(self, obs: Observation, alarms: Alarms) -> Decision | None:
        return self.out_of_reach(obs.curve)

    def _can_pause(self, obs: Observation) -> bool:
        """The price is past the pause threshold and waiting for it still meets the deadline."""
        return (
            obs.price_ratio > 1.0 + self.pause_threshold
            and obs.pause_until_s is not None
            and obs.pause_until_s + obs.remaining_s <= obs.deadline_s
        )

    def _overrun(self, obs: Observation, alarms: Alarms) -> Decision | None:
        """3. The run is projected past its budget or deadline: wait out a price peak, or replan."""
        over_budget = obs.projected_cost_usd > obs.budget_usd
        over_deadline = obs.projected_end_s > obs.deadline_s
        if not (over_budget or over_deadline):
            return None
        what = "budget" if over_budget else "deadline"
        if self._can_pause(obs) and not over_deadline:
            return Decision(
                Action.PAUSE,
                f"price peak: x{obs.price_ratio:.2f} the plan's; waiting until "
                f"{obs.pause_until_s:.1f} s (deadline slack allows it)",
                detail={"until": obs.pause_until_s},
            )
        return Decision(
            Action.REPLAN,
            f"projected {what} overrun: ${obs.projected_cost_usd:.6g} of "
            f"${obs.budget_usd:.6g}, end at {obs.projected_end_s:.1f} s of {obs.deadline_s:.1f} s",
        )

    def _price_peak(self, obs: Observation, alarms: Alarms) -> Decision | None:
        """4. A price peak the deadline leaves time to wait out."""
        if not self._can_pause(obs):
            return None
        return Decision(
            Action.PAUSE,
            f"price peak: x{obs.price_ratio:.2f} the plan's; waiting until {obs.pause_until_s:.1f} s",
            detail={"until": obs.pause_until_s},
        )

    def _cooldown(self, obs: Observation, alarms: Alarms) -> Decision | None:
        """5. Too soon after the last change to make another."""
        if obs.t_s - self.last_adaptation < self.cooldown_s:
            return Decision(Action.CONTINUE, "cooldown")
        return None

    def _prices(self, obs: Observation, alarms: Alarms) -> Decision | None:
        """6. A price moved past the threshold since the schedule was made."""
        change = obs.price_change
        if change > 1.0 + self.price_threshold or change < 1.0 / (1.0 + self.price_threshold):
            return Decision(
                Action.REPLAN,
                f"price of {obs.price_change_offer} x{change:.2f} since the schedule was made",
                detail={"price_change": round(change, 4)},
            )
        return None

    def _learning(self, obs: Observation, alarms: Alarms) -> Decision | None:
        """7. The run's curve moved the samples to the target outside what the schedule expects."""
        c = obs.curve
        if c is None or c.expected is None or c.points < self.min_points:
            return None
        mid, (a, expected, b) = c.to_target[1], c.expected
        side = _side(c.to_target, c.expected)
        if side == 0 or (self.confirm and (c.previous is None or _side(c.previous, c.expected) != side)):
            return None
        return Decision(
            Action.REPLAN,
            f"the run's curve predicts {mid:.0f} samples to the target, outside the plan's "
            f"P10-P90 [{a:.0f}, {b:.0f}]",
            detail={"curve_interval": c.to_target, "ratio": mid / expected},
        )

    def _drift(self, obs: Observation, alarms: Alarms) -> Decision | None:
        """8. Throughput fell, or spend or convergence rose, against the baseline."""
        if alarms["throughput"] < 0 or alarms["spend"] > 0 or alarms["convergence"] > 0:
            which = [n for n, a in alarms.items() if (a < 0 if n == "throughput" else a > 0)]
            shifts = {n: round(self.detectors[n].shift, 3) for n in which}
            return Decision(
                Action.REPLAN,
                f"drift in {', '.join(which)} (x{', x'.join(map(str, shifts.values()))} "
                "against the baseline)",
                detail={"shift": shifts},
            )
        return None

    def _slack(self, obs: Observation, alarms: Alarms) -> Decision | None:
        """9. Money to spare and a spec that prefers time: replan once for speed."""
        if (
            obs.prefer == "time"
            and not self.slack_used
            and (
                alarms["spend"] < 0
                or alarms["throughput"] > 0
                or obs.projected_cost_usd < obs.budget_usd * (1.0 - self.slack)
            )
        ):
            self.slack_used = True
            return Decision(
                Action.REPLAN,
                f"slack: projected ${obs.projected_cost_usd:.6g} of "
                f"${obs.budget_usd:.6g}; the spec prefers time",
                objective="time",
            )
        return None

    def after_replan(
        self,
        current: tuple[str, int],
        new_first: tuple[str, int] | None,
        feasible: bool,
        fits_budget: bool,
        reason: str,
    ) -> Decision:
        """Classify a replan: the current (offer, batch) against the new first stage's."""
        if not fits_budget:
            return Decision(Action.STOP, f"{reason}: no schedule reaches the target within the budget left")
        if new_first is None or new_first == current:
            return Decision(Action.CONTINUE, f"{reason}: the plan stands")
        if new_first[0] != current[0]:
            return Decision(Action.SWITCH, f"{reason}: move to {new_first[0]} at batch {new_first[1]}")
        return Decision(Action.RESIZE_BATCH, f"{reason}: batch {current[1]} -> {new_first[1]}")

    def acknowledge(self, decision: Decision) -> None:
        """A replan found that the schedule stands: nothing changed, so no cooldown starts and
        the other detectors keep their baselines (a drift that starts now is still caught); the
        detectors that alarmed learn the level the replan took into account."""
        for name in decision.detail.get("shift", {}):
            self.detectors[name].reset()

    def adapted(self, t_s: float) -> None:
        """An adaptation took effect at ``t_s``: start the cooldown and learn a new baseline."""
        self.last_adaptation = t_s
        for d in self.detectors.values():
            d.reset()
