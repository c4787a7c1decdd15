r"""When a run stops: the first evaluation whose *measured* value reaches the target.

A run does not stop where its learning curve crosses the target. It evaluates every
``eval_every`` samples, and it stops at the first evaluation whose value reaches the target
(``paretrain.runtime.run.executor``). Two things move that point away from the curve's crossing:

- the evaluation grid: a crossing between two evaluations is seen at the next one, on average
  half an interval later;
- the evaluation's own noise: near the target the curve flattens, and an evaluation a little
  below it on average reaches it by chance. Each evaluation is another draw, so the first one
  that reaches it comes earlier than the mean crossing, and far earlier where the target lies
  near the curve's asymptote. On MNIST-1D's example, evaluations 5,000 samples apart moved by
  about 0.015 accuracy around a rising trend, and a target 0.01 short of the asymptote is
  reached by such a draw long before the mean gets there.

``first_passage`` gives, for one curve of the ensemble, the samples at which a run on that curve
stops: evaluations at ``start + k * every`` (k = 1, 2, ...), each measuring the curve plus
independent normal noise of spread ``sd``, the stop at the first that reaches ``u``. A run that
starts from the profile's checkpoint also evaluates after its first step (k = 0); that
evaluation is left out on purpose. One step after the truncated run's last evaluation the model
has hardly moved, so it repeats that evaluation, which did not reach the level (a level the
points reached is read off them, ``Curve.reached``), rather than drawing anew: counted as an
independent draw, it would stop a run at once with the odds of a fresh evaluation. It is drawn
by inverting the distribution of that first evaluation at a uniform ``r`` (one per curve, so that
a quantile over the ensemble mixes the curves' parameter spread with the evaluation noise).

Evaluations whose mean lies more than ``FAR_SD`` spreads below the level are skipped (each
reaches it with a probability under 3e-5). Where more than ``MAX_EVALS`` evaluations lie between
there and the mean crossing (or the ``HORIZON`` where the curve never crosses), the first are
drawn one by one and the rest in blocks that grow geometrically, each with the odds of one
evaluation at its middle; within a block, the first passage is geometric. Against a brute-force
simulation of the evaluations (``tests/planner/test_stopping.py``) the quantiles agree.

>>> import numpy as np
>>> from paretrain.planner.measure.curve_families import FAMILIES
>>> exp3 = FAMILIES["exp3"]
>>> p = np.array([0.99, 0.9, 3.0])  # u = 0.99 - 0.9 exp(-3 x)
>>> round(first_passage(exp3, p, 0.0, 0.98, start=0.0, every=0.1, r=0.5), 3)  # grid only
1.5
>>> first_passage(exp3, p, 0.02, 0.98, start=0.0, every=0.1, r=0.5) < 1.5  # noise: earlier
True
"""

from __future__ import annotations

import math

import numpy as np

from paretrain.planner.measure.curve_families import Family

__all__ = ["FAR_SD", "HORIZON", "MAX_EVALS", "evaluation_noise", "first_passage"]

#: evaluations whose mean lies further below the level than this many spreads are not drawn
FAR_SD = 4.0
#: most evaluation blocks drawn for one curve; more evaluations are taken in equal blocks
MAX_EVALS = 400
#: most evaluations looked at past the first one near the level (beyond, a curve that has not
#: reached it counts as never reaching it)
HORIZON = 10**9
#: evaluations drawn past the mean crossing (each then reaches the level with odds of at least
#: one half, so the chance of passing all of them is under 1e-6)
PAST = 20


def first_passage(
    fam: Family, p: np.ndarray, sd: float, u: float, *, start: float, every: float, r: float
) -> float:
    """The samples (in the curve's units) at which a run on curve ``fam(p)`` that last evaluated
    at ``start`` and evaluates every ``every`` stops at level ``u`` (progress units), drawn at
    ``r`` in (0, 1); inf when it never does. See the module docstring."""
    if not every > 0.0:
        raise ValueError(f"`every` must be positive, but got {every!r}")
    cross = fam.cross(u, p)
    if sd <= 0.0 or not math.isfinite(sd):
        return _on_grid(max(cross, start), start, every)
    near = max(fam.cross(u - FAR_SD * sd, p), start)
    if not math.isfinite(near):
        return math.inf
    if (near - start) / every > HORIZON:  # so far that no evaluation grid says more
        return _on_grid(cross, start, every)
    k0 = max(1, math.ceil((near - start) / every - 1e-9))
    far = (cross - start) / every + PAST if math.isfinite(cross) else math.inf
    k1 = max(k0, math.ceil(min(far, k0 + HORIZON)))
    edges = _blocks(k0, k1)  # block j holds evaluations edges[j] .. edges[j + 1] - 1
    size = np.diff(edges).astype(float)
    mid = start + every * (edges[:-1] + (size - 1.0) / 2.0)
    from scipy.special import ndtr

    with np.errstate(all="ignore"):
        one = ndtr((fam.model(mid, p) - u) / sd)  # an evaluation in the block reaches u
    one = np.minimum(np.nan_to_num(one, nan=0.0), 1.0 - 1e-16)
    miss = np.exp(size * np.log1p(-one))  # none in the block does
    survive = np.cumprod(miss)
    j = int(np.searchsorted(-survive, -(1.0 - r), side="left"))  # first block with P(stopped) >= r
    if j >= len(size):  # past the last evaluation drawn
        return math.inf if not math.isfinite(cross) else start + every * float(k1 + 1)
    # within the block, the evaluations' first passage is geometric: the i-th of them is the
    # first to reach u with odds (1 - q)^(i - 1) q
    before = float(survive[j - 1]) if j > 0 else 1.0
    with np.errstate(all="ignore"):
        i = math.ceil(math.log((1.0 - r) / before) / math.log1p(-float(one[j])) - 1e-12)
    i = min(max(i, 1), int(size[j]))
    return start + every * float(edges[j] + i - 1)


def _blocks(k0: int, k1: int) -> np.ndarray:
    """Edges of the blocks that evaluations ``k0`` .. ``k1`` are drawn in: one evaluation each
    while they number at most ``MAX_EVALS``; beyond, the first ``MAX_EVALS // 2`` one each and
    the rest in blocks growing geometrically (the curve moves least where they are long)."""
    n = k1 - k0 + 1
    if n <= MAX_EVALS:
        return np.arange(k0, k1 + 2, dtype=np.int64)
    single = MAX_EVALS // 2
    grown = np.geomspace(single, n, MAX_EVALS - single + 1)
    rel = np.unique(np.concatenate([np.arange(single), np.round(grown).astype(np.int64)]))
    return k0 + rel


def _on_grid(x: float, start: float, every: float) -> float:
    """The first evaluation at or after ``x``: where a run without noise sees a crossing."""
    if not math.isfinite(x):
        return math.inf
    return start + every * max(1, math.ceil((x - start) / every - 1e-9))


def evaluation_noise(x: np.ndarray, u: np.ndarray) -> float:
    """The evaluations' own noise (the spread of one evaluation about the curve), from the later
    half of the points: each point's distance from the line through its two neighbours, which a
    trend does not move (a curvature does, a little), scaled to one evaluation's spread
    (``1 + a^2 + b^2`` for the line's weights ``a``, ``b``), its root mean square over the points.
    Before this estimate, the successive differences' root mean square was used: the trend is in
    them. On a falling loss with evaluation noise 0.02 it gave 0.11 (this estimate: 0.020 median
    over 200 draws, 0.013-0.027 P10-P90), and on MNIST-1D's GRU cut at the climb's start 0.098
    accuracy, twenty times what its evaluations showed later. The later half, even of few points:
    the early points' curvature leaks in (all six of the language model's first evaluations gave
    0.11 bits per byte, the later half 0.047), and a noise estimate that leans low only makes
    the predicted stop later, as without noise. 0 with fewer than 3 points."""
    x, u = np.asarray(x, dtype=float), np.asarray(u, dtype=float)
    if len(x) < 3:
        return 0.0
    gap = np.maximum(x[2:] - x[:-2], 1e-300)
    a = (x[2:] - x[1:-1]) / gap  # the weight of the point before
    b = 1.0 - a
    r2 = (u[1:-1] - (a * u[:-2] + b * u[2:])) ** 2 / (1.0 + a**2 + b**2)
    later = r2[len(r2) // 2 :] if len(r2) >= 4 else r2
    return float(math.sqrt(float(np.mean(later))))
