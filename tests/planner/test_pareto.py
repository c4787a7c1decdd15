"""Dominance, filtering, hypervolume and the knee."""

from __future__ import annotations

import itertools
import random

import pytest

from paretrain.planner.program.pareto import dominates, hypervolume, knee_index, non_dominated


def test_dominance_minimizes_cost_and_time_and_maximizes_accuracy():
    assert dominates((1, 1, 0.9), (2, 1, 0.9))
    assert dominates((1, 1, 0.9), (1, 1, 0.8))
    assert not dominates((1, 1, 0.9), (1, 1, 0.9))
    assert not dominates((1, 2, 0.9), (2, 1, 0.9))
    assert not dominates((1, 1, 0.8), (2, 2, 0.9))


def test_non_dominated_matches_pairwise_definition_on_random_sets():
    rng = random.Random(0)
    for _ in range(200):
        pts = [(rng.randint(0, 5), rng.randint(0, 5), rng.choice([0.7, 0.8, 0.9])) for _ in range(12)]
        keep = non_dominated(pts)
        for i, p in enumerate(pts):
            dominated = any(dominates(q, p) for q in pts)
            if dominated:
                assert i not in keep
            else:  # not dominated: kept, or an equal point kept before it
                assert i in keep or any(pts[j] == p for j in keep if j < i)


def test_hypervolume_of_boxes():
    ref = (10.0, 10.0, 0.0)
    assert hypervolume([(5, 5, 0.5)], ref) == pytest.approx(5 * 5 * 0.5)
    # two boxes overlapping in the cost-time plane, same depth
    assert hypervolume([(5, 5, 0.5), (2, 8, 0.5)], ref) == pytest.approx((25 + 8 * 2 - 5 * 2) * 0.5)
    assert hypervolume([(11, 5, 0.5)], ref) == 0.0


def test_hypervolume_matches_monte_carlo():
    rng = random.Random(3)
    pts = [(rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0, 1)) for _ in range(6)]
    ref = (1.0, 1.0, 0.0)
    hits = 0
    n = 40000
    for _ in range(n):
        x = (rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0, 1))
        if any(p[0] <= x[0] and p[1] <= x[1] and p[2] >= x[2] for p in pts):
            hits += 1
    assert hypervolume(pts, ref) == pytest.approx(hits / n, abs=0.01)


def test_hypervolume_only_grows_when_a_point_is_added():
    rng = random.Random(5)
    pts = [(rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0, 1)) for _ in range(8)]
    for k in range(1, len(pts)):
        assert hypervolume(pts[: k + 1], (1, 1, 0)) >= hypervolume(pts[:k], (1, 1, 0)) - 1e-12


def test_knee_is_the_balanced_point():
    pts = [(1.0, 100.0, 0.8), (2.0, 20.0, 0.8), (10.0, 10.0, 0.8)]
    assert knee_index(pts) == 1


def test_knee_of_one_point_and_permutation_invariance():
    assert knee_index([(1, 1, 1)]) == 0
    pts = [(1.0, 9.0, 0.7), (3.0, 3.0, 0.8), (9.0, 1.0, 0.9), (4.0, 4.0, 0.85)]
    chosen = pts[knee_index(pts)]
    for perm in itertools.permutations(pts):
        assert perm[knee_index(list(perm))] == chosen
