"""One reserve rule on the real clock (paretrain.runtime.money.reserve), used by the lab's meter
(profile and search) and by a run's budget guard."""

from __future__ import annotations

import pytest

from paretrain.runtime.money.reserve import MARGIN, SLACK_S, reserve_s
from paretrain.runtime.train.lab_meter import FIRST_UNIT_S, EnvelopeExhausted, LabMeter


def test_the_reserve_is_the_margin_times_the_slowest_of_expected_recent_and_floor_plus_slack():
    assert reserve_s(0.1) == pytest.approx(MARGIN * 0.1 + SLACK_S)
    assert reserve_s(0.1, slowest_s=0.4) == pytest.approx(MARGIN * 0.4 + SLACK_S)
    assert reserve_s(0.1, slowest_s=0.4, floor_s=1.0) == pytest.approx(MARGIN * 1.0 + SLACK_S)


def test_the_lab_meter_stops_where_the_reserve_of_the_next_unit_passes_its_envelope():
    price = 1.0  # a dollar a second: the envelope reads in seconds
    fits = LabMeter(None, reserve_s(0.5) * price + 0.05, price, "local/cpu-1", "steps")
    fits.guard(0.5)  # the reserve fits, with 50 ms for the time pending since the meter began
    short = LabMeter(None, reserve_s(0.5) * price * 0.99, price, "local/cpu-1", "steps")
    with pytest.raises(EnvelopeExhausted, match=r"budget\.envelopes\.profile"):
        short.guard(0.5)


def test_a_measurements_first_unit_is_reserved_as_a_first_unit_not_as_nothing():
    price = 1.0
    # room for the bookkeeping's slack, not for a first unit: nothing observed, nothing expected
    first = LabMeter(None, reserve_s(FIRST_UNIT_S) * price * 0.9, price, "local/cpu-1", "peak")
    with pytest.raises(EnvelopeExhausted):
        first.guard(0.0)
    later = LabMeter(None, reserve_s(FIRST_UNIT_S) * price * 0.9, price, "local/cpu-1", "peak")
    later.observe(0.001)  # once a unit was timed, its time is what is reserved
    later.guard(0.0)


def test_the_lab_meter_asks_for_more_before_it_stops():
    asked: list[float] = []

    def more(usd: float) -> float:
        asked.append(usd)
        return usd

    meter = LabMeter(None, 0.0, 1.0, "local/cpu-1", "trial", stage="search")
    meter.more = more
    meter.guard(0.2)
    assert asked and asked[0] >= reserve_s(0.2)


def test_a_runs_guard_reserves_step_evaluation_and_checkpoint_by_the_same_rule(tmp_path):
    from paretrain.runtime.money.ledger import Ledger
    from paretrain.runtime.money.meter import Meter
    from paretrain.runtime.money.prices import StaticPrices
    from paretrain.runtime.run.account import Account
    from paretrain.runtime.run.guard import BudgetGuard
    from paretrain.runtime.run.setup import run_setup
    from paretrain.runtime.run.state import RunState
    from tests.runtime.plans import make_test_plan

    plan = make_test_plan()
    cand = plan.candidates[0]
    setup = run_setup(plan, cand, tmp_path, run_id="reserve")
    prices = StaticPrices({o.id: o.price_usd_per_h for o in plan.offers})
    meter = Meter(Ledger(setup.ledger_path, setup.run_id), prices)
    guard = BudgetGuard(setup, Account(setup, meter), prices, 1.0, 10_000)
    stage = cand.stages[0]
    # a local offer: the real clock, whose recent slowest step, evaluation and checkpoint count
    state = RunState(
        stages=[stage], hw="local/cpu-1", slowest=0.5, eval_real=0.25, ckpt_real=0.125, connect_s=2.0
    )
    assert guard.step_s(state) == pytest.approx(reserve_s(stage.step_s, 0.5) + 2.0)
    assert guard.eval_s(state) == pytest.approx(reserve_s(stage.eval_s, 0.25))
    assert guard.ckpt_s(state) == pytest.approx(reserve_s(0.125))
    meter.ledger.close()
