"""The budget is never exceeded, under any price spike, slowdown, preemption or tight budget.

Each scenario runs a plan's candidate on emulated cloud offers (real training math here, the
offer's virtual clock and prices), with random scripted events and a random budget around
the candidate's predicted cost, and checks the ledger against the budget.
"""

from __future__ import annotations

import math
import random

import pytest

from paretrain.planner.errors import BudgetExhausted
from paretrain.runtime.money.ledger import read_charges
from paretrain.runtime.run.executor import Executor
from tests.runtime.plans import make_test_plan, with_spec

pytestmark = pytest.mark.slow

PLAN = None


def plan():
    global PLAN
    if PLAN is None:
        PLAN = make_test_plan()
    return PLAN


def scenario(seed: int):
    rng = random.Random(seed)
    p = plan()
    emulated = [c for c in p.candidates if all(not s.hardware.startswith("local/") for s in c.stages)]
    cand = rng.choice(emulated)
    horizon = cand.wall_s * 0.8  # events land while the run is going
    events = []
    for _ in range(rng.randint(0, 4)):
        kind = rng.choice(["price", "slowdown", "preempt", "preempt"])
        ev = {
            "at_s": rng.uniform(0, horizon),
            "kind": kind,
            "factor": rng.uniform(1.5, 30.0) if kind == "price" else rng.uniform(1.2, 5.0),
            "duration_s": rng.choice([None, rng.uniform(0.01, horizon)]),
        }
        if kind == "preempt":
            ev["factor"] = 1.0
            ev["duration_s"] = rng.uniform(0.01, horizon)
        events.append(ev)
    budget = cand.cost_usd * rng.choice([rng.uniform(0.05, 1.0), rng.uniform(1.0, 12.0)])
    spec_budget = {"total_usd": 1.0, "envelopes": {"profile": 0.1, "search": 0.1, "train": budget}}
    every_s = rng.uniform(0.05, 1.0)
    deadline = rng.choice([1e5, 1e5, horizon * 1.5])  # sometimes a preemption outlasts it
    changed = with_spec(
        p,
        budget=spec_budget,
        runtime__events=events,
        runtime__checkpoint_every_s=every_s,
        deadline_s=deadline,
    )
    return changed, cand, budget, events


@pytest.mark.parametrize("seed", range(100))
def test_budget_is_never_exceeded_under_random_price_speed_and_preemption(seed, tmp_path):
    p, cand, budget, events = scenario(seed)
    ex = Executor(p, p.candidate(cand.id), workdir=tmp_path, run_id=f"s{seed}")
    try:
        result = ex.run()
        status = result.status
    except BudgetExhausted as err:
        status = err.result.status  # type: ignore[attr-defined]
    charges = list(read_charges(tmp_path / ".paretrain" / "ledger" / f"s{seed}.jsonl"))
    total = math.fsum(c["usd"] for c in charges)
    assert total <= budget, (status, total, budget, events)
    assert len({c["id"] for c in charges}) == len(charges)
    # a replan may move the run onto this machine's CPU: only catalog offers are emulated
    timed = [c for c in charges if c["kind"] in ("compute", "checkpoint") and c["seconds"] > 0]
    assert all(bool(c.get("emulated")) == (not c["hardware"].startswith("local/")) for c in timed)
