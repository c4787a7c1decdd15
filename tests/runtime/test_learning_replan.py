"""A replan for the run's own curve goes through the adaptation's usual path, with the samples
the rest of the run needs scaled by the curve's P50 over the plan's; the refit is judged by
what that replan took in from then on. No training: the adaptation on a plan and a snapshot."""

from __future__ import annotations

from paretrain.planner.measure.uncertainty import Interval
from paretrain.runtime.adapt.adaptation import Adaptation, Snapshot
from paretrain.runtime.adapt.policy import Action, Decision
from paretrain.runtime.money.prices import StaticPrices
from tests.runtime.plans import make_test_plan

PLAN = make_test_plan()


def test_a_curve_replan_scales_the_rest_by_the_curves_p50_over_the_plans():
    cand = PLAN.candidate("cheapest")
    assert isinstance(cand.samples_interval, Interval)
    prices = StaticPrices({o.id: o.price_usd_per_h for o in PLAN.offers})
    adaptation = Adaptation(PLAN, cand, PLAN.spec, prices, lambda hw, t, s: s * 1e-5)
    stage = cand.stages[0]
    snap = Snapshot(
        now=1.0,
        spent=0.0,
        budget=PLAN.spec.budget.train_usd,
        reserve_usd=0.0,
        hw=stage.hardware,
        stage_i=0,
        stages=cand.stages,
        stage_done=0,
        progress=0.0,
        beyond=False,
        samples=0,
        batch_size=stage.batch_size * stage.workers,
        busy_s=0.0,
        busy_usd=0.0,
        val_loss=1.0,
        level=0.0,
    )
    p50 = cand.samples_interval.p50
    slower = (1.8 * p50, 2.0 * p50, 2.3 * p50)
    same = adaptation.replan(snap, Decision(Action.REPLAN, "nothing new"))
    assert same.record["convergence_factor"] == 1.0
    change = adaptation.replan(
        snap, Decision(Action.REPLAN, "the run's curve", detail={"curve_interval": slower})
    )
    assert change.record["convergence_factor"] == 2.0
    assert sum(s.samples for s in change.stages) > 1.8 * sum(s.samples for s in same.stages)
    assert adaptation.learning.expected == slower  # the next refit is judged by what it took in
