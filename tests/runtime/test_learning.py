"""The run's own learning curve and what the policy makes of it: a target out of reach stops
the run, a curve slower than the plan replans it, a curve on plan changes nothing. Pure: the
curve model and the policy, no torch, no clocks."""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import replace

import pytest

from paretrain.planner.measure.uncertainty import Interval
from paretrain.planner.plan.plan import Candidate, StagePlan
from paretrain.runtime.adapt.learning import MIN_POINTS, REFIT_EVERY, RunCurve, refit_due
from paretrain.runtime.adapt.policy import Action, CurveObservation, Observation, Policy
from paretrain.runtime.run.changes import Evaluated, Refitted, Restored
from paretrain.runtime.run.state import RunState

STAGE = StagePlan(0, "local/cpu-1", "fp32", 64, 1, 10000, 157, 1e-3, 0.01, 10.0, 200.0)


def candidate(level: float) -> Candidate:
    """A plan that expects the level at 9,000-11,000 samples (P10-P90) and schedules 10,000."""
    return Candidate(
        "p01", "c", level, 0.01, 10.0, (STAGE,), samples_interval=Interval(9000.0, 10000.0, 11000.0)
    )


def points(f, upto: int = 8000, step: int = 500) -> tuple[tuple[int, float], ...]:
    rng = random.Random(1)
    return tuple((n, f(n) + rng.gauss(0.0, 0.003)) for n in range(step, upto + 1, step))


def plateau(n: float) -> float:
    return 0.7 - 0.4 * math.exp(-n / 1500)


def power(n: float) -> float:
    return 0.95 - 0.5 * (n / 1000) ** -0.5


def observation(curve: CurveObservation | None, **kw) -> Observation:
    base = dict(
        t_s=100.0,
        spent_usd=0.001,
        budget_usd=1.0,
        deadline_s=1e6,
        spend_rate_ratio=1.0,
        throughput_ratio=1.0,
        convergence_ratio=1.0,
        projected_cost_usd=0.01,
        projected_end_s=200.0,
        price_ratio=1.0,
        pause_until_s=None,
        remaining_s=100.0,
        val_loss=1.0,
        curve=curve,
    )
    base.update(kw)
    return Observation(**base)


def observe(target: float, pts, *, budget_left: float = 1.0, max_samples: int = 40000) -> CurveObservation:
    """The curve refitted to ``pts`` as the policy sees it, the refit before having said the same."""
    run = RunCurve(candidate(target), "maximize", max_samples)
    refit = run.refit(pts)
    assert refit is not None
    refit = replace(refit, previous=refit.to_target)
    return run.observe(
        refit,
        samples=pts[-1][0],
        budget_left_usd=budget_left,
        samples_per_s=1000.0,
        usd_per_s=1e-4,
        level=pts[-1][1],
        metric="val_accuracy",
    )


@pytest.mark.parametrize(
    ("f", "target", "action"),
    [
        (plateau, 0.9, Action.STOP),  # levels off near 0.7, far below 0.9
        (power, power(20000), Action.REPLAN),  # gets there, at twice the plan's samples
        (power, power(10000), Action.CONTINUE),  # gets there where the plan said
    ],
    ids=["plateau-stops", "slower-replans", "on-plan-continues"],
)
def test_the_runs_curve_decides_stop_replan_or_continue(f, target, action):
    c = observe(target, points(f))
    first = replace(c, previous=None)  # the run's first refit is not yet evidence
    assert Policy().decide(observation(first)).action == Action.CONTINUE
    d = Policy().decide(observation(c))
    assert d.action == action, d.reason
    if action == Action.STOP:
        assert c.to_target[0] == math.inf and c.best[0] < 0.75
        assert "val_accuracy will not reach 0.9" in d.reason and "levels off at 0.7" in d.reason
        assert c.go_on_usd == pytest.approx((40000 - 8000) / 1000 * 1e-4)
    if action == Action.REPLAN:
        assert c.to_target[0] > 11000 and "outside the plan's P10-P90 [9000, 11000]" in d.reason
        assert d.detail["ratio"] == pytest.approx(2.0, rel=0.25)


def test_a_slower_curve_replans_with_the_convergence_scaled_by_its_p50_over_the_plans():
    run = RunCurve(candidate(0.8), "maximize", 40000)
    assert run.convergence((19000.0, 20000.0, 23000.0)) == pytest.approx(2.0)
    assert run.convergence((1.0, 1e9, math.inf)) == 5.0  # kept within its bounds
    run.expect((19000.0, 20000.0, 23000.0))  # the replan took it in: the next refit is judged by it
    assert run.expected == (19000.0, 20000.0, 23000.0) and run.planned == (9000.0, 10000.0, 11000.0)


def curve_obs(**kw) -> CurveObservation:
    base = dict(
        samples=8000,
        points=16,
        planned_samples=10000,
        to_target=(math.inf, math.inf, math.inf),
        previous=(math.inf, math.inf, math.inf),
        expected=(9000.0, 10000.0, 11000.0),
        reach=40000.0,
        reach_by="target.max_samples",
        go_on_s=32.0,
        go_on_usd=0.0032,
        metric="val_accuracy",
        level=0.69,
        target=0.9,
        best=(0.7, 0.71),
    )
    base.update(kw)
    return CurveObservation(**base)


def test_the_stop_waits_for_enough_points_a_share_of_the_planned_samples_and_two_refits():
    policy = Policy(min_points=10, min_fraction=0.5, confirm=True)
    assert policy.out_of_reach(curve_obs(points=9)) is None
    assert policy.out_of_reach(curve_obs(samples=4000)) is None  # under half of 10,000
    assert policy.out_of_reach(curve_obs(previous=None)) is None  # the run's first refit
    assert policy.out_of_reach(curve_obs(previous=(30000.0, math.inf, math.inf))) is None  # was reachable
    assert policy.out_of_reach(curve_obs()).action == Action.STOP


def test_the_stop_needs_even_the_optimistic_end_beyond_what_the_run_can_reach():
    policy = Policy(confirm=False)
    # the P10 within the samples left: the run may still get there
    assert policy.out_of_reach(curve_obs(to_target=(30000.0, math.inf, math.inf))) is None
    # the budget binds before target.max_samples: the P10 beyond what it buys stops the run
    d = policy.out_of_reach(
        curve_obs(to_target=(30000.0, 50000.0, math.inf), reach=20000.0, reach_by="the budget left")
    )
    assert d.action == Action.STOP and "where the budget left ends the run" in d.reason
    assert "optimistic P10 needs 30000 samples" in d.reason


def test_out_of_reach_stops_even_in_cooldown_and_learning_waits_for_it():
    policy = Policy(cooldown_s=1e9, confirm=False)
    policy.adapted(99.0)
    assert policy.decide(observation(curve_obs())).action == Action.STOP
    slower = curve_obs(to_target=(15000.0, 20000.0, 30000.0))
    assert policy.decide(observation(slower)).action == Action.CONTINUE  # cooldown
    assert Policy(confirm=False).decide(observation(slower)).action == Action.REPLAN


def test_a_curve_replan_needs_the_refit_before_outside_on_the_same_side():
    policy = Policy()
    slower, faster, inside = (15000.0, 20000.0, 30000.0), (5000.0, 6000.0, 7000.0), (8e3, 1e4, 1.2e4)
    for previous in (None, faster, inside):
        d = policy.decide(observation(curve_obs(to_target=slower, previous=previous)))
        assert d.action == Action.CONTINUE
    d = policy.decide(observation(curve_obs(to_target=slower, previous=(12000.0, 18000.0, 25000.0))))
    assert d.action == Action.REPLAN and d.detail["ratio"] == 2.0


def test_refits_come_at_fixed_counts_of_points_at_most_every_refit_every_evaluations():
    done = [n for n in range(1, 80) if refit_due(n)]
    assert done[0] == MIN_POINTS
    gaps = [b - a for a, b in itertools.pairwise(done)]
    assert max(gaps) == REFIT_EVERY and gaps == sorted(gaps)
    assert len(done) < 80 / 4


def test_the_points_and_the_last_refit_survive_a_checkpoint_and_rolled_back_points_go():
    state = RunState(stages=[STAGE], hw="local/cpu-1")
    with state.unlocked():
        for n in (512, 1024, 1536):
            Evaluated(0.5 + n / 1e4, 1.0, samples=n).apply_to(state)
        Refitted((9000.0, 12000.0, math.inf)).apply_to(state)
        saved = state.position()
        Evaluated(0.9, 1.0, samples=2048).apply_to(state)
        Evaluated(0.7, 1.0, samples=1024).apply_to(state)  # back at 1,024 samples (a rollback)
    assert state.curve_points == ((512, 0.5512), (1024, 0.7))
    resumed = RunState(stages=[STAGE], hw="local/cpu-1")
    with resumed.unlocked():
        Restored(saved, at=0.0, next_eval=2048).apply_to(resumed)
    assert resumed.curve_points == ((512, 0.5512), (1024, 0.6024), (1536, 0.6536))
    assert resumed.curve_refit == (9000.0, 12000.0, math.inf)  # the next refit's "refit before"
