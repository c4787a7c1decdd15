r"""Convergence from one truncated run per config: the learning curve and the gradient noise
measured along it give ``E(B) = E_min (1 + B / B_noise)`` for every level.

The full measurement trains each config to the top level at three or more batch sizes and fits
E(B) across them (``paretrain.planner.measure.fits.fit_convergence``). A truncated run trains each
config once, at one batch size ``B0``, for part of the way, evaluating as it goes and taking
two-batch gradient-noise samples along the same run. Then, for each level:

1. ``S`` = samples at ``B0`` to reach the level, from the run's learning curve
   (``paretrain.planner.measure.curves``): measured where the run reached it, extrapolated (and
   marked so) where it did not; its P10 / P90 give the level's spread.
2. ``B_noise`` = the harmonic mean of the measured noise scale ``B_simple(p)`` over the level's
   ideal progress ``[0, E_min]``: the noise scale grows as training goes on, and a fixed batch pays
   ``1 + B0 / B(p)`` at every point ``p``, so its average penalty is the harmonic mean's. With no
   trend in the samples, their geometric mean stands for the whole run.
3. ``E_min = S / (1 + B0 / B_noise)``; steps 2 and 3 are iterated to a fixed point, since the
   progress range of step 2 depends on ``E_min``.

The McCandlish form then carries the level to other batch sizes. The interval of ``S`` becomes
the fit's ``crossing`` spread (log scale), which the plan's intervals already carry
(``paretrain.planner.measure.uncertainty``), with one degree of freedom per point beyond the
curve's parameters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from paretrain.planner.measure.curves import Curve
from paretrain.planner.measure.fits import (
    B_NOISE_CAP,
    B_NOISE_FLOOR,
    ConvergenceFit,
    NoiseCurve,
    fit_noise_curve,
)
from paretrain.planner.measure.measurements import NoiseSample

__all__ = ["FAR", "Z90", "TruncatedLevel", "level_from_curve", "noise_scale"]

Z90 = 1.2815515655446004
#: fixed-point iterations of steps 2 and 3 (the change after a few is far below the spread)
ITERATIONS = 8
#: the widest a level's P90 may lie from its P50, as a factor (``level_from_curve``)
FAR = 10.0


@dataclass(frozen=True, slots=True)
class TruncatedLevel:
    """One level's convergence from a truncated run, and whether it was extrapolated."""

    fit: ConvergenceFit
    extrapolated: bool
    samples: tuple[float, float, float]  # P10, P50, P90 of samples to the level at the run's batch


def noise_scale(samples: Sequence[NoiseSample]) -> tuple[NoiseCurve | None, float]:
    """The noise curve along a run and the geometric mean of its usable B_simple samples (0
    when there is none)."""
    pts = [(s.progress_samples, s.b_simple) for s in samples if math.isfinite(s.b_simple) and s.b_simple > 0]
    geo = float(math.exp(np.mean([math.log(b) for _, b in pts]))) if pts else 0.0
    return fit_noise_curve(pts), geo


def _harmonic(curve: NoiseCurve | None, flat: float, e_min: float) -> float:
    """Step 2's harmonic mean of the noise curve over ``[0, e_min]``, the curve held at its first
    sample's value before it (``p_min``).

    Not followed before ``p_min``: the power law rests on the run's few samples, its slope may
    sit at the clip bound, and toward ``p = 0`` it falls toward zero, so that a smaller ``E_min``
    gave a smaller B_noise and that a smaller ``E_min`` again, until both collapsed. On MNIST-1D's
    example with the workload's seed 1, a slope of 2 from samples at 3,072 and 6,144 gave
    B_noise = 6e-7, and the plan's stages divided by zero. Early training has the smaller noise
    scale, so holding the first sample's value slightly understates the earliest batch penalty."""
    if curve is None:
        return flat
    grid = [max(e_min * (i + 0.5) / 16, curve.p_min) for i in range(16)]
    return min(max(1.0 / float(np.mean([1.0 / curve.at(p) for p in grid])), B_NOISE_FLOOR), B_NOISE_CAP)


def level_from_curve(
    curve: Curve, level: float, batch_size: int, noise: Sequence[NoiseSample], max_batch: int
) -> TruncatedLevel | None:
    """A level's ``ConvergenceFit`` from a truncated run's curve (fitted at ``batch_size``) and its
    noise samples; None when the curve never reaches the level (its median does not).
    ``max_batch`` is the largest global batch the plan may use it at."""
    lo, mid, hi = curve.samples_to(level)
    if not math.isfinite(mid):
        return None
    trend, flat = noise_scale(noise)
    if flat <= 0:
        flat = B_NOISE_CAP  # no gradient-noise sample: no batch penalty can be measured
    flat = max(flat, B_NOISE_FLOOR)
    b_noise = flat
    e_min = mid
    for _ in range(ITERATIONS):
        e_min = mid / (1.0 + batch_size / b_noise)
        b_noise = _harmonic(trend, flat, e_min)
    e_min = mid / (1.0 + batch_size / b_noise)
    # the wider side of the level's interval, log scale; a P90 that never reaches it: a factor 2;
    # a finite one at most ``FAR``: beyond it the extrapolation says nothing more (a model's far
    # tail can put P90 at 1e200 samples, and the spread's exp would overflow the intervals)
    up = math.log(min(hi / mid, FAR)) if math.isfinite(hi) else math.log(2.0)
    spread = max(up, math.log(mid / lo) if lo > 0 else 0.0) / Z90
    dof = max(len(curve.points) - 4, 1)
    fit = ConvergenceFit(
        float(e_min),
        float(b_noise),
        ((batch_size, round(mid)),),
        max(max_batch, batch_size),
        crossing=float(spread),
        crossing_dof=dof,
        extrapolated=curve.extrapolates(mid),
    )
    return TruncatedLevel(fit, fit.extrapolated, (float(lo), float(mid), float(hi)))
