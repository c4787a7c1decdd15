"""The fast front filters of paretrain.planner.program.pareto against their pairwise definitions."""

from __future__ import annotations

import random

import numpy as np

from paretrain.planner.program.pareto import exact_front, front2d, non_dominated, sorted_non_dominated


def test_front2d_and_exact_front_match_pairwise_definitions():
    rng = random.Random(5)
    for _ in range(300):
        pts = [
            (rng.randint(0, 6), rng.randint(0, 6), rng.choice([0.7, 0.8, 0.9]))
            for _ in range(rng.randint(0, 14))
        ]
        c, t = np.array([p[0] for p in pts], dtype=float), np.array([p[1] for p in pts], dtype=float)
        expect2 = [
            i
            for i, p in enumerate(pts)
            if not any(q[0] <= p[0] and q[1] <= p[1] and (q[:2] != p[:2] or j < i) for j, q in enumerate(pts))
        ]
        assert sorted(front2d(c, t).tolist()) == expect2

        def weakly(q, p):
            return q[0] <= p[0] and q[1] <= p[1] and q[2] >= p[2]

        expect3 = [
            i
            for i, p in enumerate(pts)
            if not any(weakly(q, p) and (q != p or j < i) for j, q in enumerate(pts))
        ]
        assert exact_front(pts) == expect3


def test_sorted_non_dominated_equals_non_dominated_with_near_ties():
    # values a hair apart (inside and outside the 1e-7 tolerance), at several magnitudes
    rng = random.Random(3)
    costs = [1e-3, 2e-3, 2e-3 + 5e-8, 2e-3 + 3e-7, 1.0, 1 + 5e-8, 1 + 2e-7, 3.0, 1e3, 1e3 * (1 + 5e-8)]
    times = [1.0, 1 + 5e-8, 2.0, 2 + 3e-7, 10.0, 1e4, 1e4 + 3e-4]
    accs = [0.7, 0.8, 0.8 - 5e-8, 0.9]
    for _ in range(1500):
        pts = sorted(
            ((rng.choice(costs), rng.choice(times), rng.choice(accs)) for _ in range(rng.randint(0, 25))),
            key=lambda p: (p[0], p[1], -p[2]),
        )
        assert sorted_non_dominated(pts) == non_dominated(pts)


def test_sorted_non_dominated_merges_near_ties_on_a_front_of_thousands():
    rng = np.random.default_rng(0)
    c = np.sort(rng.uniform(0, 1e-3, 20000))  # dollars: the absolute 1e-7 tolerance merges neighbours
    pts = [
        (float(x), float(1.0 / (x + 1e-4)), float(a))
        for x, a in zip(c, rng.choice([0.7, 0.8], 20000), strict=False)
    ]
    pts.sort(key=lambda p: (p[0], p[1], -p[2]))
    keep = sorted_non_dominated(pts)
    sample = pts[:1500]  # the quadratic definition on a slice it can afford
    assert sorted_non_dominated(sample) == non_dominated(sample)
    assert 0 < len(keep) < len(pts)
