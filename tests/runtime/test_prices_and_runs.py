"""Price sources, preemption from a trace, storage, the project ceiling, and the ledger CLI."""

from __future__ import annotations

import math

import pytest
from click.testing import CliRunner

from paretrain.cli import cli
from paretrain.planner.errors import SpecError
from paretrain.planner.plan.plan_file import plan_to_json
from paretrain.runtime.money.ledger import read_charges
from paretrain.runtime.money.prices import (
    Event,
    ScriptedEvents,
    StaticPrices,
    TracePrices,
    cost,
    next_available,
    parse_trace,
)
from paretrain.runtime.run.executor import Executor, RunStopped
from tests.runtime.plans import make_test_plan, tiny_spec, with_spec

HW = "aws/g4dn.xlarge"


def test_cost_integrates_across_every_price_change():
    base = StaticPrices({HW: 3600.0})  # $1 per second
    src = ScriptedEvents(
        TracePrices([(10.0, HW, 7200.0, True)], {HW: 3600.0}),
        [Event(at_s=5.0, kind="price", factor=3.0, duration_s=2.0)],
    )
    assert cost(base, HW, 0.0, 4.0) == pytest.approx(4.0)
    # [0,5) $1/s, [5,7) $3/s, [7,10) $1/s, [10,12) $2/s
    assert cost(src, HW, 0.0, 12.0) == pytest.approx(5 + 6 + 3 + 4)


def test_preemption_events_and_availability():
    src = ScriptedEvents(
        StaticPrices({HW: 1.0}), [Event(at_s=3.0, kind="preempt", duration_s=4.0, hardware=HW)]
    )
    assert src.available(HW, 2.9) and not src.available(HW, 3.0) and src.available(HW, 7.0)
    assert next_available(src, HW, 3.5, horizon=10.0) == pytest.approx(7.0)
    assert next_available(src, HW, 3.5, horizon=2.0) is None


@pytest.mark.parametrize(
    "text, field",
    [
        ("t,hardware,price_usd_per_h,available\n0,x,1,1\n", "header"),
        (
            "t_s,hardware,price_usd_per_h,available\n5,aws/g4dn.xlarge,1,1\n2,aws/g4dn.xlarge,1,1\n",
            "line 3.t_s",
        ),
        ("t_s,hardware,price_usd_per_h,available\n0,aws/g4dn.xlarge,-1,1\n", "line 2.price_usd_per_h"),
        ("t_s,hardware,price_usd_per_h,available\n0,aws/g4dn.xlarge,nan,1\n", "line 2.price_usd_per_h"),
        ("t_s,hardware,price_usd_per_h,available\n0,aws/p9.huge,1,1\n", "line 2.hardware"),
        ("t_s,hardware,price_usd_per_h,available\n0,aws/g4dn.xlarge,1,yes\n", "line 2.available"),
    ],
)
def test_a_bad_trace_names_the_line_and_field(text, field):
    with pytest.raises(SpecError) as info:
        parse_trace(text, "trace.csv", [HW])
    assert info.value.field == field


def test_bad_trace_on_the_command_line_exits_2_before_anything_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    plan = make_test_plan()
    (tmp_path / "plan.json").write_text(plan_to_json(plan))
    (tmp_path / "t.csv").write_text(
        "t_s,hardware,price_usd_per_h,available\n9,aws/g4dn.xlarge,1,1\n1,aws/g4dn.xlarge,1,1\n"
    )
    r = CliRunner().invoke(cli, ["run", "plan.json", "--prices", "t.csv", "--no-track"])
    assert r.exit_code == 2
    assert "t.csv: field 'line 3.t_s' must not go back in time" in r.stderr
    assert not (tmp_path / ".paretrain").exists()


def g4dn_plan():
    return make_test_plan(tiny_spec(hardware={"allow": ["local/cpu-1", HW], "catalog": "builtin"}))


def _run(plan, tmp_path, run_id, **kw):
    cand = next(c for c in plan.candidates if all(s.hardware == HW for s in c.stages))
    try:
        return Executor(plan, plan.candidate(cand.id), workdir=tmp_path, run_id=run_id, **kw).run()
    except RunStopped as err:
        return err.result


@pytest.mark.slow  # trains through a real executor
def test_a_trace_preemption_loses_work_waits_and_charges_storage_only_while_waiting(tmp_path):
    data = tiny_spec(
        hardware={"allow": ["local/cpu-1", HW], "catalog": "builtin", "spot": True},
        target={"goal": 0.3, "levels": [0.3], "max_samples": 6000},
    )
    plan = make_test_plan(data)
    trace = TracePrices(
        [(0.05, HW, 0.526, False), (30.0, HW, 0.526, True)], {o.id: o.price_usd_per_h for o in plan.offers}
    )
    result = _run(plan, tmp_path, "pre", prices=trace)
    names = [e["event"] for e in result.events]
    assert "preemption" in names and "preempted" in names
    lines = list(read_charges(tmp_path / ".paretrain" / "ledger" / "pre.jsonl"))
    during = [c for c in lines if 0.05 <= c["t_run"] < 30.0 and c["kind"] == "compute"]
    assert not during  # nothing computes while the offer is gone
    assert any(c["kind"] == "storage" for c in lines)
    assert result.wall_s >= 30.0  # the wait counts in run time (against the deadline)


@pytest.mark.slow  # trains through a real executor
def test_a_preemption_that_outlasts_the_deadline_stops_the_run(tmp_path):
    data = tiny_spec(hardware={"allow": ["local/cpu-1", HW], "catalog": "builtin"}, deadline_s=10)
    plan = make_test_plan(data)
    events = [{"at_s": 0.05, "kind": "preempt", "duration_s": 1000.0, "factor": 1.0, "hardware": HW}]
    plan = with_spec(plan, runtime__events=events)
    result = _run(plan, tmp_path, "dl")
    assert result.status == "deadline"


@pytest.mark.slow  # trains through a real executor
def test_the_project_ceiling_caps_a_run_by_what_other_runs_spent(tmp_path):
    plan = g4dn_plan()
    first = _run(plan, tmp_path, "first")
    assert first.cost_usd > 0
    ceiling = first.cost_usd * 1.3
    capped = with_spec(plan, budget__project_ceiling_usd=ceiling)
    second = _run(capped, tmp_path, "second")
    assert second.budget_usd == pytest.approx(ceiling - first.cost_usd)
    total = math.fsum(
        c["usd"] for f in (tmp_path / ".paretrain" / "ledger").glob("*.jsonl") for c in read_charges(f)
    )
    assert total <= ceiling


@pytest.mark.slow  # trains through a real executor
def test_a_run_finding_the_ceiling_held_by_a_running_run_stops_saying_so_and_spends_nothing(tmp_path):
    from paretrain.runtime.money.ledger import Ledger
    from paretrain.runtime.money.report import RUN_CAP

    plan = with_spec(g4dn_plan(), budget__project_ceiling_usd=0.5)
    running = Ledger(tmp_path / ".paretrain" / "ledger" / "running.jsonl", "running")
    running.charge("event", 0.0, stage="start", event=RUN_CAP, cap_usd=0.5)  # holds the whole ceiling
    cand = next(c for c in plan.candidates if all(s.hardware == HW for s in c.stages))
    try:
        with pytest.raises(RunStopped, match=r"budget\.project_ceiling_usd") as stopped:
            Executor(plan, plan.candidate(cand.id), workdir=tmp_path, run_id="late").run()
    finally:
        running.close()
    assert stopped.value.result.budget_usd == 0.0
    assert math.fsum(c["usd"] for c in read_charges(tmp_path / ".paretrain" / "ledger" / "late.jsonl")) == 0.0


@pytest.mark.slow  # trains through a real executor
def test_ledger_command_reports_spend_by_run_stage_and_kind(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    plan = g4dn_plan()
    _run(plan, tmp_path, "one")
    r = CliRunner().invoke(cli, ["ledger", "--period", "month"])
    assert r.exit_code == 0
    assert "one" in r.stdout and "stage0" in r.stdout and "compute" in r.stdout and "checkpoint" in r.stdout
    total = math.fsum(c["usd"] for c in read_charges(tmp_path / ".paretrain" / "ledger" / "one.jsonl"))
    assert f"total ${total:.6f}" in r.stdout


@pytest.mark.slow  # trains through a real executor
def test_a_stage_renting_several_instances_pays_for_each(tmp_path):
    from dataclasses import replace

    plan = g4dn_plan()
    cand = next(c for c in plan.candidates if all(s.hardware == HW for s in c.stages))
    doubled = replace(cand, stages=tuple(replace(s, instances=2) for s in cand.stages))
    plan2 = replace(plan, candidates=tuple(doubled if c.id == cand.id else c for c in plan.candidates))
    _run(plan2, tmp_path, "two")
    lines = [
        c
        for c in read_charges(tmp_path / ".paretrain" / "ledger" / "two.jsonl")
        if c["kind"] == "compute" and c["seconds"] > 0
    ]
    price = next(o.price_usd_per_h for o in plan.offers if o.id == HW)
    assert lines and all(c["usd"] == pytest.approx(2 * price / 3600 * c["seconds"], rel=1e-9) for c in lines)


@pytest.mark.slow  # trains through a real executor
def test_an_emulated_run_on_two_instances_pays_its_rendezvous_once_on_both(tmp_path):
    """The plan charges a run on several workers the time to form its group; the emulated run
    charges that very time, on every instance, once (its stages keep the offer and the workers),
    before the first step."""
    from dataclasses import replace

    data = tiny_spec(hardware={"allow": ["local/cpu-1", HW], "catalog": "builtin"})
    data["planner"] = {**data["planner"], "max_workers": 2}
    plan = make_test_plan(data)
    cand = next(c for c in plan.candidates if all(s.hardware == HW for s in c.stages))
    two = replace(cand, stages=tuple(replace(s, workers=2, instances=2) for s in cand.stages))
    plan2 = replace(plan, candidates=tuple(two if c.id == cand.id else c for c in plan.candidates))
    rdzv = plan.step_model(HW, cand.config_id, cand.stages[0].precision, 2).rendezvous_s
    assert rdzv == plan.offer(HW).rendezvous_s > 0
    result = _run(plan2, tmp_path, "rdzv")
    lines = list(read_charges(tmp_path / ".paretrain" / "ledger" / "rdzv.jsonl"))
    formed = [c for c in lines if c.get("what") == "rendezvous"]
    assert len(two.stages) > 1 and [c["stage"] for c in formed] == ["stage0"]
    price = plan.offer(HW).price_usd_per_h
    assert all(c["seconds"] == pytest.approx(rdzv) for c in formed)
    assert all(c["usd"] == pytest.approx(2 * price / 3600 * rdzv, rel=1e-9) for c in formed)
    assert result.cost_usd <= plan2.spec.budget.train_usd
