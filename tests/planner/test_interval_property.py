"""The prediction interval is computed from the profile as documented
(``paretrain.planner.measure.uncertainty``): properties that hold on any machine.

Whether runs really fall inside their intervals is a statistical figure, measured by the fidelity
benchmark (``benchmarks/plan_fidelity.py``, ``benchmarks/results/plan_fidelity.json``), never
asserted here: a test that times a run fails whenever a machine is faster or slower than its
profile.
"""

from __future__ import annotations

import math

import pytest

from paretrain.planner.measure.uncertainty import (
    SPEED_FLOOR,
    StageDraw,
    Uncertainty,
    candidate_intervals,
)

Z90 = 1.2815515655446004  # the standard normal's 90th percentile


def _stage(spread: float, hardware: str = "a", time_s: float = 100.0) -> StageDraw:
    return StageDraw(hardware, 64, 10_000.0, time_s, time_s * 1e-4, 1e9, spread)


@pytest.mark.parametrize("spread", [0.0, 0.05, 0.12, 0.3])
def test_one_stage_interval_is_the_log_normal_of_its_offers_speed_spread(spread):
    """With no convergence spread and B_noise far above the batch, a one-stage wall interval is
    exp(+-z90 * max(spread, SPEED_FLOOR)) around the point prediction, as documented."""
    _cost, wall, p_reach, needed = candidate_intervals([_stage(spread)], Uncertainty(0.0, 0.0))
    s = max(spread, SPEED_FLOOR)
    assert wall.p50 == pytest.approx(100.0, rel=0.02)
    assert math.log(wall.p90 / wall.p50) == pytest.approx(Z90 * s, rel=0.06)
    assert math.log(wall.p50 / wall.p10) == pytest.approx(Z90 * s, rel=0.06)
    assert needed.p10 == needed.p50 == needed.p90 == pytest.approx(10_000.0)
    assert p_reach == 1.0


def test_the_convergence_spread_scales_samples_time_and_cost_together():
    cost, wall, p_reach, needed = candidate_intervals([_stage(0.0)], Uncertainty(0.2, 0.0))
    assert math.log(needed.p90 / needed.p50) == pytest.approx(Z90 * 0.2, rel=0.06)
    # time carries the convergence factor and the speed factor, independent: variances add
    assert math.log(wall.p90 / wall.p50) == pytest.approx(Z90 * math.hypot(0.2, SPEED_FLOOR), rel=0.08)
    assert cost.p90 / cost.p50 == pytest.approx(wall.p90 / wall.p50, rel=0.02)
    assert 0.4 < p_reach < 0.6  # the plan's samples are the median of what is needed


def test_stages_on_one_offer_share_its_speed_draw_and_fixed_parts_are_not_scaled():
    one = candidate_intervals([_stage(0.1, time_s=200.0)], Uncertainty(0.0, 0.0))[1]
    two = candidate_intervals([_stage(0.1), _stage(0.1)], Uncertainty(0.0, 0.0))[1]
    apart = candidate_intervals([_stage(0.1, "a"), _stage(0.1, "b")], Uncertainty(0.0, 0.0))[1]
    assert two.p90 / two.p50 == pytest.approx(one.p90 / one.p50, rel=0.01)  # a slow machine is slow all run
    assert apart.p90 / apart.p50 < two.p90 / two.p50  # two offers' draws average out
    fixed = candidate_intervals([_stage(0.1)], Uncertainty(0.0, 0.0), fixed_s=50.0)[1]
    assert fixed.p90 - fixed.p50 == pytest.approx(
        candidate_intervals([_stage(0.1)], Uncertainty(0.0, 0.0))[1].p90 - 100.0, rel=0.03
    )
