"""Adaptation on emulated offers (virtual clock: deterministic): price spikes, slowdowns,
pauses, rollback, and noise that must not cause a replan."""

from __future__ import annotations

import math

import pytest
import torch

from paretrain.runtime.adapt.policy import Action, Decision
from paretrain.runtime.money.ledger import read_charges
from paretrain.runtime.run.adapting import carry_out, roll_back
from paretrain.runtime.run.changes import Evaluated
from paretrain.runtime.run.executor import Executor, RunStopped
from tests.runtime.plans import make_test_plan, tiny_spec, with_spec

pytestmark = pytest.mark.slow  # every test trains through a real executor

T4, L4 = "aws/g4dn.xlarge", "gcp/g2-standard-4"


def adapt_spec(**over):
    data = tiny_spec(
        workload={"name": "mnist1d", "samples": 2000, "val_fraction": 0.25, "seed": 0},
        configs=[{"id": "mlp-32", "family": "mlp", "width": 32, "depth": 1, "lr": 0.01}],
        target={"goal": 0.42, "levels": [0.42], "max_samples": 40000},
        hardware={"allow": ["local/cpu-1", T4, L4], "catalog": "builtin"},
        planner={
            "convergence": "full",
            "stages": 3,
            "batch_sizes": [32, 64],
            "convergence_batch_sizes": [16, 64, 256],
            "profile_steps": 5,
            "noise": False,
        },
        runtime={
            "eval_every_samples": 500,
            "checkpoint_every_s": 0.5,
            "keep_checkpoints": 2,
            "window": 5,
            "cooldown_s": 0.05,
        },
    )
    data.update(over)
    return data


@pytest.fixture(scope="module")
def plan():
    return make_test_plan(adapt_spec(), e_min=9000)


def on(plan, hw):
    return next(c for c in plan.candidates if all(s.hardware == hw for s in c.stages))


def run(plan, cand, tmp_path, run_id="r", **kw):
    ex = Executor(plan, plan.candidate(cand.id), workdir=tmp_path, run_id=run_id, **kw)
    try:
        result = ex.run()
    except RunStopped as err:
        result = err.result
    lines = list(read_charges(tmp_path / ".paretrain" / "ledger" / f"{run_id}.jsonl"))
    return ex, result, lines


def events(result, name):
    return [e for e in result.events if e["event"] == name]


def test_a_price_spike_causes_a_replan_and_the_target_is_still_reached_within_budget(plan, tmp_path):
    cand = on(plan, T4)
    budget = cand.cost_usd * 40
    at = cand.wall_s * 0.5  # after the start checkpoint and a few evaluations
    spiked = with_spec(
        plan,
        budget={"total_usd": 1.0, "envelopes": {"train": budget}},
        runtime__pause_threshold=1000.0,
        runtime__events=[{"at_s": at, "kind": "price", "factor": 200.0, "hardware": T4}],
    )
    _ex, result, lines = run(spiked, cand, tmp_path)
    replans = events(result, "replan")
    assert replans, [e["event"] for e in result.events]
    # the projection integrates the known price trace, so it may see the spike coming
    assert "budget overrun" in replans[0]["reason"] or replans[0]["t_run"] >= at
    assert replans[0]["action"] in ("switch", "resize_batch")
    assert replans[0]["new_cost_usd"] < replans[0]["old_cost_usd"]
    assert result.status == "target"
    assert math.fsum(c["usd"] for c in lines) <= budget
    ledger_events = [c for c in lines if c.get("event") == "replan"]
    assert ledger_events and "old_cost_usd" in ledger_events[0] and "reason" in ledger_events[0]


def test_a_slowdown_is_detected_within_the_pinned_delay(plan, tmp_path):
    cand = on(plan, T4)
    # a dry run on the (deterministic) virtual clock says when the 8th evaluation happens
    _, _, dry = run(plan, cand, tmp_path / "dry", run_id="dry")
    evals = [c["t_run"] for c in dry if c.get("what") == "eval"]
    at = evals[7]  # the detectors' baseline (window 5) is set by then
    interval = evals[8] - evals[7]
    slowed = with_spec(
        plan,
        runtime__events=[{"at_s": at, "kind": "slowdown", "factor": 1.5, "hardware": T4}],
    )
    _ex, result, _ = run(slowed, cand, tmp_path / "slow")
    replans = [e for e in events(result, "replan") if "throughput" in e["reason"]]
    assert replans, [(e["event"], e.get("reason")) for e in result.events]
    delay = replans[0]["t_run"] - at
    assert 0 <= delay <= 3 * interval * 1.5  # within three observations of the slowed steps


def test_a_steady_run_does_not_replan(plan, tmp_path):
    _ex, result, _ = run(plan, on(plan, T4), tmp_path)
    assert result.status == "target"
    assert not events(result, "replan")


def test_a_price_peak_with_slack_pauses_and_charges_no_compute_meanwhile(plan, tmp_path):
    cand = on(plan, T4)
    at, length = cand.wall_s * 0.3, 50.0
    peaked = with_spec(
        plan,
        deadline_s=10_000,
        runtime__events=[{"at_s": at, "kind": "price", "factor": 4.0, "duration_s": length, "hardware": T4}],
    )
    _ex, result, lines = run(peaked, cand, tmp_path)
    pauses = events(result, "pause")
    assert pauses, [e["event"] for e in result.events]
    start = next(c for c in lines if c.get("event") == "pause")["t_run"]
    until = pauses[0]["until"]
    assert until == pytest.approx(at + length)
    # the machine is let go at the pause: its billing increment (for the time held before) is settled then
    during = [
        c
        for c in lines
        if start <= c["t_run"] < until - 1e-9
        and c["kind"] not in ("storage", "event")
        and c.get("what") != "billing increment"
    ]
    assert not during, during[:3]
    assert any(c["kind"] == "storage" and c["t_run"] >= until - 1e-9 for c in lines)
    assert result.status == "target"


def test_rollback_restores_the_state_before_the_change_exactly(plan, tmp_path):
    cand = on(plan, T4)
    ex = Executor(plan, plan.candidate(cand.id), workdir=tmp_path, run_id="rb")
    assert ex.start() is None
    for _ in range(40):
        ex._train()
    before = {k: v.clone() for k, v in ex.trainer.model.state_dict().items()}
    batch_before, stage_before, samples_before = (
        ex.trainer.batch_size,
        ex.state.stage_i,
        ex.trainer.samples_seen,
    )
    ex.parts.adaptation.bad.add((T4, batch_before))  # so the replan must change something
    ex.apply(Evaluated(ex.state.level, 1.0))  # an evaluation with validation loss 1.0
    assert carry_out(ex.parts, Decision(Action.REPLAN, "test")) is None
    changed = ex.parts.adaptation.changed_option
    assert changed is not None and changed != (T4, batch_before)
    for _ in range(20):
        ex._train()
    assert any(not torch.equal(before[k], v) for k, v in ex.trainer.model.state_dict().items())
    roll_back(ex.parts, "test")
    after = ex.trainer.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert (ex.trainer.batch_size, ex.state.stage_i, ex.trainer.samples_seen) == (
        batch_before,
        stage_before,
        samples_before,
    )
    assert changed in ex.parts.adaptation.bad
    ex.parts.meter.ledger.close()


def test_a_replan_keeps_a_slowed_offers_observed_speed_after_the_run_leaves_it(plan, tmp_path):
    """The throughput replan sizes the 1.5x slowdown from the steps since the change; after the
    run has left T4, a price replan on its new offer still sees T4 at its slowed speed (before,
    only the current offer's speed was passed on, and T4 looked as fast as profiled again)."""
    cand = on(plan, T4)
    _, _, dry = run(plan, cand, tmp_path / "dry", run_id="dry")
    at = [c["t_run"] for c in dry if c.get("what") == "eval"][7]
    slow = [{"at_s": at, "kind": "slowdown", "factor": 1.5, "hardware": T4}]
    _, result, _ = run(with_spec(plan, runtime__events=slow), cand, tmp_path / "slow")
    first = next(e for e in events(result, "replan") if "throughput" in e["reason"])
    assert first["action"] == "switch" and 1.3 <= first["step_factor"][T4] <= 1.7, first
    moved_to = events(result, "switch")[0]["hardware"]
    # the same run (the virtual clock is deterministic), with the new offer's price doubling later
    later = [*slow, {"at_s": first["t_run"], "kind": "price", "factor": 2.0, "hardware": moved_to}]
    _, result, _ = run(
        with_spec(plan, runtime__events=later),
        cand,
        tmp_path / "price",
        run_id="p",
    )
    price = [e for e in events(result, "replan") if "price" in e["reason"]]
    assert price, [(e["event"], e.get("reason")) for e in result.events]
    assert all(e["step_factor"].get(T4, 1.0) >= 1.3 for e in price), price
