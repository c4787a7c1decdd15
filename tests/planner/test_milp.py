"""The MILP and its Pareto sweep against hand-checked cases and brute-force enumeration."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from paretrain.planner.errors import InfeasiblePlan
from paretrain.planner.inputs.metric import Metric
from paretrain.planner.program.milp import Formulation, pareto_front
from paretrain.planner.program.pareto import dominates
from paretrain.planner.program.problem import Choice, Option, Problem, prune_dominated
from tests.planner.synthetic import brute_force_front, random_problem


def _key(front):
    return [(round(s.cost_usd, 12), round(s.wall_s, 9), s.score) for s in front]


def hand_problem(**kw) -> Problem:
    """One config, 2 stages, 2 options: slow-cheap (10 s, $1) and fast-dear (4 s, $3) a stage."""
    time = np.array([[[10.0, 4.0], [10.0, 4.0]]])
    cost = np.array([[[1.0, 3.0], [1.0, 3.0]]])
    return Problem(
        (Choice("a", 0.8),),
        (Option("slow", "fp32", 32), Option("fast", "fp32", 32)),
        ("slow", "fast"),
        time,
        cost,
        np.ones_like(time),
        np.array([0, 1]),
        kw.pop("switch_s", np.zeros(2)),
        kw.pop("switch_usd", np.zeros(2)),
        **kw,
    )


def test_hand_checked_front_without_switch_costs():
    front = pareto_front(hand_problem()).schedules
    # all-slow (20 s, $2), one fast stage (14 s, $4), all-fast (8 s, $6)
    assert [(s.cost_usd, s.wall_s) for s in front] == [(2.0, 20.0), (4.0, 14.0), (6.0, 8.0)]


def test_switch_cost_removes_the_mixed_schedule():
    # moving onto either hardware costs 7 s: a mixed schedule (14 + 7 = 21 s, $4) is dominated
    front = pareto_front(hand_problem(switch_s=np.array([7.0, 7.0]))).schedules
    assert [(s.cost_usd, s.wall_s) for s in front] == [(2.0, 20.0), (6.0, 8.0)]


def test_budget_and_deadline_cut_the_front():
    front = pareto_front(hand_problem(budget_usd=5.0, deadline_s=15.0)).schedules
    assert [(s.cost_usd, s.wall_s) for s in front] == [(4.0, 14.0)]


def test_infeasible_plan_reports_smallest_budget_and_deadline():
    with pytest.raises(InfeasiblePlan) as info:
        pareto_front(hand_problem(budget_usd=1.5, deadline_s=12.0))
    err = info.value
    assert err.min_budget_usd == pytest.approx(6.0)  # the only schedule within 12 s: all fast
    assert err.min_deadline_s is None  # nothing costs $1.5 or less, whatever the deadline
    assert err.binding == "budget"
    assert "budget.envelopes.train to at least $6" in str(err)  # the spec's own field


def test_a_minimized_metric_is_named_in_its_own_units_after_pruning():
    # the front prunes dominated options first: the message must still name the spec's metric,
    # its direction and its level, not the program's internal score
    mse = Metric("val_mse", "minimize")
    problem = hand_problem(budget_usd=1.5, deadline_s=12.0, metric=mse, score_floor=mse.score(0.05))
    pruned, _ = prune_dominated(problem)
    assert pruned.metric == mse and pruned.score_floor == problem.score_floor
    with pytest.raises(InfeasiblePlan) as info:
        pareto_front(problem)
    assert "val_mse <= 0.05" in str(info.value) and "val_accuracy" not in str(info.value)


def test_infeasible_deadline_only():
    with pytest.raises(InfeasiblePlan) as info:
        pareto_front(hand_problem(deadline_s=5.0))
    assert info.value.binding == "deadline"
    assert info.value.min_deadline_s == pytest.approx(8.0)
    assert "deadline_s to at least 8 s" in str(info.value)


def test_infeasible_budget_only():
    with pytest.raises(InfeasiblePlan) as info:
        pareto_front(hand_problem(budget_usd=1.0))
    assert info.value.binding == "budget"
    assert info.value.min_budget_usd == pytest.approx(2.0)


@pytest.mark.parametrize("method", ["auto", "milp"])  # auto: the label DP of paretrain.planner.program.paths
@pytest.mark.parametrize("seed", range(50))
def test_exact_front_equals_brute_force(seed, method):
    rng = np.random.default_rng(1000 + seed)
    p = random_problem(
        seed,
        choices=int(rng.integers(1, 4)),
        stages=int(rng.integers(1, 4)),
        hardware=int(rng.integers(1, 3)),
        batches=int(rng.integers(1, 3)),
        switch=bool(seed % 2),
    )
    expected = brute_force_front(p)
    if not expected:  # every option of every choice was drawn absent
        with pytest.raises(InfeasiblePlan):
            pareto_front(p, method=method)
        return
    front = pareto_front(p, method=method)
    assert front.method == ("paths" if method == "auto" else "milp")
    assert _key(front.schedules) == _key(expected)


@pytest.mark.parametrize("seed", range(6))
def test_cbc_gives_the_same_front_as_highs(seed):
    p = random_problem(200 + seed, choices=2, stages=2, hardware=2, batches=2)
    assert _key(pareto_front(p, solver="cbc", method="milp").schedules) == _key(
        pareto_front(p, solver="highs", method="milp").schedules
    )


def test_budget_and_deadline_respected_against_brute_force():
    p0 = random_problem(7, choices=3, stages=2, hardware=2, batches=2)
    full = brute_force_front(p0)
    budget = float(np.median([s.cost_usd for s in full]))
    p = random_problem(7, choices=3, stages=2, hardware=2, batches=2, budget=budget)
    for method in ("auto", "milp"):
        front = pareto_front(p, method=method).schedules
        assert all(s.cost_usd <= budget * (1 + 1e-9) for s in front)
        assert _key(front) == _key(brute_force_front(p))


def test_grid_mode_returns_non_dominated_subset_with_extremes():
    p = random_problem(3, choices=3, stages=3, hardware=2, batches=2)
    exact = pareto_front(p, method="milp").schedules
    grid = pareto_front(p, points=4, method="milp").schedules
    assert len(grid) <= 4
    exact_keys = set(_key(exact))
    assert set(_key(grid)) <= exact_keys
    assert min(s.cost_usd for s in grid) == pytest.approx(min(s.cost_usd for s in exact))
    assert min(s.wall_s for s in grid) == pytest.approx(min(s.wall_s for s in exact))


def test_no_point_on_the_front_dominates_another():
    p = random_problem(11, choices=3, stages=3, hardware=2, batches=2)
    pts = [(s.cost_usd, s.wall_s, s.score) for s in pareto_front(p).schedules]
    assert not any(dominates(a, b) for a in pts for b in pts if a is not b)


def test_min_time_and_min_cost_extremes_match_enumeration():
    p = random_problem(5, choices=2, stages=2, hardware=2, batches=2)
    bf = brute_force_front(p)
    f = Formulation(p)
    assert f.min_cost().cost_usd == pytest.approx(min(s.cost_usd for s in bf))
    assert f.min_time().wall_s == pytest.approx(min(s.wall_s for s in bf))
    assert f.min_cost(time_cap=0.0) is None
    assert math.isfinite(f.min_time(cost_cap=math.inf).wall_s)


def test_a_level_no_config_reaches_is_named_in_the_metrics_own_units_and_direction():
    from paretrain.planner.inputs.metric import Metric

    bpb = Metric("val_bpb", "minimize")
    # the one config reaches a val_bpb of 2.8 (score -2.8); the goal asks for 2.5 or lower
    problem = dataclasses.replace(
        hand_problem(), choices=(Choice("a", bpb.score(2.8)),), score_floor=bpb.score(2.5), metric=bpb
    )
    with pytest.raises(InfeasiblePlan) as info:
        pareto_front(problem)
    text = str(info.value)
    assert "val_bpb <= 2.5" in text and "val_accuracy" not in text and "-2.5" not in text
    assert "raise target.goal" in text and info.value.binding == "level"
