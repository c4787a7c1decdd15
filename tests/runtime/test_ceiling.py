"""The project ceiling across runs that run at once: a running run's cap counts against it until
the run ends, and runs that start at the same moment never count on the same part of it."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from paretrain.runtime.money.ledger import Ledger, read_charges
from paretrain.runtime.money.report import RUN_CAP, committed_usd
from paretrain.runtime.run.executor import run_setup
from paretrain.runtime.run.parts import open_ledger
from tests.runtime.plans import make_test_plan, with_spec

ROOT = Path(__file__).resolve().parents[2]


def capped_plan(ceiling: float):
    return with_spec(make_test_plan(), budget__project_ceiling_usd=ceiling)


def test_a_running_runs_cap_counts_against_the_ceiling_until_its_ledger_closes(tmp_path):
    folder = tmp_path / "ledger"
    running = Ledger(folder / "a.jsonl", "a")
    running.charge("event", 0.0, stage="start", event=RUN_CAP, cap_usd=0.3)
    running.charge("compute", 0.1, seconds=1.0, stage="s", hardware="h", what="train")
    running.sync()
    own = folder / "b.jsonl"
    # spent 0.1, may still spend 0.2 of its cap of 0.3
    assert committed_usd(folder, "month", own) == pytest.approx(0.3)
    running.close()  # the run ended: only what it spent counts now
    assert committed_usd(folder, "month", own) == pytest.approx(0.1)


def test_a_ledger_without_a_cap_counts_what_it_spent(tmp_path):
    folder = tmp_path / "ledger"
    with Ledger(folder / "profile-x.jsonl", "p") as profile:
        profile.charge("profile", 0.05, seconds=1.0, stage="profile", hardware="h", what="steps of x")
        assert committed_usd(folder, "month", folder / "own.jsonl") == pytest.approx(0.05)
        assert committed_usd(folder, "month", folder / "profile-x.jsonl") == 0.0


def test_open_ledger_writes_the_cap_it_took_and_the_next_run_counts_it(tmp_path):
    plan = capped_plan(0.5)
    cand = plan.candidates[0]
    first, budget1 = open_ledger(run_setup(plan, cand, tmp_path, run_id="one"), print)
    try:
        assert budget1 == pytest.approx(min(0.5, plan.spec.budget.train_usd))
        caps = [c for c in read_charges(first.path) if c.get("event") == RUN_CAP]
        assert [c["cap_usd"] for c in caps] == [pytest.approx(budget1)] and caps[0]["usd"] == 0.0
        second, budget2 = open_ledger(run_setup(plan, cand, tmp_path, run_id="two"), print)
        second.close()
        assert budget2 == pytest.approx(max(0.0, min(plan.spec.budget.train_usd, 0.5 - budget1)))
    finally:
        first.close()
    third, budget3 = open_ledger(run_setup(plan, cand, tmp_path, run_id="three"), print)
    third.close()
    assert budget3 == pytest.approx(budget1)  # the first ended having spent nothing


def test_a_run_without_a_ceiling_writes_no_cap(tmp_path):
    plan = make_test_plan()
    ledger, budget = open_ledger(run_setup(plan, plan.candidates[0], tmp_path, run_id="free"), print)
    ledger.close()
    assert budget == plan.spec.budget.train_usd
    assert not ledger.path.exists() or list(read_charges(ledger.path)) == []


OPENER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from paretrain.runtime.run.executor import run_setup
    from paretrain.runtime.run.parts import open_ledger
    from tests.runtime.plans import make_test_plan, with_spec

    work, run_id, go, ceiling = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), float(sys.argv[4])
    plan = with_spec(make_test_plan(), budget__project_ceiling_usd=ceiling)
    setup = run_setup(plan, plan.candidates[0], work, run_id=run_id)
    print("ready", flush=True)
    while not go.exists():
        time.sleep(0.001)
    ledger, budget = open_ledger(setup, lambda line: None)
    print(json.dumps({"run": run_id, "budget": budget}), flush=True)
    sys.stdin.read()  # hold the ledger open, as a running run does, until told to end
    ledger.close()
    """
)


@pytest.mark.slow  # four Python processes import torch
def test_four_runs_opening_at_once_never_count_on_the_same_part_of_the_ceiling(tmp_path):
    train = make_test_plan().spec.budget.train_usd
    ceiling = 2.5 * train  # room for two whole runs and half of a third
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPENER, str(tmp_path), f"run-{i}", str(go), repr(ceiling)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(4)
    ]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        go.touch()
        budgets = [json.loads(p.stdout.readline())["budget"] for p in procs if p.stdout is not None]
    finally:
        for p in procs:
            p.communicate("", timeout=60)
    assert math.fsum(budgets) <= ceiling * (1 + 1e-12)
    assert sorted(budgets) == pytest.approx([0.0, 0.5 * train, train, train])
