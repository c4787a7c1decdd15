r"""Learning curves: a metric against the samples seen, extrapolated with its uncertainty.

One model serves every place that must predict later training from its beginning: a truncated
profile run, a search trial at a low rung, a run refitting at each evaluation. It works for any
metric and either direction: a maximized accuracy and a minimized loss, bits per byte or MSE are
fitted alike, in *progress* units ``u = y`` (maximize) or ``u = -y`` (minimize), where a curve
rises toward an asymptote.

Families (``x`` is samples over ``n_ref``, the most samples fitted, so parameters are O(1)):

- ``pow4``: ``u = a - b (x + d)^{-c}``, the 4-parameter power law;
- ``mmf4``: ``u = a - (a - b) / (1 + (k x)^d)``, Morgan-Mercer-Flodin;
- ``exp3``: ``u = a - b e^{-c x}``, which saturates fastest.

On LCDB's curves, POW4 and MMF4 extrapolate best among parametric families; EXP3 is there to
disagree when a curve is flattening, so that the ensemble's spread shows it.

Each family is fitted by bounded least squares (``scipy.optimize.least_squares``, the best of a
few starts). The asymptote may lie at most ``REACH`` times the span of the points beyond the best
point: a short curve cannot promise the moon. Its parameter spread comes from a residual
bootstrap (``BOOT`` refits to the fitted curve plus resampled residuals, from a fixed seed), which
stays honest where the least-squares covariance of a flat direction would not. The ensemble
weights families by how well they predict a *held-back tail*: each is fitted again on the first
``1 - HOLDOUT`` of the points and scored on the rest. The same held-back tails calibrate the
spread: ``inflation`` is the root mean square of the tail's errors in units of the family's
predicted spread there (never below 1), and the bootstrap curves' distance from the fit is scaled
by it.

A prediction mixes the families' bootstrap curves by weight (``DRAWS`` in all); ``predict`` adds
the evaluation's own noise (the fit's residual spread), since it is the interval of what an
evaluation will *measure*, and ``samples_to`` gives the samples at which each curve first
reaches a level. P10 / P50 / P90 carry the parameter spread and the disagreement between
families; a level a curve never reaches counts as infinitely many samples.

>>> pts = [(n, 0.9 - 0.8 * (n / 1000 + 0.1) ** -0.5 / 3.2) for n in range(200, 2001, 200)]
>>> curve = fit_curve(pts, "maximize")
>>> lo, mid, hi = curve.predict(4000)
>>> lo <= mid <= hi and abs(mid - (0.9 - 0.8 * 4.1 ** -0.5 / 3.2)) < 0.02
True
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["BOOT", "DRAWS", "FAMILIES", "HOLDOUT", "REACH", "Curve", "FamilyFit", "ceiling_of", "fit_curve"]

DRAWS = 2000
BOOT = 12
HOLDOUT = 0.3
REACH = 0.5
#: fewest points a family needs beyond its parameter count to be fitted
MIN_POINTS = 4

Model = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _pow4(x: np.ndarray, p: np.ndarray) -> np.ndarray:
    a, b, c, d = p
    return a - b * np.power(x + d, -c)


def _mmf4(x: np.ndarray, p: np.ndarray) -> np.ndarray:
    a, b, k, d = p
    return a - (a - b) / (1.0 + np.power(k * x, d))


def _exp3(x: np.ndarray, p: np.ndarray) -> np.ndarray:
    a, b, c = p
    return a - b * np.exp(-c * x)


def _cross_pow4(u: float, p: np.ndarray) -> float:
    a, b, c, d = p
    if u >= a or b <= 0:
        return math.inf if u >= a else 0.0
    return max((b / (a - u)) ** (1.0 / c) - d, 0.0)


def _cross_mmf4(u: float, p: np.ndarray) -> float:
    a, b, k, d = p
    if u >= a:
        return math.inf
    if u <= b:
        return 0.0
    return ((u - b) / (a - u)) ** (1.0 / d) / k


def _cross_exp3(u: float, p: np.ndarray) -> float:
    a, b, c = p
    if u >= a:
        return math.inf
    if a - u >= b:
        return 0.0
    return -math.log((a - u) / b) / c


@dataclass(frozen=True, slots=True)
class _Family:
    name: str
    model: Model
    cross: Callable[[float, np.ndarray], float]
    n_params: int


FAMILIES = {
    "pow4": _Family("pow4", _pow4, _cross_pow4, 4),
    "mmf4": _Family("mmf4", _mmf4, _cross_mmf4, 4),
    "exp3": _Family("exp3", _exp3, _cross_exp3, 3),
}


def _start_and_bounds(
    name: str, u: np.ndarray, ceiling: float | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A start and box bounds for a family on progress values ``u`` (x in (0, 1]). The asymptote
    lies above the best seen: at most ``REACH`` spans beyond it, or up to ``ceiling`` (in progress
    units) where the metric has one."""
    lo, hi = float(u.min()), float(u.max())
    span = max(hi - lo, 1e-9)
    a_hi = ceiling if ceiling is not None and ceiling > hi else hi + REACH * span
    a_lo, a0 = hi - 0.05 * span, hi + 0.1 * span
    if name == "pow4":
        return (
            np.array([a0, span, 0.5, 0.05]),
            np.array([a_lo, 1e-9, 0.01, 0.0]),
            np.array([a_hi, 100.0 * span, 5.0, 2.0]),
        )
    if name == "mmf4":
        return (
            np.array([a0, lo - span, 5.0, 1.0]),
            np.array([a_lo, lo - 100.0 * span, 1e-3, 0.1]),
            np.array([a_hi, hi, 1e4, 5.0]),
        )
    return (np.array([a0, span, 2.0]), np.array([a_lo, 1e-9, 1e-3]), np.array([a_hi, 100.0 * span, 100.0]))


@dataclass(frozen=True, slots=True)
class FamilyFit:
    """One family fitted: its parameters, its bootstrap refits, the residual spread and its weight."""

    family: str
    params: tuple[float, ...]
    boot: tuple[tuple[float, ...], ...]
    sigma: float
    weight: float
    #: the parameter box it was fitted in (a widened bootstrap curve is kept inside it)
    lower: tuple[float, ...] = ()
    upper: tuple[float, ...] = ()


def _fit_family(
    name: str,
    x: np.ndarray,
    u: np.ndarray,
    bounds_u: np.ndarray | None = None,
    warm: np.ndarray | None = None,
    ceiling: float | None = None,
) -> tuple[np.ndarray, float] | None:
    """Least-squares parameters and residual spread of one family, or None when it cannot fit.
    ``bounds_u`` sets the parameter box (the original points' values, for a bootstrap refit),
    which starts from ``warm`` (the fit it perturbs) alone."""
    from scipy.optimize import least_squares

    fam = FAMILIES[name]
    if len(x) < fam.n_params + 1:
        return None
    p0, lo, hi = _start_and_bounds(name, u if bounds_u is None else bounds_u, ceiling)
    w = np.sqrt(x / x.max())  # later points weigh more: they decide where the curve goes next
    best = None
    starts = (
        [warm]
        if warm is not None
        else [p0 * np.where(np.arange(len(p0)) == 2, f, 1.0) for f in (1.0, 0.3, 3.0)]
    )
    for start in starts:  # the curvature parameter at, below and above its default
        start = np.clip(start, lo + 1e-12, hi - 1e-12)
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            try:
                res = least_squares(
                    lambda p: (fam.model(x, p) - u) * w,
                    start,
                    bounds=(lo, hi),
                    max_nfev=400,
                    ftol=1e-6,
                    xtol=1e-6,
                )
            except (ValueError, FloatingPointError):
                continue
        if (
            np.all(np.isfinite(res.x))
            and np.all(np.isfinite(res.fun))
            and (best is None or res.cost < best.cost)
        ):
            best = res
    if best is None:
        return None
    dof = max(len(x) - fam.n_params, 1)
    resid = fam.model(x, best.x) - u
    return best.x, float(math.sqrt(float(resid @ resid) / dof))


def _bootstrap(
    name: str,
    x: np.ndarray,
    u: np.ndarray,
    p: np.ndarray,
    seed: int,
    n: int = BOOT,
    ceiling: float | None = None,
) -> list[np.ndarray]:
    """``n`` refits of the family to its fitted curve plus resampled residuals."""
    fam = FAMILIES[name]
    fitted = fam.model(x, p)
    resid = u - fitted
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        refit = _fit_family(
            name,
            x,
            fitted + rng.choice(resid, size=len(resid), replace=True),
            bounds_u=u,
            warm=p,
            ceiling=ceiling,
        )
        if refit is not None:
            out.append(refit[0])
    return out or [p]


@dataclass(frozen=True, slots=True)
class Curve:
    """A fitted ensemble of learning curves; see the module docstring.

    ``points`` are the (samples, value) pairs it was fitted to; ``inflation`` scales the
    parameter spread by what the held-back tails showed.
    """

    direction: str
    n_ref: float
    fits: tuple[FamilyFit, ...]
    inflation: float
    points: tuple[tuple[float, float], ...]
    seed: int = 0

    @property
    def last_samples(self) -> float:
        return self.points[-1][0] if self.points else 0.0

    def extrapolates(self, samples: float) -> bool:
        """Whether a prediction at ``samples`` lies beyond the points it was fitted to."""
        return samples > self.last_samples

    def _sign(self) -> float:
        return 1.0 if self.direction == "maximize" else -1.0

    def _draws(self) -> list[tuple[_Family, np.ndarray, float]]:
        """(family, parameters, residual spread) of ``DRAWS`` curves mixed by weight."""
        weights = np.array([f.weight for f in self.fits])
        counts = np.floor(weights / weights.sum() * DRAWS).astype(int)
        counts[int(np.argmax(weights))] += DRAWS - int(counts.sum())
        out: list[tuple[_Family, np.ndarray, float]] = []
        for f, n in zip(self.fits, counts, strict=True):
            fam, center = FAMILIES[f.family], np.array(f.params)
            lo, hi = np.array(f.lower), np.array(f.upper)
            boot = [np.clip(center + self.inflation * (np.array(b) - center), lo, hi) for b in f.boot]
            out.extend((fam, boot[i % len(boot)], f.sigma) for i in range(int(n)))
        return out

    def _progress(self) -> list[tuple[float, float]]:
        s = self._sign()
        return [(n / self.n_ref, s * y) for n, y in self.points]

    def predict(self, samples: float) -> tuple[float, float, float]:
        """P10, P50, P90 of the metric's value after ``samples`` samples."""
        x = np.array([samples / self.n_ref])
        s = self._sign()
        draws = self._draws()
        noise = np.random.default_rng(self.seed).standard_normal(len(draws))
        with np.errstate(all="ignore"):
            vals = np.array(
                [float(fam.model(x, p)[0]) + z * sd for (fam, p, sd), z in zip(draws, noise, strict=True)]
            )
        vals = vals * s
        lo, mid, hi = (float(v) for v in np.nanquantile(vals, [0.1, 0.5, 0.9]))
        return (lo, mid, hi) if s > 0 else (hi, mid, lo)  # P10 is the worse value

    def samples_to(self, level: float) -> tuple[float, float, float]:
        """P10, P50, P90 of the samples at which the curve first reaches ``level`` (inf: never)."""
        u = self._sign() * level
        xs = np.array([fam.cross(u, p) for fam, p, _sd in self._draws()])
        # an order statistic, not an interpolation: draws that never reach the level are inf
        q10, q50, q90 = (
            float(v) * self.n_ref for v in np.quantile(xs, [0.1, 0.5, 0.9], method="inverted_cdf")
        )
        return q10, q50, q90


def _tail_errors(
    name: str, x: np.ndarray, u: np.ndarray, seed: int, ceiling: float | None = None
) -> tuple[float, float] | None:
    """(mean squared error, mean squared z) of a family fitted on the head and scored on the tail,
    z in units of the head's bootstrap spread and residual noise there."""
    cut = max(FAMILIES[name].n_params + 1, math.ceil(len(x) * (1.0 - HOLDOUT)))
    if cut >= len(x):
        return None
    fit = _fit_family(name, x[:cut], u[:cut], ceiling=ceiling)
    if fit is None:
        return None
    p, sigma = fit
    fam = FAMILIES[name]
    with np.errstate(all="ignore"):
        pred = fam.model(x[cut:], p)
        boot = np.array(
            [fam.model(x[cut:], b) for b in _bootstrap(name, x[:cut], u[:cut], p, seed, BOOT // 2, ceiling)]
        )
    var = np.var(boot, axis=0) + sigma**2
    err = u[cut:] - pred
    return float(np.mean(err**2)), float(np.mean(err**2 / np.maximum(var, 1e-18)))


def _evaluation_noise(u: np.ndarray) -> float:
    """The evaluations' own noise, from successive differences of the later half of the curve
    (where it moves least, so its trend adds little): sqrt(mean(diff^2) / 2)."""
    tail = u[len(u) // 2 :]
    if len(tail) < 3:
        return 0.0
    return float(math.sqrt(float(np.mean(np.diff(tail) ** 2)) / 2.0))


def ceiling_of(values: Sequence[float], direction: str) -> float | None:
    """The best value a metric can take, judged from its values: 1 for a maximized metric whose
    values all lie in [0, 1] (an accuracy, an F1, an AUC), 0 for a minimized one that is never
    negative (a loss, bits per byte, an MSE); None when neither holds."""
    if direction == "maximize" and all(0.0 <= v <= 1.0 for v in values):
        return 1.0
    if direction == "minimize" and all(v >= 0.0 for v in values):
        return 0.0
    return None


def fit_curve(
    points: Sequence[tuple[float, float]], direction: str, seed: int = 0, ceiling: float | None = None
) -> Curve | None:
    """Fit the ensemble to (samples, value) points of one run; None when too few to fit any family.
    ``ceiling``: the best value the metric can take (default: ``ceiling_of`` its values)."""
    if direction not in ("maximize", "minimize"):
        raise ValueError(f"`direction` must be 'maximize' or 'minimize', but got {direction!r}")
    pts = sorted((float(n), float(y)) for n, y in points if n > 0 and math.isfinite(y))
    if len(pts) < MIN_POINTS:
        return None
    n_ref = pts[-1][0]
    s = 1.0 if direction == "maximize" else -1.0
    x = np.array([n / n_ref for n, _ in pts])
    u = np.array([s * y for _, y in pts])
    best = ceiling if ceiling is not None else ceiling_of([y for _, y in pts], direction)
    cu = None if best is None else s * best
    fits: list[FamilyFit] = []
    z2: list[float] = []
    noise = _evaluation_noise(u)
    for name in FAMILIES:
        full = _fit_family(name, x, u, ceiling=cu)
        if full is None:
            continue
        p, sigma = full
        tail = _tail_errors(name, x, u, seed, cu)
        if tail:
            z2.append(tail[1])
        sigma = max(sigma, noise)
        boot = tuple(tuple(map(float, b)) for b in _bootstrap(name, x, u, p, seed, ceiling=cu))
        weight = 1.0 / max(tail[0] if tail else sigma**2, 1e-18)
        _, lower, upper = _start_and_bounds(name, u, cu)
        fits.append(
            FamilyFit(
                name,
                tuple(map(float, p)),
                boot,
                sigma,
                weight,
                tuple(map(float, lower)),
                tuple(map(float, upper)),
            )
        )
    if not fits:
        return None
    inflation = max(1.0, math.sqrt(float(np.mean(z2)))) if z2 else 2.0
    return Curve(direction, n_ref, tuple(fits), inflation, tuple(pts), seed)
