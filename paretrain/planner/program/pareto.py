"""Dominance, non-dominated filtering, hypervolume and the knee of a Pareto set.

Objectives are (cost, wall time, accuracy): cost and time are minimized, accuracy is
maximized. Internally points are turned into all-minimized vectors (cost, time, -accuracy).

>>> pts = [(1.0, 5.0, 0.8), (2.0, 3.0, 0.8), (2.0, 6.0, 0.8), (3.0, 3.0, 0.9)]
>>> non_dominated(pts)
[0, 1, 3]
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "Point",
    "dominates",
    "exact_front",
    "front2d",
    "hypervolume",
    "knee_index",
    "non_dominated",
    "sorted_non_dominated",
]

Point = tuple[float, float, float]  # (cost_usd, wall_s, accuracy)

#: Two values closer than this (relative) count as equal when comparing points.
REL_TOL = 1e-7


def _key(p: Point) -> tuple[float, float, float]:
    return (p[0], p[1], -p[2])


def _le(a: float, b: float) -> bool:
    return a <= b + REL_TOL * max(1.0, abs(a), abs(b))


def _lt(a: float, b: float) -> bool:
    return a < b - REL_TOL * max(1.0, abs(a), abs(b))


def dominates(a: Point, b: Point) -> bool:
    """``a`` is no worse than ``b`` in every objective and strictly better in one."""
    ka, kb = _key(a), _key(b)
    return all(_le(x, y) for x, y in zip(ka, kb, strict=False)) and any(
        _lt(x, y) for x, y in zip(ka, kb, strict=False)
    )


def same(a: Point, b: Point) -> bool:
    return all(_le(x, y) and _le(y, x) for x, y in zip(_key(a), _key(b), strict=False))


def non_dominated(points: Sequence[Point]) -> list[int]:
    """Indices of the points no other point dominates; of equal points, the first is kept.

    The same comparisons as ``dominates`` and ``same``, one point against all at once."""
    if len(points) == 0:
        return []
    K = np.array([_key(p) for p in points], dtype=float).reshape(-1, 3)
    A = np.abs(K)
    keep: list[int] = []
    with np.errstate(invalid="ignore"):
        for i in range(len(K)):
            tol = REL_TOL * np.maximum(np.maximum(1.0, A), A[i])
            le = K[i] + tol >= K  # _le(q, p) for every q
            lt = K[i] - tol > K  # _lt(q, p)
            dominated = le.all(axis=1) & lt.any(axis=1)
            if dominated.any():
                continue
            if keep:
                kk = np.array(keep)
                ge = K[i] <= K[kk] + tol[kk]  # _le(p, q)
                if (le[kk].all(axis=1) & ge.all(axis=1)).any():
                    continue
            keep.append(i)
    return keep


def front2d(c: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Indices of the 2-D points (both minimized) that no other point weakly dominates, by exact
    float comparison; of equal points the first is kept. Sorted by ``c``. O(n log n)."""
    c, t = np.asarray(c, dtype=float), np.asarray(t, dtype=float)
    if c.size == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.lexsort((t, c))  # stable: by c, then t, then position
    ts = t[order]
    best_before = np.minimum.accumulate(np.concatenate(([np.inf], ts[:-1])))
    return order[ts < best_before]


def exact_front(points: Sequence[Point]) -> list[int]:
    """Indices (ascending) of the points that no other point weakly dominates by exact float
    comparison (of equal points the first by (cost, time) order is kept): a fast prefilter for
    ``non_dominated``, one 2-D staircase per accuracy level, best level first."""
    if len(points) == 0:
        return []
    P = np.array(points, dtype=float).reshape(-1, 3)
    keep: list[np.ndarray] = []
    stair_c, stair_t = np.zeros(0), np.zeros(0)  # the front of the better levels so far
    for a in np.unique(P[:, 2])[::-1]:
        idx = np.flatnonzero(P[:, 2] == a)
        idx = idx[front2d(P[idx, 0], P[idx, 1])]
        if stair_c.size:
            j = np.searchsorted(stair_c, P[idx, 0], side="right") - 1  # dearest better point <= c
            beaten = (j >= 0) & (stair_t[np.maximum(j, 0)] <= P[idx, 1])
            idx = idx[~beaten]
        keep.append(idx)
        c, t = np.concatenate([stair_c, P[idx, 0]]), np.concatenate([stair_t, P[idx, 1]])
        s = front2d(c, t)
        stair_c, stair_t = c[s], t[s]
    return sorted(int(i) for i in np.concatenate(keep))


def sorted_non_dominated(points: Sequence[Point]) -> list[int]:
    """``non_dominated`` for points sorted by (cost, time, -accuracy), fast on large fronts.

    Exact dominance first (``exact_front``); then the tolerance comparisons of ``dominates`` and
    ``same``, only between a point and those above it by at most the tolerance in some
    objective: no other point can be within tolerance of it in all. On sorted input a point
    dropped by the exact pass would be dropped by ``non_dominated`` too (its dominator comes
    first), so both keep the same points.
    """
    pre = np.array(exact_front(points), dtype=np.int64)
    if pre.size == 0:
        return []
    K = np.array([_key(points[i]) for i in pre], dtype=float).reshape(-1, 3)
    n = len(K)
    A = np.abs(K)
    reach = 2 * REL_TOL * np.maximum(1.0, A)  # bounds REL_TOL * max(1, |p|, |q|) for q within it
    pi, qi = [], []
    for d in range(3):
        order = np.argsort(K[:, d], kind="stable")
        vals = K[order, d]
        lo = np.searchsorted(vals, K[:, d], side="right")  # strictly above p in d
        hi = np.searchsorted(vals, K[:, d] + reach[:, d], side="right")
        width = np.maximum(hi - lo, 0)
        if width.sum() == 0:
            continue
        p_rep = np.repeat(np.arange(n), width)
        start = np.repeat(lo - np.cumsum(width) + width, width)
        pi.append(p_rep)
        qi.append(order[start + np.arange(width.sum())])
    dominated = np.zeros(n, dtype=bool)
    partners: dict[int, list[int]] = {}
    if pi:
        p_all, q_all = np.concatenate(pi), np.concatenate(qi)
        with np.errstate(invalid="ignore"):
            tol = REL_TOL * np.maximum(np.maximum(1.0, A[p_all]), A[q_all])
            le_qp = (K[q_all] <= K[p_all] + tol).all(axis=1)  # _le(q, p) in every objective
            lt_qp = (K[q_all] < K[p_all] - tol).any(axis=1)
            le_pq = (K[p_all] <= K[q_all] + tol).all(axis=1)
        np.logical_or.at(dominated, p_all[le_qp & lt_qp], True)
        for p, q in zip(p_all[le_qp & le_pq].tolist(), q_all[le_qp & le_pq].tolist(), strict=False):
            partners.setdefault(p, []).append(q)
    keep: list[int] = []
    kept = np.zeros(n, dtype=bool)
    for i in range(n):
        if dominated[i] or any(kept[j] for j in partners.get(i, ())):
            continue
        kept[i] = True
        keep.append(int(pre[i]))
    return keep


def hypervolume(points: Sequence[Point], reference: Point) -> float:
    """Exact hypervolume dominated by ``points`` up to ``reference`` (all objectives minimized
    after negating accuracy), by slicing along the cost axis."""
    ref = np.array(_key(reference), dtype=float)
    P = np.array([_key(p) for p in points], dtype=float).reshape(-1, 3)
    P = P[np.all(ref > P, axis=1)]
    if len(P) == 0:
        return 0.0
    xs = np.unique(np.concatenate([P[:, 0], [ref[0]]]))
    total = 0.0
    for x0, x1 in itertools.pairwise(xs):
        active = P[P[:, 0] <= x0][:, 1:]
        total += (x1 - x0) * _area_2d(active, ref[1:])
    return float(total)


def _area_2d(P: np.ndarray, ref: np.ndarray) -> float:
    """Area dominated by 2-D points (both minimized) up to ``ref``."""
    if len(P) == 0:
        return 0.0
    xs = np.unique(np.concatenate([P[:, 0], [ref[0]]]))
    area = 0.0
    for a, b in itertools.pairwise(xs):
        ymin = P[P[:, 0] <= a][:, 1].min()
        area += (b - a) * max(ref[1] - ymin, 0.0)
    return float(area)


def knee_index(points: Sequence[Point]) -> int:
    """The point closest (Euclidean) to the ideal point after scaling each objective to [0, 1].

    Objectives with no spread are ignored. Ties go to the cheaper, then faster point.
    """
    if not points:
        raise ValueError("knee_index needs at least one point")
    K = np.array([_key(p) for p in points], dtype=float)
    lo, hi = K.min(axis=0), K.max(axis=0)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    N = (K - lo) / span
    d = np.sqrt((N**2).sum(axis=1))
    order = sorted(range(len(points)), key=lambda i: (round(float(d[i]), 12), K[i, 0], K[i, 1], K[i, 2]))
    return order[0]


def finite(p: Point) -> bool:
    return all(math.isfinite(v) for v in p)
