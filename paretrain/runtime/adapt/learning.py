"""The run learns as it goes: its own learning curve, refitted from its evaluations.

At an evaluation the run's points so far, (samples seen, target metric), resumes included
(``RunState.curve_points``, kept in each checkpoint; a run from the profile's checkpoint starts
with the truncated run's points, ``paretrain.runtime.run.reuse``), are fitted by the planner's learning-curve
model (``paretrain.planner.measure.curves.fit_curve``: pow4, mmf4 and exp3 with bootstrap
intervals). A ``Refit`` holds the P10 / P50 / P90 of the samples at which the curve reaches the
candidate's level. ``RunCurve.observe`` sets it against what the schedule expects (the plan's
``samples_interval``) and against the most samples the run can still train, for the policy
(``paretrain.runtime.adapt.policy``: REPLAN when the prediction leaves the plan's interval, STOP
when even its optimistic end is out of reach).

When: at fixed counts of points (``refit_due``), so that a resumed run refits where an
uninterrupted one would: from ``MIN_POINTS`` evaluations on, then every ``REFIT_EVERY``
evaluations at most, sooner while the curve is short (once a quarter more points came in than
the last refit had): 6, 8, 10, 13, 17, 22, 27, 32, ...
A refit (``fit_curve`` and ``samples_to``) takes about a quarter of a second on an idle 2-core
machine (median 0.26 s, 0.16-1.4 s, over the built-in workloads' recorded curves cut at 8 to 20
points: ``benchmarks/curve_fits.py``), a second or more on a busy one: a run that evaluates every second or two would spend about as
long refitting as training if it refitted at each evaluation. This schedule refits a run of N
evaluations about ``log_1.25`` times while its curve is young and N / ``REFIT_EVERY`` after.
On a local offer the refit's real seconds are held hardware time, reserved before it and
charged after it; the virtual clock of an emulated offer charges what the plan models (steps,
evaluations, checkpoints), which has no refit in it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from paretrain.planner.measure.curves import Curve, fit_curve
from paretrain.planner.plan.plan import Candidate
from paretrain.runtime.adapt.policy import CurveObservation, Triple

__all__ = ["FACTOR_MAX", "FACTOR_MIN", "MIN_POINTS", "REFIT_EVERY", "Refit", "RunCurve", "refit_due"]

#: evaluations before the first refit (the curve model fits from 4; 6 leave it a held-back tail)
MIN_POINTS = 6
#: the most evaluations between two refits
REFIT_EVERY = 5
#: the bounds of the convergence factor a curve replan sends (beyond them the curve is
#: extrapolating far past its points, and the out-of-reach rule is the one to judge)
FACTOR_MIN, FACTOR_MAX = 0.2, 5.0


def refit_due(points: int) -> bool:
    """Whether a run with ``points`` evaluations refits its curve now (the module docstring's
    schedule, a function of the count alone).

    >>> [n for n in range(40) if refit_due(n)]
    [6, 8, 10, 13, 17, 22, 27, 32, 37]
    """
    n = MIN_POINTS
    while n < points:
        n += min(REFIT_EVERY, max(1, math.ceil(n / 4)))
    return n == points


@dataclass(frozen=True)
class Refit:
    """The run's curve fitted at ``samples`` to ``points`` evaluations; ``to_target``: P10 / P50 /
    P90 of the samples (from the run's start) at which it reaches the candidate's level;
    ``previous``: the same at the run's refit before this one (None: this is its first)."""

    samples: int
    points: int
    to_target: Triple
    fit_s: float
    curve: Curve
    previous: Triple | None = None


class RunCurve:
    """The refit, and what the schedule expects of it."""

    def __init__(self, cand: Candidate, direction: str, max_samples: int, every: int | None = None) -> None:
        self.cand, self.direction, self.max_samples = cand, direction, max_samples
        #: the samples between the run's evaluations: it stops at the first that reaches the
        #: target (``Curve.samples_to``'s ``every``); None: at the curve's crossing
        self.every = every
        iv = cand.samples_interval
        #: the plan's P10 / P50 / P90 of the samples to the target
        self.planned: Triple | None = None if iv is None else (iv.p10, iv.p50, iv.p90)
        #: the same, that the current schedule was made with: the plan's, then a curve replan's
        self.expected = self.planned
        self.fit_s = 0.0  # how long the last refit took

    def refit(self, points: tuple[tuple[int, float], ...], previous: Triple | None = None) -> Refit | None:
        """Fit the curve to ``points`` (``previous``: the last refit's samples to the target);
        None when the model cannot fit them yet."""
        t0 = time.perf_counter()
        curve = fit_curve(points, self.direction)
        self.fit_s = time.perf_counter() - t0
        if curve is None:
            return None
        samples = int(points[-1][0]) if points else 0
        # no cap: a P50 past target.max_samples is a run slower than planned (a replan), which
        # ``observe`` judges against the samples the run may still train
        to_target = curve.samples_to(self.cand.level, going_on=True, every=self.every)
        return Refit(samples, len(points), to_target, self.fit_s, curve, previous)

    def convergence(self, to_target: Triple) -> float:
        """The samples to the target the curve predicts (P50) over the plan's: the replan's
        convergence factor, kept within [``FACTOR_MIN``, ``FACTOR_MAX``]."""
        if self.planned is None or not self.planned[1] > 0 or not math.isfinite(to_target[1]):
            return 1.0
        return min(max(to_target[1] / self.planned[1], FACTOR_MIN), FACTOR_MAX)

    def expect(self, to_target: Triple) -> None:
        """A replan took ``to_target`` into account: the schedule expects it from now on."""
        self.expected = to_target

    def observe(
        self,
        refit: Refit,
        *,
        samples: int,
        budget_left_usd: float,
        samples_per_s: float,
        usd_per_s: float,
        level: float,
        metric: str,
    ) -> CurveObservation:
        """The refit against the run's limits: the samples the budget left buys (at the current
        stage's observed speed, ``samples_per_s``, and the price now, ``usd_per_s``) and
        ``target.max_samples``."""
        left = max(budget_left_usd, 0.0)
        buys = samples + left / usd_per_s * samples_per_s if usd_per_s > 0 else math.inf
        reach = min(buys, float(self.max_samples))
        by = "target.max_samples" if self.max_samples <= buys else "the budget left"
        go_on_s = max(reach - samples, 0.0) / samples_per_s if samples_per_s > 0 else 0.0
        _, mid, best = refit.curve.predict(max(reach, samples))
        return CurveObservation(
            samples=samples,
            points=refit.points,
            planned_samples=self.cand.samples,
            to_target=refit.to_target,
            previous=refit.previous,
            expected=self.expected,
            reach=reach,
            reach_by=by,
            go_on_s=go_on_s,
            go_on_usd=min(left, go_on_s * usd_per_s),
            metric=metric,
            level=level,
            target=self.cand.level,
            best=(mid, best),
        )
