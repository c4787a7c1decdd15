"""Prediction intervals (paretrain/planner/measure/uncertainty.py) and the choices offered from the front
(paretrain/planner/plan/choices.py): merging within the prediction's spread, the confidence filter."""

from __future__ import annotations

import math

import numpy as np
import pytest

from paretrain.planner.measure.uncertainty import (
    FIT_FLOOR,
    SPEED_FLOOR,
    Interval,
    StageDraw,
    candidate_intervals,
    convergence_spread,
)
from paretrain.planner.plan.choices import filter_by_confidence, merge_overlapping, renumber
from paretrain.planner.plan.plan import Candidate, StagePlan
from paretrain.planner.plan.plan_file import plan_from_json, plan_to_json

ST = StagePlan(0, "local/cpu-1", "fp32", 64, 1, 640, 10, 1e-3, 0.0, 1.0, 100.0)


def draw(spread=0.1, samples=10_000.0, time_s=10.0, cost=1.0, hw="local/cpu-1"):
    return StageDraw(hw, 64, samples, time_s, cost, 300.0, spread)


def test_convergence_spread_is_the_floor_on_a_perfect_fit_and_grows_with_residuals():
    e_min, b_noise = 1000.0, 200.0
    exact = [(b, round(e_min * (1 + b / b_noise))) for b in (16, 64, 256, 512)]
    tight = convergence_spread(exact, e_min, b_noise)
    assert tight.e_min == pytest.approx(FIT_FLOOR)
    noisy = [(b, int(n * f)) for (b, n), f in zip(exact, (1.3, 0.8, 1.25, 0.85), strict=False)]
    loose = convergence_spread(noisy, e_min, b_noise)
    assert loose.e_min > 0.15 and loose.b_noise > tight.b_noise


def test_intervals_bracket_the_point_prediction_and_widen_with_the_spread():
    unc = convergence_spread([(16, 1080), (64, 1320), (256, 2280)], 1000.0, 200.0)
    cost, wall, p_reach, needed = candidate_intervals([draw(0.05), draw(0.05)], unc)
    assert cost.p10 < 2.0 < cost.p90 and wall.p10 < 20.0 < wall.p90
    assert 0.2 < p_reach < 0.8  # the point prediction is the middle, not a sure thing
    assert needed.p10 < 20_000 < needed.p90
    _wide_cost, wide_wall, _, _ = candidate_intervals([draw(0.5), draw(0.5)], unc)
    assert (wide_wall.p90 - wide_wall.p10) > 2 * (wall.p90 - wall.p10)


def test_intervals_are_reproducible_and_a_stage_without_spread_still_gets_the_floor():
    unc = convergence_spread([(16, 1080), (64, 1320), (256, 2280)], 1000.0, 200.0)
    a = candidate_intervals([draw(0.0)], unc)
    b = candidate_intervals([draw(0.0)], unc)
    assert a == b
    only_speed = candidate_intervals([draw(0.0)], type(unc)(0.0, 0.0))
    assert only_speed[1].p90 / only_speed[1].p50 == pytest.approx(math.exp(1.2816 * SPEED_FLOOR), rel=0.05)


def test_interval_quantiles_are_monotone_and_pass_through_the_points():
    iv = Interval(8.0, 10.0, 13.0)
    assert iv.quantile(0.5) == pytest.approx(10.0)
    qs = [iv.quantile(q) for q in (0.05, 0.1, 0.5, 0.9, 0.95)]
    assert qs == sorted(qs) and qs[-1] > 13.0 * 0.99
    assert iv.contains(9.0) and not iv.contains(14.0)


def cand(i, cost, wall, acc=0.9, config="m"):
    return Candidate(
        f"x{i}",
        config,
        acc,
        cost,
        wall,
        (ST,),
        cost_interval=Interval(cost * 0.8, cost, cost * 1.2),
        wall_interval=Interval(wall * 0.8, wall, wall * 1.2),
    )


def test_candidates_within_each_others_spread_merge_into_the_cheapest():
    kept, notes = merge_overlapping(
        [
            cand(1, 1.0, 10),
            cand(2, 1.05, 9.5),
            cand(3, 2.0, 5),
            cand(4, 1.0, 10, 0.95),
            cand(5, 1.02, 9.8, config="other"),
        ]
    )
    assert [k.id for k in kept] == ["x1", "x4", "x5", "x3"]
    assert len(notes) == 1 and "1 candidate of m to 0.9" in notes[0]
    assert [c.id for c in renumber(kept)] == ["p01", "p02", "p03", "p04"]


def test_confidence_filter_drops_candidates_whose_quantile_passes_the_budget_or_deadline():
    cands = [cand(1, 1.0, 10), cand(2, 1.0, 30), cand(3, 1.8, 5)]
    kept, notes = filter_by_confidence(cands, 0.9, budget_usd=2.0, deadline_s=33.0)
    assert [c.id for c in kept] == ["x1"]
    assert len(notes) == 2 and any("deadline" in n for n in notes) and any("budget" in n for n in notes)
    kept, _ = filter_by_confidence(cands, 0.5, budget_usd=2.0, deadline_s=33.0)
    assert len(kept) == 3


def test_a_real_plan_carries_intervals_through_its_file(tmp_path):
    from tests.runtime.plans import make_test_plan

    plan = make_test_plan()
    again = plan_from_json(plan_to_json(plan), "plan.json")
    for c in again.candidates:
        assert (
            c.cost_interval is not None and c.cost_interval.p10 <= c.cost_interval.p50 <= c.cost_interval.p90
        )
        assert c.wall_interval is not None and 0.0 <= (c.p_reach or 0.0) <= 1.0
    assert plan_to_json(again) == plan_to_json(plan)


def test_crossing_spread_grows_with_evaluation_noise_and_shrinks_with_a_steep_curve():
    from paretrain.planner.measure.uncertainty import crossing_spread

    rng = np.random.default_rng(0)
    samples = np.arange(1, 41) * 1000
    steep = 0.5 + 0.2 * np.log(samples / 1000)
    flat = 0.5 + 0.02 * np.log(samples / 1000)
    noise = rng.normal(0.0, 0.01, len(samples))

    def spread(curve: np.ndarray, level: float, eval_every: int = 1000) -> float:
        pts = [(int(s), float(v)) for s, v in zip(samples, curve, strict=False)]
        reached = next(s for s, v in pts if v >= level)
        return crossing_spread(pts, level, reached, eval_every)

    clean = spread(steep, 0.9, eval_every=1000)
    assert clean == pytest.approx((1000 / 8000) / np.sqrt(6), rel=0.02)  # quantization alone
    assert spread(steep + noise, 0.9) > clean  # noise adds to it
    assert spread(flat + noise, 0.55) > 3 * spread(steep + noise, 0.9)  # a plateau crossing is vague
    assert spread(steep, 0.9, eval_every=4000) > 3 * clean  # coarse evaluation is vague


def test_the_convergence_spread_is_never_below_the_crossing_spread():
    from paretrain.planner.measure.uncertainty import convergence_spread

    pts = [(16, 1000), (64, 1200), (256, 2000)]
    assert convergence_spread(pts, 1000.0, 200.0, crossing=0.3).e_min >= 0.3
    assert convergence_spread(pts, 1000.0, 200.0).e_min < 0.3


def test_the_fit_residuals_are_pooled_with_the_crossing_spread_by_degrees_of_freedom():
    from paretrain.planner.measure.uncertainty import convergence_spread, crossing_dof

    e_min, b_noise = 1000.0, 200.0
    exact = [(b, round(e_min * (1 + b / b_noise))) for b in (16, 64, 256)]
    # a lucky exact fit (one degree of freedom) is not taken for certainty: the curves' spread holds
    lucky = convergence_spread(exact, e_min, b_noise, crossing=0.06, crossing_dof=30).e_min
    assert lucky == pytest.approx(math.sqrt(30 * 0.06**2 / 31), rel=1e-6)
    # an unlucky one (one residual of 25%) is steadied by 30 evaluation differences ...
    off = [(16, 1080 * 1.3), (64, 1320), (256, 2280)]
    alone = convergence_spread(off, e_min, b_noise).e_min
    pooled = convergence_spread(off, e_min, b_noise, crossing=0.06, crossing_dof=30).e_min
    assert 0.06 < pooled < alone / 2
    # ... and counts for less the fewer differences stand against it
    assert convergence_spread(off, e_min, b_noise, crossing=0.06, crossing_dof=3).e_min > pooled
    # the degrees of freedom: successive differences over a trace's second half
    assert crossing_dof([(i * 100, 0.1 * i) for i in range(1, 11)]) == 4
    assert crossing_dof([(100, 0.5), (200, 0.6)]) == 0
