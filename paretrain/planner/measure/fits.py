"""Throughput and convergence models, fitted from profile samples (the docs: concepts, the models).

Step time: ``t(b) = alpha + beta * b``, fitted by least squares on log step times (so a 1 ms
step counts as much as a 100 ms one); throughput ``X = b / t(b)`` samples per second. At a
batch size that was measured, the measured mean step time is used as it is.

Convergence (McCandlish et al. 2018): samples to reach an accuracy level at global batch B,
``E(B) = E_min (1 + B / B_noise)``, fitted by weighted non-negative least squares on
``E = E_min + (E_min / B_noise) B`` to the samples measured at three or more batch sizes.

>>> m = fit_step_time([(16, 0.0012), (64, 0.0018), (256, 0.0042)])
>>> round(m.predict(128) * 1000, 2), m.predict(64)
(2.6, 0.0018)
>>> c = fit_convergence([(16, 51600), (64, 56400), (256, 75600)])
>>> round(c.e_min), round(c.b_noise)
(50000, 500)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares, nnls

__all__ = [
    "B_NOISE_CAP",
    "B_NOISE_FLOOR",
    "ConvergenceFit",
    "NoiseCurve",
    "StageNoise",
    "StepTimeModel",
    "fit_convergence",
    "fit_noise_curve",
    "fit_step_time",
    "stage_b_noise",
    "stage_noise",
]

#: B_noise above this is treated as "no measurable batch penalty" (a slope of ~0).
B_NOISE_CAP = 1e9
#: the least B_noise a model gives, one sample: a smaller one would charge even a batch of one
#: more than twice the ideal samples, which no two-batch estimate (batches of 16 and 512) resolves
B_NOISE_FLOOR = 1.0


@dataclass(frozen=True, slots=True)
class StepTimeModel:
    """``t(b) = alpha + beta * b`` seconds per step, valid on [b_min, b_max]."""

    alpha: float
    beta: float
    b_min: int
    b_max: int
    measured: tuple[tuple[int, float], ...] = ()

    def predict(self, batch_size: float) -> float:
        """The measured mean step time at a measured batch size, else the fitted line."""
        for b, t in self.measured:
            if b == batch_size:
                return t
        return self.alpha + self.beta * batch_size

    def throughput(self, batch_size: float) -> float:
        return batch_size / self.predict(batch_size)

    def extrapolated(self, batch_size: float) -> bool:
        return not self.b_min <= batch_size <= self.b_max


def fit_step_time(points: Sequence[tuple[int, float]]) -> StepTimeModel:
    """Fit ``alpha, beta >= 0`` to (batch size, step seconds) pairs in log space."""
    if not points:
        raise ValueError("fit_step_time needs at least one (batch_size, step_s) point")
    b = np.array([p[0] for p in points], dtype=float)
    t = np.array([p[1] for p in points], dtype=float)
    if np.any(t <= 0) or np.any(b <= 0):
        raise ValueError(f"step times and batch sizes must be > 0, but got {points}")
    if len(points) == 1:
        return StepTimeModel(
            float(t[0]) * 0.5,
            float(t[0]) * 0.5 / float(b[0]),
            int(b[0]),
            int(b[0]),
            ((int(b[0]), float(t[0])),),
        )
    slope, intercept = np.polyfit(b, t, 1)
    x0 = np.array([max(intercept, 1e-3 * t.min()), max(slope, 1e-9 * t.max())])

    def residual(p: np.ndarray) -> np.ndarray:
        return np.log(p[0] + p[1] * b) - np.log(t)

    scale = np.array([t.max(), t.max() / b.max()])
    res = least_squares(residual, x0, bounds=([1e-12, 0.0], [np.inf, np.inf]), x_scale=scale)
    alpha, beta = (float(v) for v in res.x)
    return StepTimeModel(
        alpha, beta, int(b.min()), int(b.max()), tuple(sorted((int(x), float(y)) for x, y in points))
    )


@dataclass(frozen=True, slots=True)
class ConvergenceFit:
    """``E(B) = e_min (1 + B / b_noise)`` samples to reach a level, from measured points."""

    e_min: float
    b_noise: float
    points: tuple[tuple[int, int], ...] = ()
    max_batch: int = 0  # the largest measured batch size that reached the level
    crossing: float = (
        0.0  # log-scale spread of the measured runs' crossings (paretrain.planner.measure.uncertainty)
    )
    crossing_dof: int = 0  # its degrees of freedom (evaluation differences)
    #: the level lies beyond a truncated run and is extrapolated from its learning curve
    extrapolated: bool = False

    def samples(self, batch_size: float) -> float:
        return self.e_min * (1.0 + batch_size / self.b_noise)


def fit_convergence(points: Sequence[tuple[int, int]]) -> ConvergenceFit:
    """Fit ``E_min > 0`` and ``B_noise`` to (batch size, samples to reach the level) pairs.

    Each point is weighted by 1 / E so that the fit is in relative terms. A fitted slope of
    zero (no penalty for larger batches in the measured range) gives ``B_NOISE_CAP``.
    """
    if len(points) < 2:
        raise ValueError(f"fit_convergence needs at least 2 points, but got {len(points)}")
    b = np.array([p[0] for p in points], dtype=float)
    e = np.array([p[1] for p in points], dtype=float)
    if np.any(e <= 0):
        raise ValueError(f"samples to reach a level must be > 0, but got {points}")
    w = 1.0 / e
    A = np.stack([np.ones_like(b), b], axis=1) * w[:, None]
    (p, q), _ = nnls(A, e * w)
    if p <= 0:  # all of E is explained by the slope: keep a tiny positive E_min
        p = float(e.min()) * 1e-3
        q = float(np.sum(w * w * b * (e - p)) / np.sum(w * w * b * b))
    b_noise = B_NOISE_CAP if q <= p / B_NOISE_CAP else p / q
    pts = tuple(sorted((int(x), int(y)) for x, y in points))
    return ConvergenceFit(float(p), float(min(max(b_noise, B_NOISE_FLOOR), B_NOISE_CAP)), pts, int(b.max()))


def relative_error(predicted: float, realized: float) -> float:
    if realized == 0:
        return math.inf if predicted else 0.0
    return (predicted - realized) / realized


@dataclass(frozen=True, slots=True)
class NoiseCurve:
    """Smoothed gradient noise scale along training: ``B_simple(p) = exp(a) * p ** slope``."""

    a: float
    slope: float
    p_min: int
    p_max: int

    def at(self, progress_samples: float) -> float:
        return math.exp(self.a) * max(progress_samples, 1.0) ** self.slope


def fit_noise_curve(points: Sequence[tuple[int, float]]) -> NoiseCurve | None:
    """Fit ``log B_simple = a + slope * log p`` to (progress samples, B_simple) measurements.

    The two-batch estimates are noisy (a negative |G|^2 estimate gives no point), so the curve
    is a least-squares line in log-log space, its slope clipped to [-1, 2]. Fewer than two
    usable points give None (one B_noise for the whole run), and so does a slope that the
    points do not support: with three or more points, a slope within two standard errors of
    zero is noise, and planning small-then-large batches on it would buy nothing but risk.
    """
    pts = [(p, b) for p, b in points if p > 0 and math.isfinite(b) and b > 0]
    if len(pts) < 2:
        return None
    x = np.log([p for p, _ in pts])
    y = np.log([b for _, b in pts])
    if np.ptp(x) == 0:
        return None
    slope, a = np.polyfit(x, y, 1)
    if len(pts) >= 3 and abs(slope) < 2.0 * slope_stderr(x, y, slope, a):
        return None
    slope = float(np.clip(slope, -1.0, 2.0))
    a = float(np.mean(y - slope * x))
    return NoiseCurve(a, slope, int(min(p for p, _ in pts)), int(max(p for p, _ in pts)))


def slope_stderr(x: np.ndarray, y: np.ndarray, slope: float, intercept: float) -> float:
    """Standard error of a least-squares slope (needs three or more points)."""
    resid = y - (intercept + slope * x)
    sxx = float(np.sum((x - x.mean()) ** 2))
    return math.sqrt(float(np.sum(resid**2)) / (len(x) - 2) / sxx) if sxx > 0 else math.inf


@dataclass(frozen=True, slots=True)
class StageNoise:
    """B_noise at any point of training progress, as stages are planned: the measured curve
    times ``scale``, or the fitted ``b_fit`` everywhere when there is no curve to follow."""

    b_fit: float
    curve: NoiseCurve | None = None
    scale: float = 1.0

    def at(self, progress_samples: float) -> float:
        if self.curve is None:
            return max(self.b_fit, B_NOISE_FLOOR)
        return min(max(self.curve.at(progress_samples) * self.scale, B_NOISE_FLOOR), B_NOISE_CAP)


def stage_noise(b_fit: float, curve: NoiseCurve | None, e_min: float, stages: int) -> StageNoise:
    """The B_noise model of a run cut into ``stages`` stages of equal ideal progress.

    The curve is scaled so that its harmonic mean over the stages' midpoints is the B_noise
    fitted from fixed-batch runs: a constant batch then needs exactly ``E_min (1 + B / b_fit)``
    samples, as measured, while a schedule that grows its batch with the noise scale needs fewer.
    """
    if curve is None or b_fit >= B_NOISE_CAP or stages == 1:
        return StageNoise(b_fit)
    g = [curve.at(e_min * (k + 0.5) / stages) for k in range(stages)]
    return StageNoise(b_fit, curve, b_fit * float(np.mean([1.0 / v for v in g])))


def stage_b_noise(b_fit: float, curve: NoiseCurve | None, e_min: float, stages: int) -> list[float]:
    """B_noise for each of ``stages`` stages of equal ideal progress (at their midpoints)."""
    noise = stage_noise(b_fit, curve, e_min, stages)
    return [noise.at(e_min * (k + 0.5) / stages) for k in range(stages)]
