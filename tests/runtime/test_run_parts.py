"""Unit tests of the executor's parts, each called with a run state as the executor calls it:
the meter, the account, the budget guard and the recovery (no executor involved)."""

from __future__ import annotations

import math

import pytest

from paretrain.planner.measure.throughput import virtual_checkpoint_s
from paretrain.runtime.money.ledger import Ledger, read_charges
from paretrain.runtime.money.meter import Meter
from paretrain.runtime.money.prices import Event, ScriptedEvents, StaticPrices
from paretrain.runtime.run.account import SECONDS_PER_MONTH, Account, EventLog
from paretrain.runtime.run.changes import CheckpointsFound, EvalScheduled, StateChange, Stepped
from paretrain.runtime.run.guard import BudgetGuard, run_cap
from paretrain.runtime.run.processes import TrainerGroup
from paretrain.runtime.run.recovery import Recovery
from paretrain.runtime.run.state import RunState
from paretrain.runtime.train.workloads import load_workload
from tests.runtime.plans import make_test_plan

PARAMS = 10_000
PLAN = make_test_plan()
#: an emulated offer that one candidate runs on throughout (real math here, virtual clock)
T4 = next(
    c.stages[0].hardware
    for c in PLAN.candidates
    if len({s.hardware for s in c.stages}) == 1 and not PLAN.offer(c.stages[0].hardware).local
)


@pytest.fixture(scope="module")
def plan():
    return PLAN


def write(state: RunState, change: StateChange) -> None:
    """Apply a change as the executor does (these tests call the parts without one)."""
    with state.unlocked():
        change.apply_to(state)


def trained(samples: int, batch: int) -> Stepped:
    return Stepped(samples, batch, loss=0.0, busy_s=0.0, busy_usd=0.0)


def on(plan, hardware):
    return next(c for c in plan.candidates if all(s.hardware == hardware for s in c.stages))


def parts(plan, tmp_path, hardware=T4, budget=1.0, prices=None):
    from paretrain.runtime.run.executor import run_setup

    cand = on(plan, hardware)
    setup = run_setup(plan, cand, tmp_path, run_id="unit")
    setup.run_dir.mkdir(parents=True, exist_ok=True)
    prices = prices or StaticPrices({o.id: o.price_usd_per_h for o in plan.offers})
    meter = Meter(Ledger(setup.ledger_path, setup.run_id), prices)
    account = Account(setup, meter)
    guard = BudgetGuard(setup, account, prices, budget, PARAMS)
    state = RunState(
        stages=list(cand.stages),
        hw=cand.stages[0].hardware,
        batch_size=cand.stages[0].batch_size,
        next_eval=10**9,
    )
    return setup, meter, account, guard, state


# -- meter ---------------------------------------------------------------------------------------


def test_meter_charges_virtual_seconds_at_the_price_and_advances_its_clock(tmp_path):
    meter = Meter(Ledger(tmp_path / "l.jsonl", "m"), StaticPrices({"x": 36.0}))
    usd = meter.charge("compute", "x", stage="s", what="train", emulated=True, seconds=2.0)
    assert usd == pytest.approx(0.02) and meter.t == pytest.approx(2.0) and meter.spent == pytest.approx(0.02)
    meter.charge_amount("storage", 0.5, "x", stage="s", what="ckpt", emulated=True)
    assert meter.t == pytest.approx(2.0) and meter.spent == pytest.approx(0.52)
    meter.wait("x", 3.0, stage="s", emulated=True)  # a wait holds no hardware
    assert meter.t == pytest.approx(5.0) and meter.spent == pytest.approx(0.52)
    assert meter.pending_usd("x", emulated=True) == 0.0
    meter.scale = 3  # three instances cost three times as much
    assert meter.cost_ahead("x", meter.t, 1.0) == pytest.approx(0.03)
    meter.ledger.close()
    kinds = [c["kind"] for c in read_charges(tmp_path / "l.jsonl")]
    assert kinds == ["compute", "storage"]


def test_meter_step_charger_writes_the_same_money_as_a_charge(tmp_path):
    meter = Meter(Ledger(tmp_path / "l.jsonl", "m"), StaticPrices({"x": 36.0}))
    charge = meter.step_charger("x", "s", True)
    total = sum(charge(0.01, 0.5, i) for i in range(4))
    assert total == pytest.approx(0.02) and meter.t == pytest.approx(2.0)
    meter.ledger.close()
    assert sum(c["usd"] for c in read_charges(tmp_path / "l.jsonl")) == pytest.approx(0.02)


# -- account -----------------------------------------------------------------------------------


def test_account_charges_storage_of_the_kept_checkpoints_since_the_last_charge(plan, tmp_path):
    setup, meter, account, _, state = parts(plan, tmp_path)
    write(state, CheckpointsFound((2 * 10**9, 10**9)))
    rate = setup.offer(T4).storage_usd_per_gb_month * 3 / SECONDS_PER_MONTH
    assert account.storage_rate(state) == pytest.approx(rate)
    account.charge(state, "compute", "train", seconds=100.0)
    before = meter.spent
    write(state, account.charge_storage(state, "checkpoints"))
    assert meter.spent - before == pytest.approx(rate * 100.0)
    assert state.storage_t == meter.t
    write(state, account.charge_storage(state, "again"))  # nothing more is owed at the same moment
    assert meter.spent - before == pytest.approx(rate * 100.0)


def test_event_log_writes_events_jsonl_and_zero_dollar_ledger_lines(plan, tmp_path):
    setup, meter, _, _, state = parts(plan, tmp_path)
    events = EventLog(setup, meter)
    events("stage", stage=1)
    events.ledger("replan", state, reason="r")
    meter.ledger.close()
    assert (setup.run_dir / "events.jsonl").read_text().count("\n") == 1
    lines = read_charges(setup.ledger_path)
    assert [(c["kind"], c["usd"], c["event"]) for c in lines] == [("event", 0.0, "replan")]


# -- guard ---------------------------------------------------------------------------------------


def test_guard_stops_exactly_where_a_step_and_a_final_checkpoint_pass_the_budget(plan, tmp_path):
    setup, meter, account, guard, state = parts(plan, tmp_path)
    account.charge(state, "compute", "train", seconds=10.0)
    price_s = setup.offer(T4).price_usd_per_h / 3600.0
    need = price_s * (state.stage.step_s + virtual_checkpoint_s(PARAMS))
    guard.budget = meter.spent + need * (1 + 1e-9)
    assert not guard.over_budget(state)
    guard.budget = meter.spent + need * (1 - 1e-9)
    assert guard.over_budget(state)


def test_guard_reserves_a_due_evaluation(plan, tmp_path):
    setup, _meter, _, guard, state = parts(plan, tmp_path)
    price_s = setup.offer(T4).price_usd_per_h / 3600.0
    need = price_s * (state.stage.step_s + virtual_checkpoint_s(PARAMS))
    guard.budget = need * 1.0001
    assert not guard.over_budget(state)
    write(state, EvalScheduled(state.samples + state.batch_size))  # the next step brings an evaluation
    assert guard.over_budget(state)


def test_guard_window_ends_a_reserve_before_the_next_price_change(plan, tmp_path):
    base = StaticPrices({o.id: o.price_usd_per_h for o in plan.offers})
    prices = ScriptedEvents(
        base, [Event(at_s=0.5, kind="price", factor=2.0, duration_s=math.inf, hardware=T4)]
    )
    _, meter, _, guard, state = parts(plan, tmp_path, prices=prices)
    w = guard.window(state, meter.t)
    assert w is not None
    reserve = guard.step_s(state) + guard.eval_s(state) + guard.ckpt_s(state) + 0.01
    assert w.until == pytest.approx(0.5 - reserve)
    assert w.spend < guard.budget
    # from a moment after the change, the window runs its full second
    meter.charge("compute", T4, stage="s", what="x", emulated=True, seconds=0.6)
    w2 = guard.window(state, meter.t)
    assert w2 is not None and w2.until == pytest.approx(meter.t + 1.0)
    assert w2.price_s == pytest.approx(2 * w.price_s)


def test_guard_counts_egress_and_the_switch_when_a_change_moves_offers(plan, tmp_path):
    other = next(o.id for o in plan.offers if o.id != T4 and not o.local)
    _, _meter, _, guard, state = parts(plan, tmp_path)
    write(state, CheckpointsFound((10**9,)))
    same = guard.budget = 10.0
    assert not guard.change_over_budget(state, T4)
    # find the budget at which staying fits but moving does not
    lo, hi = 0.0, same
    for _ in range(60):
        mid = (lo + hi) / 2
        guard.budget = mid
        if guard.change_over_budget(state, T4):
            lo = mid
        else:
            hi = mid
    guard.budget = hi * 1.000001
    assert not guard.change_over_budget(state, T4)
    assert guard.change_over_budget(state, other)


def test_run_cap_leaves_the_project_ceiling_minus_other_runs_spend(plan, tmp_path):
    from dataclasses import replace

    from paretrain.runtime.run.executor import run_setup

    setup = run_setup(plan, on(plan, T4), tmp_path, run_id="cap")
    other = Ledger(tmp_path / ".paretrain" / "ledger" / "other.jsonl", "other")
    other.charge("compute", 0.3, seconds=1.0, stage="s", hardware=T4, what="x")
    other.close()
    budget = replace(setup.spec.budget, project_ceiling_usd=0.5)
    spec = replace(setup.spec, budget=budget)
    with Ledger(setup.ledger_path, "cap") as own:
        assert run_cap(spec, own) == pytest.approx(min(0.2, spec.budget.train_usd))
        assert run_cap(setup.spec, own) == spec.budget.train_usd


def test_stop_at_is_when_what_is_left_pays_only_for_a_final_checkpoint(plan, tmp_path):
    import time

    local = "local/cpu-1"
    prices = StaticPrices({**{o.id: o.price_usd_per_h for o in plan.offers}, local: 3600.0})  # $1 a second
    _setup, meter, _account, guard, state = parts(plan, tmp_path, hardware=local, budget=10.0, prices=prices)
    meter.charge("compute", local, stage="s", what="train", emulated=False, seconds=2.0)  # $2 spent
    ckpt = guard.ckpt_s(state)
    left_s = guard.stop_at(state) - time.perf_counter()
    assert left_s == pytest.approx(8.0 - ckpt, abs=0.05)
    guard.budget = 2.0  # nothing left: the moment is now
    assert guard.stop_at(state) <= time.perf_counter()
    # the price doubles 3 s from now: $3 at $1 a second, then the rest at $2
    doubled = ScriptedEvents(
        prices, [Event(at_s=5.0, kind="price", factor=2.0, duration_s=100.0, hardware=local)]
    )
    _s, meter2, _a, guard2, state2 = parts(plan, tmp_path / "p", hardware=local, budget=10.0, prices=doubled)
    meter2.charge("compute", local, stage="s", what="train", emulated=False, seconds=2.0)
    left2 = guard2.stop_at(state2) - time.perf_counter()
    assert left2 == pytest.approx(3.0 + (8.0 - 3.0 - guard2.ckpt_s(state2)) / 2.0, abs=0.05)
    # on an emulated offer a step costs the plan's time whatever it takes here: no deadline
    *_, emu_guard, emu_state = parts(plan, tmp_path / "emu")
    assert emu_guard.stop_at(emu_state) == math.inf


# -- recovery ------------------------------------------------------------------------------------


def recovery_parts(plan, tmp_path, budget=1.0, prices=None):
    setup, meter, account, guard, state = parts(plan, tmp_path, budget=budget, prices=prices)
    group = TrainerGroup(
        setup, load_workload(setup.spec.workload, tmp_path / "cache"), plan.config(setup.cand.config_id)
    )
    trainer = group.start(state.stage)
    guard.param_count = trainer.parameter_count()
    events = EventLog(setup, meter)
    return (
        setup,
        meter,
        account,
        guard,
        state,
        group,
        Recovery(
            account,
            guard,
            group,
            events,
            prices or StaticPrices({o.id: o.price_usd_per_h for o in plan.offers}),
            lambda m: None,
            lambda change: write(state, change),
        ),
    )


def test_recovery_restores_the_trainer_and_position_and_records_the_work_lost(plan, tmp_path):
    import torch

    setup, meter, account, _, state, group, rec = recovery_parts(plan, tmp_path)
    for _ in range(3):
        group.trainer.step()
    write(state, trained(3 * group.trainer.batch_size, group.trainer.batch_size))
    rec.checkpoint(state, "unit")
    saved = {k: v.clone() for k, v in group.trainer.model.state_dict().items()}
    position = (state.stage_i, state.stage_done, state.progress)
    spent_at_checkpoint = meter.spent
    for _ in range(5):
        group.trainer.step()
        account.charge(state, "compute", "train", seconds=0.5)
    write(state, trained(5 * group.trainer.batch_size, group.trainer.batch_size))
    loaded = rec.load_latest()
    lost = meter.spent - loaded[0]["run"]["spent_usd"]  # the checkpoint's own write included
    assert lost >= meter.spent - spent_at_checkpoint > 0
    lost_s = meter.t - loaded[0]["run"]["t_run"]
    rec.restore(state, loaded, reason="resume")
    assert all(torch.equal(saved[k], v) for k, v in group.trainer.model.state_dict().items())
    assert (state.stage_i, state.stage_done, state.progress) == position
    meter.ledger.close()
    ev = next(c for c in read_charges(setup.ledger_path) if c.get("event") == "resume")
    assert ev["lost_usd"] == pytest.approx(lost, rel=1e-9)
    assert ev["lost_s"] == pytest.approx(lost_s, abs=1e-6) and lost_s >= 2.5
    group.close()


def test_recovery_preemption_past_the_deadline_stops_and_charges_storage_only(plan, tmp_path):
    base = StaticPrices({o.id: o.price_usd_per_h for o in plan.offers})
    gone = ScriptedEvents(
        base, [Event(at_s=0.0, kind="preempt", factor=1.0, duration_s=math.inf, hardware=T4)]
    )
    setup, meter, _, _, state, group, rec = recovery_parts(plan, tmp_path, prices=gone)
    rec.checkpoint(state, "start")
    lines = meter.ledger.lines
    assert rec.preempted(state) == "deadline"
    meter.ledger.close()
    after = list(read_charges(setup.ledger_path))[lines:]
    assert after and all(c["kind"] in ("storage", "event") for c in after)
    assert any(c.get("event") == "preemption" for c in after)
    group.close()


def test_recovery_preemption_that_cannot_afford_the_restart_stops_at_the_budget(plan, tmp_path):
    base = StaticPrices({o.id: o.price_usd_per_h for o in plan.offers})
    gap = ScriptedEvents(base, [Event(at_s=0.0, kind="preempt", factor=1.0, duration_s=5.0, hardware=T4)])
    _setup, meter, _, guard, state, group, rec = recovery_parts(plan, tmp_path, prices=gap)
    rec.checkpoint(state, "start")
    guard.budget = meter.spent  # not a cent left for the restart
    assert rec.preempted(state) == "budget"
    guard.budget = 1.0
    assert rec.preempted(state) is None  # back after the gap, restored
    assert meter.t >= 5.0
    group.close()
