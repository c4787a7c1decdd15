r"""Convergence from one truncated run per config: the learning curve and the gradient noise
measured along it give ``E(B) = E_min (1 + B / B_noise)`` for every level.

The full measurement trains each config to the top level at three or more batch sizes and fits
E(B) across them (``paretrain.planner.measure.fits.fit_convergence``). A truncated run trains each
config once, at one batch size ``B0``, for part of the way, evaluating as it goes and taking
two-batch gradient-noise samples along the same run. Then, for each level:

1. ``S`` = samples at ``B0`` to reach the level, from the run's learning curve
   (``paretrain.planner.measure.curves``): measured where the run reached it, extrapolated (and
   marked so) where it did not; its P10 / P90 give the level's spread.
2. ``E_min`` = the ideal samples (those a batch far below the noise scale would need) that
   the run's ``S`` samples at ``B0`` amount to: each sample seen at ``B0`` is worth
   ``1 / (1 + B0 / B(s))`` of one, where ``B(s)`` is the noise scale measured along the run at
   ``s`` samples seen, so ``E_min = integral_0^S ds / (1 + B0 / B(s))``. ``B(s)`` follows the
   samples' trend, held at its first sample's value before it; with no trend in the samples,
   their geometric mean stands for the whole run.
3. ``B_noise = B0 / (S / E_min - 1)``: the one noise scale with which ``E(B0) = S`` exactly.

   Earlier versions solved steps 2 and 3 as a fixed point: B_noise the harmonic mean of the noise
   curve over ideal progress ``[0, E_min]`` and ``E_min = S / (1 + B0 / B_noise)``. But the
   curve is measured against samples seen at ``B0``, not ideal progress; where the noise scale
   is small early (a steep trend), ideal progress runs far behind samples seen, and the fixed
   point read the curve at its earliest values for the whole level. On MNIST-1D's example with
   the workload's seeds 1 and 3 it gave B_noise = 6e-7 and 3.5 and E_min a twentieth of the
   samples' worth, while the checkpoint the run starts from was worth 48,039 ideal samples by
   the stages' own noise model: the run was planned 64 samples (it trained 8,320), or its stages
   divided by zero.

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

__all__ = ["FAR", "GRID", "Z90", "TruncatedLevel", "level_from_curve", "noise_scale", "worth"]

Z90 = 1.2815515655446004
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


#: midpoints of the integral of step 2 (``_ideal``)
GRID = 256


def worth(noise: Sequence[NoiseSample], samples: float, batch_size: int) -> float:
    """Step 2 for any point of the run: the ideal samples that its first ``samples`` samples,
    seen at ``batch_size`` with the noise scale of ``noise`` along it, amount to. The plan counts
    a run that starts from the truncated run's checkpoint as this far along
    (``paretrain.planner.program.reuse``), by the same measure as its levels' ``E_min``: a level
    past the checkpoint is always work still to do."""
    trend, flat = noise_scale(noise)
    return _ideal(trend, _flat(flat), samples, batch_size)


def _flat(geo: float) -> float:
    """The noise scale without a trend: the samples' geometric mean, ``B_NOISE_CAP`` with none
    (no batch penalty can be measured), never below ``B_NOISE_FLOOR``."""
    return max(geo if geo > 0 else B_NOISE_CAP, B_NOISE_FLOOR)


def _ideal(curve: NoiseCurve | None, flat: float, samples: float, batch_size: int) -> float:
    """Step 2: the ideal samples that ``samples`` seen at ``batch_size`` amount to."""
    if curve is None:
        return samples / (1.0 + batch_size / flat)
    s = (np.arange(GRID) + 0.5) * (samples / GRID)
    b = np.array([curve.at(max(x, curve.p_min)) for x in s])
    b = np.clip(b, B_NOISE_FLOOR, B_NOISE_CAP)
    return float(np.sum(1.0 / (1.0 + batch_size / b)) * (samples / GRID))


def level_from_curve(
    curve: Curve,
    level: float,
    batch_size: int,
    noise: Sequence[NoiseSample],
    max_batch: int,
    every: int | None = None,
    cap: int | None = None,
) -> TruncatedLevel | None:
    """A level's ``ConvergenceFit`` from a truncated run's curve (fitted at ``batch_size``) and its
    noise samples; None when the curve's median run does not stop at the level within ``cap``.
    ``max_batch`` is the largest global batch the plan may use it at; ``every``, the samples
    between the run's evaluations: the run stops at the first that measures the level
    (``paretrain.planner.measure.stopping``), not where the curve crosses it; ``cap``, the most
    samples it may train."""
    # the plan's run goes on from its checkpoint
    lo, mid, hi = curve.samples_to(level, going_on=True, every=every, cap=cap)
    if not math.isfinite(mid):
        return None
    e_min = worth(noise, mid, batch_size)
    ratio = mid / e_min - 1.0
    b_noise = min(max(batch_size / ratio, B_NOISE_FLOOR), B_NOISE_CAP) if ratio > 0 else B_NOISE_CAP
    e_min = mid / (1.0 + batch_size / b_noise)  # E(B0) = S, whatever the bounds did
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
