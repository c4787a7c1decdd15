"""The label DP of paretrain.planner.program.paths against the MILP sweep and brute-force enumeration."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import paretrain.planner.program.paths as paths
from benchmarks._instances import instance
from paretrain.planner.errors import InfeasiblePlan
from paretrain.planner.program.milp import pareto_front
from paretrain.planner.program.pareto import exact_front
from paretrain.planner.program.problem import Choice, Option, Problem, prune_dominated
from tests.planner.synthetic import brute_force_front, random_problem


def _key(front):
    return [(round(s.cost_usd, 12), round(s.wall_s, 9), s.score) for s in front]


def _capped(seed: int, rich: bool = False) -> Problem:
    """A random instance with moves (time, money in, egress out) and, by seed, a budget, a
    deadline and an accuracy floor cutting into its unconstrained front. ``rich``: the
    benchmark's generator (precisions, workers, two accuracy levels per config; fronts of
    dozens of points), pruned so that the MILP sweep stays quick."""
    rng = np.random.default_rng(seed)
    if rich:
        p = prune_dominated(
            instance(
                seed,
                configs=2,
                offers=3,
                batches=2,
                precisions=2,
                workers=2,
                stages=int(rng.integers(2, 5)),
                levels=2,
            )
        )[0]
    else:
        p = random_problem(
            seed,
            choices=int(rng.integers(2, 5)),
            stages=int(rng.integers(2, 5)),
            hardware=int(rng.integers(2, 4)),
            batches=int(rng.integers(2, 4)),
            switch=seed % 4 != 0,
        )
    p = dataclasses.replace(p, score_floor=float(np.median(p.score)) if seed % 2 else 0.0)
    full = pareto_front(p, method="paths").schedules
    caps = {}
    if seed % 3 != 1:
        caps["budget_usd"] = float(np.quantile([s.cost_usd for s in full], rng.uniform(0.6, 1.0)))
    if seed % 3 != 2:
        caps["deadline_s"] = float(np.quantile([s.wall_s for s in full], rng.uniform(0.6, 1.0)))
    return dataclasses.replace(p, **caps)


@pytest.mark.parametrize("seed", range(32))
def test_label_dp_equals_the_milp_sweep_with_moves_caps_and_floors(seed):
    p = _capped(seed, rich=seed >= 20)
    try:
        milp = pareto_front(p, method="milp")
    except InfeasiblePlan as err:  # budget and deadline together can cut everything
        with pytest.raises(InfeasiblePlan) as info:
            pareto_front(p, method="paths")
        assert str(info.value) == str(err)
        return
    dp = pareto_front(p, method="paths")
    assert dp.method == "paths" and milp.method == "milp"
    assert dp.proven_optimal and dp.solves == 0
    assert _key(dp.schedules) == _key(milp.schedules)


@pytest.mark.parametrize("seed", range(12))
def test_label_dp_equals_brute_force_with_caps(seed):
    p = _capped(100 + seed)
    if len(p.options) ** p.stages * len(p.choices) > 20000:  # keep brute force short: two stages
        p = dataclasses.replace(
            p, time_s=p.time_s[:, :2], cost_usd=p.cost_usd[:, :2], samples=p.samples[:, :2]
        )
    expected = brute_force_front(p)
    if not expected:
        with pytest.raises(InfeasiblePlan):
            pareto_front(p, method="paths")
        return
    assert _key(pareto_front(p, method="paths").schedules) == _key(expected)


def _final(found):
    found = sorted(found, key=lambda s: (s.cost_usd, s.wall_s, -s.score, s.choice, s.options))
    pts = [(s.cost_usd, s.wall_s, s.score) for s in found]
    return _key([found[i] for i in exact_front(pts)])


@pytest.mark.parametrize("seed", range(4))
def test_cut_by_schedules_already_found_changes_no_point(seed):
    p = random_problem(40 + seed, choices=5, stages=4, hardware=3, batches=3)
    with_cut, without = paths.path_front(p), paths.path_front(p, bound=False)
    assert len(with_cut) <= len(without)
    assert _final(with_cut) == _final(without)


def _two_hw(switch_s, switch_usd, leave_usd) -> Problem:
    """One config, 3 stages; hardware "a" is slow and cheap (10 s, $1), "b" fast and dear (4 s, $3)."""
    time = np.tile([10.0, 4.0], (1, 3, 1))
    cost = np.tile([1.0, 3.0], (1, 3, 1))
    return Problem(
        (Choice("x", 0.9),),
        (Option("a", "fp32", 32), Option("b", "fp32", 32)),
        ("a", "b"),
        time,
        cost,
        np.ones_like(time),
        np.array([0, 1]),
        np.array(switch_s, dtype=float),
        np.array(switch_usd, dtype=float),
        np.array(leave_usd, dtype=float),
    )


def test_moves_are_charged_like_evaluate_and_the_first_stage_pays_none():
    p = _two_hw([5.0, 1.0], [0.5, 0.25], [0.125, 0.0])
    front = pareto_front(p, method="paths").schedules
    for s in front:
        assert (s.cost_usd, s.wall_s) == (
            p.evaluate(s.choice, s.options).cost_usd,
            p.evaluate(s.choice, s.options).wall_s,
        )
    # all-a ($3, 30 s) and all-b ($9, 12 s) pay no move; a,a,b pays egress 0.125 + 0.25 and 1 s
    assert (3.0, 30.0) in [(s.cost_usd, s.wall_s) for s in front]
    assert (9.0, 12.0) in [(s.cost_usd, s.wall_s) for s in front]
    assert (5.375, 25.0) in [(s.cost_usd, s.wall_s) for s in front]
    assert _key(front) == _key(brute_force_front(p))


def test_label_limit_falls_back_to_the_milp_sweep(monkeypatch):
    p = random_problem(9, choices=2, stages=3, hardware=2, batches=2)
    exact = pareto_front(p, method="paths")
    monkeypatch.setattr(paths, "MAX_LABELS", 1)
    with pytest.raises(paths.LabelLimit):
        pareto_front(p, method="paths")
    fallback = pareto_front(p)
    assert fallback.method == "milp" and fallback.solves > 0
    assert any("MILP sweep" in n for n in fallback.notes)
    assert _key(fallback.schedules) == _key(exact.schedules)


def test_points_thins_the_exact_front_with_its_extremes():
    p = random_problem(3, choices=3, stages=3, hardware=2, batches=2)
    exact = pareto_front(p).schedules
    thin = pareto_front(p, points=4)
    assert thin.method == "paths" and len(thin.schedules) == min(4, len(exact))
    assert set(_key(thin.schedules)) <= set(_key(exact))
    assert min(s.cost_usd for s in thin.schedules) == min(s.cost_usd for s in exact)
    assert min(s.wall_s for s in thin.schedules) == min(s.wall_s for s in exact)


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="`method` must be one of"):
        pareto_front(random_problem(1), method="magic")


def test_without_move_costs_every_count_of_fast_stages_is_on_the_front():
    p = _two_hw([0.0, 0.0], [0.0, 0.0], [0.0, 0.0])
    front = pareto_front(p, method="paths").schedules
    assert [(s.cost_usd, s.wall_s) for s in front] == [(3.0, 30.0), (5.0, 24.0), (7.0, 18.0), (9.0, 12.0)]
    assert _key(front) == _key(brute_force_front(p))
