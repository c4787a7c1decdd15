r"""Learning curves: a metric against the samples seen, extrapolated with its uncertainty.

One model serves every place that must predict later training from its beginning: a truncated
profile run, a search trial at a low rung, a run refitting at each evaluation. It works for any
metric and either direction: a maximized accuracy and a minimized loss, bits per byte or MSE are
fitted alike, in *progress* units ``u = y`` (maximize) or ``u = -y`` (minimize), where a curve
rises toward an asymptote.

The families (``paretrain.planner.measure.curve_families``): ``pow4``, the 4-parameter power law;
``mmf4``, Morgan-Mercer-Flodin; ``exp3``, which saturates fastest.

On LCDB's curves, POW4 and MMF4 extrapolate best among parametric families; EXP3 is there to
disagree when a curve is flattening, so that the ensemble's spread shows it.

Each family is fitted by bounded least squares (``scipy.optimize.least_squares``, the best of a
few starts). The asymptote may lie at most ``REACH`` times the span of the points beyond the best
point: a short curve cannot promise the moon. Its parameter spread comes from a residual
bootstrap (``BOOT`` refits to the fitted curve plus resampled residuals, from a fixed seed), which
stays honest where the least-squares covariance of a flat direction would not. The ensemble
weights families by how well they predict a *held-back tail*: each is fitted again on the first
``1 - HOLDOUT`` of the points and scored on the rest, all families on the same rest
(``tail_cut``: a curve too short to hold a tail back from the family with the most parameters
weighs them all by their residual spread). The same held-back tails calibrate the
spread: ``inflation`` is the root mean square of the tail's errors in units of the family's
predicted spread there (never below 1), and the bootstrap curves' distance from the fit is scaled
by it for P10 and P90; the P50 is the median of the curves as fitted (``centered``: inflating
moved it, since the box is not symmetric about a fit and a crossing is far from linear in the
parameters).

A run that sits on a plateau and then climbs (a recurrent net on MNIST-1D holds near 0.5 for
30k samples) is not a saturating curve until its climb slows: the families are fitted from the
steepest rise on (``concave_part``), and where the run's points reached a level, its crossing is
read off the points (``Curve.reached``), never off a model that cannot bend that way (only when
the points fell back below it does the model say when the curve stays past it).

A prediction mixes the families' bootstrap curves by weight (``DRAWS`` in all); ``predict`` adds
the evaluation's own noise (the larger of the fit's residual spread and the evaluations' noise,
``stopping.evaluation_noise``), since it is the interval of what an
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
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from paretrain.planner.measure.curve_families import (
    BOOT,
    FAMILIES,
    MIN_POINTS,
    REACH,
    Family,
    bootstrap,
    fit_family,
    start_and_bounds,
)
from paretrain.planner.measure.stopping import evaluation_noise, first_passage

__all__ = [
    "BOOT",
    "DRAWS",
    "FAMILIES",
    "HOLDOUT",
    "REACH",
    "Curve",
    "FamilyFit",
    "ceiling_of",
    "centered",
    "concave_part",
    "fit_curve",
    "tail_cut",
]

DRAWS = 2000
HOLDOUT = 0.3


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
    #: one evaluation's own noise about the curve (``stopping.evaluation_noise``), in the metric's
    #: units: what makes a run's first evaluation past a level come early. Not the fits' residual
    #: spread, which also holds their misfit: on MNIST-1D's climb that was 0.07-0.09 accuracy,
    #: and an evaluation's noise near the level 0.01-0.02
    noise: float = 0.0

    @property
    def last_samples(self) -> float:
        return self.points[-1][0] if self.points else 0.0

    def extrapolates(self, samples: float) -> bool:
        """Whether a prediction at ``samples`` lies beyond the points it was fitted to."""
        return samples > self.last_samples

    def _sign(self) -> float:
        return 1.0 if self.direction == "maximize" else -1.0

    def _draws(self, inflated: bool = True) -> list[tuple[Family, np.ndarray, float]]:
        """(family, parameters, residual spread) of ``DRAWS`` curves mixed by weight; with
        ``inflated``, each bootstrap curve's distance from its fit scaled by ``inflation``."""
        weights = np.array([f.weight for f in self.fits])
        counts = np.floor(weights / weights.sum() * DRAWS).astype(int)
        counts[int(np.argmax(weights))] += DRAWS - int(counts.sum())
        out: list[tuple[Family, np.ndarray, float]] = []
        for f, n in zip(self.fits, counts, strict=True):
            fam, center = FAMILIES[f.family], np.array(f.params)
            lo, hi = np.array(f.lower), np.array(f.upper)
            k = self.inflation if inflated else 1.0
            boot = [np.clip(center + k * (np.array(b) - center), lo, hi) for b in f.boot]
            out.extend((fam, boot[i % len(boot)], f.sigma) for i in range(int(n)))
        return out

    def _progress(self) -> list[tuple[float, float]]:
        s = self._sign()
        return [(n / self.n_ref, s * y) for n, y in self.points]

    def predict(self, samples: float) -> tuple[float, float, float]:
        """P10, P50, P90 of the metric's value after ``samples`` samples (the P50 from the
        draws as fitted, the interval from the inflated ones: see ``centered``)."""
        x = np.array([samples / self.n_ref])
        s = self._sign()

        def values(inflated: bool) -> np.ndarray:
            draws = self._draws(inflated)
            noise = np.random.default_rng(self.seed).standard_normal(len(draws))
            with np.errstate(all="ignore"):
                return s * np.array(
                    [float(fam.model(x, p)[0]) + z * sd for (fam, p, sd), z in zip(draws, noise, strict=True)]
                )

        wide = values(True)
        lo, hi = (float(v) for v in np.nanquantile(wide, [0.1, 0.9]))
        mid = (
            float(np.nanquantile(values(False), 0.5))
            if self.inflation > 1.0
            else float(np.nanquantile(wide, 0.5))
        )
        lo, mid, hi = centered(lo, mid, hi)
        return (lo, mid, hi) if s > 0 else (hi, mid, lo)  # P10 is the worse value

    def samples_to(
        self, level: float, *, going_on: bool = False, every: float | None = None, cap: float | None = None
    ) -> tuple[float, float, float]:
        """P10, P50, P90 of the samples at which the curve first reaches ``level`` (inf: never).

        Where the fitted points reached the level, the crossing is measured, not modeled
        (``reached``); beyond them, the ensemble's draws give it. Points that reached the level
        and then fell back below it by more than their noise give the first crossing, and the
        draws say when the curve stays past it (P90).

        ``going_on``: for a run that goes on from the last point (one that starts from the
        truncated run's checkpoint), a level its points reached and fell back from is still
        ahead of it: its P50 is then the draws' (never before the last point), not the first
        crossing behind it. On MNIST-1D's example with the workload's seed 3, the first crossing
        lay before the checkpoint, the plan gave the run 64 samples to go, and it trained 8,320.

        ``every``: the samples between the run's evaluations. The modeled samples are then those
        at which a run that goes on from the last point stops: its first evaluation whose
        measured value reaches the level (``paretrain.planner.measure.stopping``), not the
        curve's crossing. Only for a level that the curves as fitted reach (their median
        crossing is finite): one that they do not reach stays out of reach (inf), although
        evaluations a few noise spreads below it would reach it by chance. That reach would rest
        on the noise estimate and on the bootstrap curves' far tails; on the language model's
        first six evaluations (5.0 to 3.7 bits per byte), the noise measured 0.11 bits, and a
        goal of 3.0, below every fitted asymptote, came out at 48,768 sequences (the run took
        6,772), and the profile stopped training before its curve could say more.

        ``cap``: the most samples a run may train (``target.max_samples``); a curve on which it
        would stop later never reaches the level for it (inf). With the evaluations' noise, a
        curve whose asymptote lies a little short of the level reaches it by chance, and where
        it approaches that asymptote slowly, after billions of samples: the run stops at its cap
        long before."""
        seen = self.reached(level)
        if seen is not None and math.isfinite(seen[2]):
            return seen
        modeled = self._modeled_samples_to(level, None, cap)
        if every is not None and math.isfinite(modeled[1]):
            modeled = self._modeled_samples_to(level, every, cap)
        if seen is None:
            return modeled
        return (seen[0], modeled[1] if going_on else seen[1], modeled[2])

    def _modeled_samples_to(
        self, level: float, every: float | None = None, cap: float | None = None
    ) -> tuple[float, float, float]:
        """``samples_to`` from the ensemble's draws alone, none crossing before the last point;
        with ``every``, where a run evaluating that often stops (``first_passage``); past
        ``cap``, never."""
        u = self._sign() * level
        last = self.last_samples / self.n_ref

        def crossings(inflated: bool) -> np.ndarray:
            out = stops(inflated)
            return out if cap is None else np.where(out > cap, math.inf, out)

        def stops(inflated: bool) -> np.ndarray:
            draws = self._draws(inflated)
            if every is None or every <= 0:
                return np.array([max(fam.cross(u, p), last) for fam, p, _sd in draws]) * self.n_ref
            r = np.random.default_rng(self.seed).uniform(size=len(draws))
            step = every / self.n_ref
            return (
                np.array(
                    [
                        first_passage(fam, p, self.noise, u, start=last, every=step, r=float(ri))
                        for (fam, p, _sd), ri in zip(draws, r, strict=True)
                    ]
                )
                * self.n_ref
            )

        # order statistics, not interpolations: draws that never reach the level are inf
        wide = crossings(True)
        q10, q90 = (float(v) for v in np.quantile(wide, [0.1, 0.9], method="inverted_cdf"))
        fitted = crossings(False) if self.inflation > 1.0 else wide
        return centered(q10, float(np.quantile(fitted, 0.5, method="inverted_cdf")), q90)

    def reached(self, level: float) -> tuple[float, float, float] | None:
        """Where the points themselves reached ``level``: P50 the first evaluation at or past it,
        P10 the evaluation before (the crossing lies between), P90 the first from which every
        later evaluation stays within the evaluations' noise of it (inf when the last one fell
        back below that); None when no point did."""
        s = self._sign()
        u = s * level
        vals = [(n, s * y) for n, y in self.points]
        first = next((i for i, (_n, v) in enumerate(vals) if v >= u), None)
        if first is None:
            return None
        noise = evaluation_noise(np.array([n for n, _v in vals]), np.array([v for _n, v in vals]))
        stays = next((i for i in range(first, len(vals)) if all(v >= u - noise for _n, v in vals[i:])), None)
        before = vals[first - 1][0] if first > 0 else 0.0
        held = math.inf if stays is None else float(vals[stays][0])
        return float(before), float(vals[first][0]), held


def centered(lo: float, mid: float, hi: float) -> tuple[float, float, float]:
    """P10, P50, P90 with the P50 of the curves as fitted and the interval of the inflated ones,
    widened where needed to hold the P50.

    Inflating the bootstrap curves' distance from their fit widens the interval as the held-back
    tails say it should, but it also moves the median: the parameter box is not symmetric about
    a fit (an accuracy's asymptote cannot pass 1), and a crossing is far from linear in the
    parameters, so the inflated curves that never reach a level outnumber those that reach it
    early. Cut after 6 evaluations, the recorded MNIST-1D run's tails asked for an inflation of
    40, and the inflated median put a level the run reached at 78,208 samples at 10^15."""
    return min(lo, mid), mid, max(hi, mid)


def concave_part(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points from the steepest rise on, in progress units (rising): a run that first sits on
    a plateau and then climbs (a recurrent net on MNIST-1D does) is not what a saturating family
    describes until its climb slows; fitted from its steepest rise on, it is. The whole run when the
    steepest rise is at its start (the usual case) or too few points follow it to fit a family."""
    if len(points) < 2 * MIN_POINTS + 2:
        return list(points)
    u = np.array([v for _n, v in points])
    smooth = np.convolve(u, np.ones(3) / 3.0, mode="valid")  # smooth[i] centres point i + 1
    xs = np.array([n for n, _v in points])[1:-1]
    slope = np.diff(smooth) / np.maximum(np.diff(xs), 1e-12)
    k = int(np.argmax(slope)) + 1  # the steepest rise is between points k and k + 1
    if k < 2 or len(points) - k < MIN_POINTS + 2:
        return list(points)
    return list(points[k:])


def _tail_errors(
    name: str, x: np.ndarray, u: np.ndarray, seed: int, ceiling: float | None = None
) -> tuple[float, float] | None:
    """(mean squared error, mean squared z) of a family fitted on the head and scored on the tail,
    z in units of the head's bootstrap spread and residual noise there."""
    cut = tail_cut(len(x))
    if cut >= len(x):
        return None
    fit = fit_family(name, x[:cut], u[:cut], ceiling=ceiling)
    if fit is None:
        return None
    p, sigma = fit
    fam = FAMILIES[name]
    with np.errstate(all="ignore"):
        pred = fam.model(x[cut:], p)
        boot = np.array(
            [fam.model(x[cut:], b) for b in bootstrap(name, x[:cut], u[:cut], p, seed, BOOT // 2, ceiling)]
        )
    var = np.var(boot, axis=0) + sigma**2
    err = u[cut:] - pred
    return float(np.mean(err**2)), float(np.mean(err**2 / np.maximum(var, 1e-18)))


def tail_cut(n: int) -> int:
    """Where the held-back tail of ``n`` points starts: after the first ``1 - HOLDOUT`` of them,
    and after enough points to fit every family. One cut for all families, so their tail errors
    weigh them on the same points (``n`` at most: no tail, and no family is weighed by one)."""
    need = max(f.n_params for f in FAMILIES.values()) + 1
    return min(n, max(need, math.ceil(n * (1.0 - HOLDOUT))))


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
    best = ceiling if ceiling is not None else ceiling_of([y for _, y in pts], direction)
    part = concave_part([(n, s * y) for n, y in pts])
    x = np.array([n / n_ref for n, _ in part])
    u = np.array([v for _, v in part])
    cu = None if best is None else s * best
    fits: list[FamilyFit] = []
    z2: list[float] = []
    noise = evaluation_noise(x, u)
    for name in FAMILIES:
        full = fit_family(name, x, u, ceiling=cu)
        if full is None:
            continue
        p, sigma = full
        tail = _tail_errors(name, x, u, seed, cu)
        if tail:
            z2.append(tail[1])
        sigma = max(sigma, noise)
        boot = tuple(tuple(map(float, b)) for b in bootstrap(name, x, u, p, seed, ceiling=cu))
        weight = 1.0 / max(tail[0] if tail else sigma**2, 1e-18)
        _, lower, upper = start_and_bounds(name, u, cu)
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
    return Curve(direction, n_ref, tuple(fits), inflation, tuple(pts), seed, noise)
