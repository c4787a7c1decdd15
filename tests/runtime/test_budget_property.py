"""The budget is never exceeded, under any price spike, slowdown, preemption or tight budget.

A property test (hypothesis): each example runs a plan's candidate on emulated cloud offers
(real training math here, the offer's virtual clock and prices) with drawn scripted events
(price spikes, slowdowns, preemptions), a drawn budget around the candidate's predicted cost,
checkpoint interval and deadline, and checks the ledger: its total never passes the budget,
and its charges sum to the spend the run reports. The examples are drawn the same way on
every run (``derandomize``), so the suite passes or fails the same everywhere.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paretrain.runtime.money.ledger import read_charges
from paretrain.runtime.run.executor import Executor, RunStopped
from tests.runtime.plans import make_test_plan, with_spec

pytestmark = pytest.mark.slow

PLAN = make_test_plan()
#: the same plan with the offers billed continuously: these seconds-long runs cost less than a
#: provider's minimum, so only without one do budgets between the start and the target occur
CONTINUOUS = replace(
    PLAN, offers=tuple(replace(o, billing_increment_s=0.0, billing_minimum_s=0.0) for o in PLAN.offers)
)
#: candidates that run on catalog offers only (emulated throughout)
EMULATED = [c for c in PLAN.candidates if all(not s.hardware.startswith("local/") for s in c.stages)]


def compute_usd(plan, cand) -> float:
    """The candidate's time on its offers at their list prices (no billing minimum)."""
    return (
        sum(plan.offer(s.hardware).price_usd_per_h / 3600.0 for s in cand.stages)
        / len(cand.stages)
        * cand.wall_s
    )


@st.composite
def events(draw: st.DrawFn, horizon: float) -> dict:
    """One scripted event landing while the run is going."""
    kind = draw(st.sampled_from(["price", "slowdown", "preempt"]))
    at = draw(st.floats(0.0, horizon))
    if kind == "preempt":
        return {"at_s": at, "kind": kind, "factor": 1.0, "duration_s": draw(st.floats(0.01, horizon))}
    factor = draw(st.floats(1.5, 30.0) if kind == "price" else st.floats(1.2, 5.0))
    duration = draw(st.one_of(st.none(), st.floats(0.01, horizon)))
    return {"at_s": at, "kind": kind, "factor": factor, "duration_s": duration}


@st.composite
def scenarios(draw: st.DrawFn) -> tuple:
    cand = draw(st.sampled_from(EMULATED))
    base = draw(st.sampled_from([CONTINUOUS, CONTINUOUS, PLAN]))
    horizon = cand.wall_s * 0.8  # events land while the run is going
    evs = draw(st.lists(events(horizon), max_size=4))
    scale = compute_usd(base, cand) if base is CONTINUOUS else cand.cost_usd
    budget = scale * draw(st.one_of(st.floats(0.05, 1.5), st.floats(1.0, 12.0)))
    spec_budget = {"total_usd": 1.0, "envelopes": {"profile": 0.1, "search": 0.1, "train": budget}}
    every_s = draw(st.floats(0.05, 1.0))
    deadline = draw(st.sampled_from([1e5, horizon * 1.5]))  # sometimes a preemption outlasts it
    plan = with_spec(
        base,
        budget=spec_budget,
        runtime__events=evs,
        runtime__checkpoint_every_s=every_s,
        deadline_s=deadline,
    )
    return plan, cand, budget, evs


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(scenarios())
def test_budget_is_never_exceeded_under_drawn_prices_slowdowns_and_preemptions(scenario):
    plan, cand, budget, evs = scenario
    with tempfile.TemporaryDirectory(prefix="paretrain-prop-") as tmp:
        ex = Executor(plan, plan.candidate(cand.id), workdir=Path(tmp), run_id="p")
        try:
            result = ex.run()
        except RunStopped as err:
            result = err.result
        charges = list(read_charges(Path(tmp) / ".paretrain" / "ledger" / "p.jsonl"))
    total = math.fsum(c["usd"] for c in charges)
    assert total <= budget, (result.status, total, budget, evs)
    assert total == pytest.approx(result.cost_usd, rel=1e-9, abs=1e-15), (total, result.cost_usd)
    assert len({c["id"] for c in charges}) == len(charges)
    # a replan may move the run onto this machine's CPU: only catalog offers are emulated
    timed = [c for c in charges if c["kind"] in ("compute", "checkpoint") and c["seconds"] > 0]
    assert all(bool(c.get("emulated")) == (not c["hardware"].startswith("local/")) for c in timed)
