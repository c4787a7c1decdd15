r"""Prediction intervals: P10, P50 and P90 of a candidate's cost and wall time, and how sure its
samples are to reach its level.

Three sources of uncertainty, each a log-normal factor on what the plan predicts:

- **speed** ``f_t`` per offer: the spread of the profile's interleaved passes over each batch size
  (relative standard deviation of the per-pass mean step times, averaged over batch sizes;
  ``StepSample.spread``), never below ``SPEED_FLOOR``; ``MODELED_SPREAD`` for a catalog offer
  whose speed is modeled from peak FLOP/s rather than measured. A slow spell of a shared machine
  lasts many steps, so the spread of pass means (not their standard error) is what a run meets.
  The passes are seconds apart, a run starts minutes later: ``SPEED_FLOOR`` (8%) is the drift
  between a profile and its runs measured on a shared 2-vCPU machine (``benchmarks/plan_fidelity``:
  realized over profiled step time 0.89-1.20 across 18 runs, median 1.07; ``runtime_overhead``:
  blocks of the same bare step 17% apart).
- **convergence** ``f_E``: two estimates of one spread, pooled by their degrees of freedom. The
  residuals of the fit E(B) = E_min (1 + B / B_noise) across the measured batch sizes (the sum of
  squared log(measured / fitted), n - 2 degrees of freedom), and the *crossing spread* of the level
  (``crossing_spread``): how sharply each measured run crossed it, from the evaluation's own noise
  (successive evaluations of the run, one degree of freedom per difference, ``crossing_dof``) over
  the curve's slope in log samples there, and the granularity of evaluating every ``eval_every``
  samples. Pooled, s^2 = (sum of squared residuals + k c^2) / (n - 2 + k) for a crossing spread c
  on k degrees of freedom; never below ``FIT_FLOOR``; ``max(DEFAULT_FIT_SPREAD, c)`` with two
  points (no residual at all). Three batch sizes leave the residuals one degree of freedom: alone,
  they call a lucky fit exact, or an unlucky one (two batch sizes crossing at the same evaluation)
  three times as uncertain as it is; the curves' evaluations steady them either way. Measured with
  the residuals alone as a floor, the LM's 80% intervals held 18 runs of 18 (too wide, +-25%
  of P50); pooled, 15 of 18 (+-13-16%).
- **noise scale** ``f_B``: the standard error of B_noise from the same weighted least-squares fit
  (delta method on E_min and the slope), capped at ``NOISE_CAP``.

They are propagated by sampling (``DRAWS`` draws of standard normals from a fixed seed, so the
same plan gives the same bytes): a draw scales each stage's samples by
``f_E (1 + B / (B_noise f_B)) / (1 + B / B_noise)`` and its time by that ratio times the speed
factor of its offer (one draw per offer, shared by its stages: a slow machine is slow all
run); cost follows time at each stage's own dollars per second; the run's fixed part (switches)
is kept as predicted. A schedule that starts from the profile's checkpoint needs a drawn E_min
less the progress the checkpoint holds, which is known: each stage carries its share of that
progress (``StageDraw.reused``, in its samples), and its samples drawn are
``(S + reused) ratio - reused``, so the uncertainty of the whole work is kept on the work left.
P50 is the median of the draws; the plan's point prediction stays the model
at the fitted values. ``p_reach`` is the share of draws whose samples needed fit the samples the
schedule plans (the run goes on past them until its target or ``target.max_samples``, so the
cost and time intervals count that too).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "DEFAULT_FIT_SPREAD",
    "DRAWS",
    "FIT_FLOOR",
    "MODELED_SPREAD",
    "NOISE_CAP",
    "SPEED_FLOOR",
    "Interval",
    "StageDraw",
    "Uncertainty",
    "candidate_intervals",
    "convergence_spread",
    "crossing_dof",
    "crossing_spread",
]

SPEED_FLOOR = 0.08
MODELED_SPREAD = 0.25
FIT_FLOOR = 0.03
DEFAULT_FIT_SPREAD = 0.15
NOISE_CAP = 1.0
DRAWS = 2000


@dataclass(frozen=True, slots=True)
class Interval:
    """P10, P50 and P90 of a predicted quantity."""

    p10: float
    p50: float
    p90: float

    def contains(self, x: float) -> bool:
        return self.p10 <= x <= self.p90

    def quantile(self, q: float) -> float:
        """A quantile between the three (log-normal through P10 and P90 outside them)."""
        if self.p10 <= 0 or self.p90 <= 0:
            return self.p90 if q >= 0.5 else self.p10
        z10 = 1.2815515655446004
        sigma = (math.log(self.p90) - math.log(self.p10)) / (2 * z10)
        mu = math.log(self.p50) if self.p50 > 0 else (math.log(self.p10) + math.log(self.p90)) / 2
        return math.exp(mu + sigma * _z(q))

    def to_dict(self) -> dict[str, float]:
        return {"p10": self.p10, "p50": self.p50, "p90": self.p90}


def _z(q: float) -> float:
    """The standard normal quantile (Acklam's rational approximation, |error| < 1.2e-9)."""
    if not 0 < q < 1:
        raise ValueError(f"`0 < q < 1` must hold, but got {q}")
    a = (
        -3.969683028665376e01,
        2.209460984245205e02,
        -2.759285104469687e02,
        1.383577518672690e02,
        -3.066479806614716e01,
        2.506628277459239e00,
    )
    b = (
        -5.447609879822406e01,
        1.615858368580409e02,
        -1.556989798598866e02,
        6.680131188771972e01,
        -1.328068155288572e01,
    )
    c = (
        -7.784894002430293e-03,
        -3.223964580411365e-01,
        -2.400758277161838e00,
        -2.549732539343734e00,
        4.374664141464968e00,
        2.938163982698783e00,
    )
    d = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00)
    if q < 0.02425:
        r = math.sqrt(-2 * math.log(q))
        return (((((c[0] * r + c[1]) * r + c[2]) * r + c[3]) * r + c[4]) * r + c[5]) / (
            (((d[0] * r + d[1]) * r + d[2]) * r + d[3]) * r + 1
        )
    if q > 1 - 0.02425:
        return -_z(1 - q)
    r = q - 0.5
    t = r * r
    return (
        (((((a[0] * t + a[1]) * t + a[2]) * t + a[3]) * t + a[4]) * t + a[5])
        * r
        / (((((b[0] * t + b[1]) * t + b[2]) * t + b[3]) * t + b[4]) * t + 1)
    )


@dataclass(frozen=True, slots=True)
class Uncertainty:
    """Log-scale standard deviations of one choice's convergence (E_min and B_noise)."""

    e_min: float
    b_noise: float


@dataclass(frozen=True, slots=True)
class StageDraw:
    """One stage as predicted: its offer, global batch, samples, seconds, dollars, the
    fitted B_noise it was planned with and the speed spread of its offer."""

    hardware: str
    batch: int
    samples: float
    time_s: float
    cost_usd: float
    b_noise: float
    speed_spread: float
    reused: float = 0.0  # the stage's share of the checkpoint's progress the run starts from, in samples


def crossing_spread(curve: Sequence[tuple[int, float]], level: float, reached: int, eval_every: int) -> float:
    """Log-scale spread of the samples at which a run like this one first reaches ``level``.

    ``curve`` is the run's (samples, score) trace (higher is better), ``reached`` the samples of
    its first evaluation at or above ``level``. The evaluation noise is the standard deviation of
    successive differences over the trace's second half over sqrt(2) (progress there is slow, so
    it is mostly noise); the slope is a least-squares line of score on log samples over the
    evaluations within a factor 2.5 of ``reached``; quantization is ``eval_every / reached /
    sqrt(6)`` (two runs each stop at their first evaluation past the level). Capped at ``NOISE_CAP``.
    """
    if reached <= 0 or len(curve) < 3:
        return 0.0
    quant = (eval_every / reached) / math.sqrt(6.0) if eval_every > 0 else 0.0
    tail = [v for _, v in curve[len(curve) // 2 :]]
    diffs = np.diff(np.array(tail, dtype=float))
    noise = float(np.std(diffs) / math.sqrt(2.0)) if len(diffs) >= 2 else 0.0
    near = [(math.log(s), v) for s, v in curve if s > 0 and reached / 2.5 <= s <= reached * 2.5]
    if len(near) >= 2 and noise > 0:
        x = np.array([p[0] for p in near])
        y = np.array([p[1] for p in near])
        slope = float(np.polyfit(x, y, 1)[0]) if np.ptp(x) > 0 else 0.0
        cross = noise / slope if slope > 0 else NOISE_CAP
    else:
        cross = 0.0
    return float(min(math.sqrt(cross**2 + quant**2), NOISE_CAP))


def crossing_dof(curve: Sequence[tuple[int, float]]) -> int:
    """Degrees of freedom of ``crossing_spread``'s evaluation noise: the successive differences of
    the trace's second half."""
    return max(len(curve) - len(curve) // 2 - 1, 0) if len(curve) >= 3 else 0


def convergence_spread(
    points: Sequence[tuple[int, int]],
    e_min: float,
    b_noise: float,
    crossing: float = 0.0,
    crossing_dof: int = 0,
) -> Uncertainty:
    """The spread of a fit E(B) = e_min (1 + B / b_noise) to its measured points, pooled with the
    level's crossing spread ``crossing`` on ``crossing_dof`` degrees of freedom (the module
    docstring); with ``crossing_dof`` 0, never below ``crossing``."""
    if len(points) < 2 or e_min <= 0:
        return Uncertainty(max(DEFAULT_FIT_SPREAD, crossing), NOISE_CAP)
    b = np.array([p[0] for p in points], dtype=float)
    e = np.array([p[1] for p in points], dtype=float)
    fitted = e_min * (1.0 + b / b_noise)
    resid = np.log(e / fitted)
    dof = len(points) - 2
    if dof <= 0:
        s = max(DEFAULT_FIT_SPREAD, crossing)
    elif crossing > 0 and crossing_dof > 0:
        s = math.sqrt((float(np.sum(resid**2)) + crossing_dof * crossing**2) / (dof + crossing_dof))
    else:
        s = max(float(np.sqrt(np.sum(resid**2) / dof)), crossing)
    s = max(s, FIT_FLOOR)
    # delta method on the (relative) weighted least squares E = p + q B: cov = s^2 (A^T A)^-1
    A = np.stack([np.ones_like(b), b], axis=1) / e[:, None]
    try:
        cov = (s**2) * np.linalg.inv(A.T @ A)
    except np.linalg.LinAlgError:
        return Uncertainty(s, NOISE_CAP)
    p, q = e_min, e_min / b_noise if b_noise < 1e12 else 0.0
    if q <= 0:
        return Uncertainty(s, NOISE_CAP)
    rel = math.sqrt(max(cov[0, 0] / p**2 + cov[1, 1] / q**2 - 2 * cov[0, 1] / (p * q), 0.0))
    return Uncertainty(s, min(rel, NOISE_CAP))


def candidate_intervals(
    stages: Sequence[StageDraw], unc: Uncertainty, fixed_s: float = 0.0, fixed_usd: float = 0.0, seed: int = 0
) -> tuple[Interval, Interval, float, Interval]:
    """(cost, wall time, p_reach, samples needed) of a schedule: see the module docstring.
    ``fixed_s``/``fixed_usd`` are the schedule's parts no factor scales (moves between offers)."""
    rng = np.random.default_rng(seed)
    n = DRAWS
    z_e, z_b = rng.standard_normal(n), rng.standard_normal(n)
    offers = sorted({s.hardware for s in stages})
    z_t = {h: rng.standard_normal(n) for h in offers}
    f_e = np.exp(unc.e_min * z_e)
    f_b = np.exp(unc.b_noise * z_b)
    time = np.full(n, fixed_s)
    cost = np.full(n, fixed_usd)
    needed = np.zeros(n)
    planned = 0.0
    for s in stages:
        base = 1.0 + s.batch / s.b_noise
        ratio = f_e * (1.0 + s.batch / (s.b_noise * f_b)) / base
        f_t = np.exp(max(s.speed_spread, SPEED_FLOOR) * z_t[s.hardware])
        drawn = s.samples * ratio
        if s.reused > 0:  # the whole stage drawn, less what the checkpoint trained
            drawn = np.maximum((s.samples + s.reused) * ratio - s.reused, 0.0)
            ratio = drawn / s.samples if s.samples > 0 else np.ones(n)  # none left: its fixed time
        time += s.time_s * ratio * f_t
        cost += s.cost_usd * ratio * f_t
        needed += drawn
        planned += s.samples
    p_reach = float(np.mean(needed <= planned * (1 + 1e-9)))
    return _deciles(cost), _deciles(time), p_reach, _deciles(needed)


def _deciles(draws: np.ndarray) -> Interval:
    """The 10th, 50th and 90th percentiles of ``draws``."""
    return Interval(*(float(v) for v in np.quantile(draws, [0.1, 0.5, 0.9])))
