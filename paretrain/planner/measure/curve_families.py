"""The learning-curve families and their least-squares fits (``paretrain.planner.measure.curves``
mixes them into an ensemble).

Families (``x`` is samples over ``n_ref``, the most samples fitted, so parameters are O(1); ``u``
is progress, the metric's value signed to rise):

- ``pow4``: ``u = a - b (x + d)^{-c}``, the 4-parameter power law;
- ``mmf4``: ``u = a - (a - b) / (1 + (k x)^d)``, Morgan-Mercer-Flodin;
- ``exp3``: ``u = a - b e^{-c x}``, which saturates fastest.

Each is fitted by least squares (``scipy.optimize.least_squares``, the best of a few starts) in a
box whose asymptote lies at most ``REACH`` spans beyond the best point, or up to the
metric's ceiling; ``bootstrap`` refits one to its curve plus resampled residuals.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["BOOT", "FAMILIES", "MIN_POINTS", "REACH", "Family", "bootstrap", "fit_family", "start_and_bounds"]

BOOT = 12
REACH = 0.5
#: how far inside its box a fit starts, as a share of the box's width (``fit_family``)
EDGE = 1e-4
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


def _jac_pow4(x: np.ndarray, p: np.ndarray) -> np.ndarray:
    _a, b, c, d = p
    t = np.power(x + d, -c)
    return np.column_stack([np.ones_like(x), -t, b * t * np.log(x + d), b * c * t / (x + d)])


def _jac_mmf4(x: np.ndarray, p: np.ndarray) -> np.ndarray:
    a, b, k, d = p
    q = np.power(k * x, d)
    inv = 1.0 / (1.0 + q)
    return np.column_stack(
        [1.0 - inv, inv, (a - b) * inv**2 * d * q / k, (a - b) * inv**2 * q * np.log(k * x)]
    )


def _jac_exp3(x: np.ndarray, p: np.ndarray) -> np.ndarray:
    _a, b, c = p
    e = np.exp(-c * x)
    return np.column_stack([np.ones_like(x), -e, b * x * e])


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
class Family:
    name: str
    model: Model
    cross: Callable[[float, np.ndarray], float]
    n_params: int
    #: the model's derivatives by parameter, one column each (least squares needs no differencing)
    jac: Callable[[np.ndarray, np.ndarray], np.ndarray]


FAMILIES = {
    "pow4": Family("pow4", _pow4, _cross_pow4, 4, _jac_pow4),
    "mmf4": Family("mmf4", _mmf4, _cross_mmf4, 4, _jac_mmf4),
    "exp3": Family("exp3", _exp3, _cross_exp3, 3, _jac_exp3),
}


def start_and_bounds(
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


def fit_family(
    name: str,
    x: np.ndarray,
    u: np.ndarray,
    bounds_u: np.ndarray | None = None,
    warm: np.ndarray | None = None,
    ceiling: float | None = None,
) -> tuple[np.ndarray, float] | None:
    """Least-squares parameters and residual spread of one family, or None when it cannot fit.
    ``bounds_u`` sets the parameter box (the original points' values, for a bootstrap refit),
    which starts from ``warm`` (the fit it perturbs) alone.

    The box is kept by a change of variables, ``p = mid + half * sin(q)`` (as MINUIT does), so the
    unbounded Levenberg-Marquardt of MINPACK (``method="lm"``, its loop in compiled code) solves
    it. On these 3-4 parameter problems a whole ``fit_curve`` takes a half to a quarter of the time
    it took with the bounded trust-region solver (``trf``, whose every iteration is Python), with
    the same extrapolation error and interval coverage (``benchmarks/curve_fits.py``). A start is
    moved ``EDGE`` of the box's width inside it, where the sine's slope is not zero (a start at a
    bound would stay there: its bootstrap refits would not spread)."""
    fam = FAMILIES[name]
    if len(x) < fam.n_params + 1:
        return None
    p0, lo, hi = start_and_bounds(name, u if bounds_u is None else bounds_u, ceiling)
    w = np.sqrt(x / x.max())  # later points weigh more: they decide where the curve goes next
    best: tuple[np.ndarray, float] | None = None
    starts = (
        [warm]
        if warm is not None
        else [p0 * np.where(np.arange(len(p0)) == 2, f, 1.0) for f in (1.0, 0.3, 3.0)]
    )
    for start in starts:  # the curvature parameter at, below and above its default
        solved = _solve(fam, x, u, w, start, (lo, hi))
        if solved is not None and (best is None or solved[1] < best[1]):
            best = solved
    if best is None:
        return None
    dof = max(len(x) - fam.n_params, 1)
    resid = fam.model(x, best[0]) - u
    return best[0], float(math.sqrt(float(resid @ resid) / dof))


def _solve(
    fam: Family,
    x: np.ndarray,
    u: np.ndarray,
    w: np.ndarray,
    start: np.ndarray,
    box: tuple[np.ndarray, np.ndarray],
) -> tuple[np.ndarray, float] | None:
    """One start's weighted least squares in ``box`` (``fit_family``'s change of variables):
    the parameters and the cost, or None when the solver fails or ends on a non-finite value."""
    from scipy.optimize import least_squares

    lo, hi = box
    mid, half = (hi + lo) / 2.0, (hi - lo) / 2.0
    inside = np.clip(start, lo + EDGE * (hi - lo), hi - EDGE * (hi - lo))
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            q0 = np.arcsin((inside - mid) / half)  # a box of no width: nan, and lm refuses it
            res = least_squares(
                lambda q: (fam.model(x, mid + half * np.sin(q)) - u) * w,
                q0,
                jac=lambda q: fam.jac(x, mid + half * np.sin(q)) * (half * np.cos(q) * w[:, None]),
                method="lm",
                max_nfev=400,
                ftol=1e-6,
                xtol=1e-6,
            )
        except (ValueError, FloatingPointError):
            return None
    if not (np.all(np.isfinite(res.x)) and np.all(np.isfinite(res.fun))):
        return None
    return mid + half * np.sin(res.x), float(res.cost)


def bootstrap(
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
        refit = fit_family(
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
