"""Only the executor writes the run state: a ``RunState`` refuses writes outside
``Executor.apply``, so a real run (with a preemption, a resume and a part that would write
directly) shows whether any part still writes it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from paretrain.runtime.run.changes import Moved
from paretrain.runtime.run.executor import Executor, RunStopped
from paretrain.runtime.run.recovery import Recovery
from paretrain.runtime.run.state import RunState, StateWriteError
from tests.conftest import ROOT
from tests.runtime.plans import make_test_plan, with_spec

PLAN = make_test_plan()
#: an emulated offer that one candidate runs on throughout (real math here, virtual clock)
CAND = next(
    c
    for c in PLAN.candidates
    if len({s.hardware for s in c.stages}) == 1 and not PLAN.offer(c.stages[0].hardware).local
)
HW = CAND.stages[0].hardware


def run(plan, tmp_path, run_id="own", **kw):
    ex = Executor(plan, plan.candidate(CAND.id), workdir=tmp_path, run_id=run_id, **kw)
    try:
        return ex, ex.run()
    except RunStopped as err:
        return ex, err.result


def test_a_direct_write_outside_apply_is_refused():
    state = RunState(stages=list(CAND.stages), hw=HW)
    with pytest.raises(StateWriteError, match=r"RunState\.hw was written outside Executor\.apply"):
        state.hw = "local/cpu-1"
    with pytest.raises(StateWriteError):
        state.advance(64, 64)  # a method that writes is refused the same way
    assert state.hw == HW and state.samples == 0


def test_the_executor_applies_a_change_record():
    ex = Executor(PLAN, PLAN.candidate(CAND.id), workdir=Path("/nonexistent-not-written"), run_id="x")
    ex.apply(Moved("local/cpu-1"))
    assert ex.state.hw == "local/cpu-1"
    with pytest.raises(StateWriteError):
        ex.state.hw = HW  # and closes it again


def test_the_executor_is_whole_after_init_and_says_when_it_has_not_started():
    ex = Executor(PLAN, PLAN.candidate(CAND.id), workdir=Path("/nonexistent-not-written"), run_id="x")
    assert ex.group is None and ex.window is None
    with pytest.raises(RuntimeError, match="has not started"):
        _ = ex.parts


def test_a_run_with_a_preemption_and_a_resume_writes_its_state_only_through_apply(tmp_path):
    wall = CAND.wall_s
    events = [
        {"at_s": wall * 0.3, "kind": "preempt", "factor": 1.0, "duration_s": wall * 0.05},
        {"at_s": wall * 0.5, "kind": "price", "factor": 4.0, "duration_s": wall * 0.1},
    ]
    plan = with_spec(PLAN, runtime__events=events, target__max_samples=2000)
    ex, first = run(plan, tmp_path)
    assert first.status == "max_samples"
    assert any(e["event"] == "preemption" for e in first.events)
    # the preemption restored the run from its checkpoint, through apply
    assert any(e["event"] == "preempted" for e in first.events)
    more = with_spec(plan, target__max_samples=3000)
    ex, second = run(more, tmp_path, resume=True)
    assert any(e["event"] == "resume" for e in second.events)
    assert second.samples >= 3000 and ex.state.samples == second.samples


def test_a_part_that_writes_the_state_directly_fails_the_run(tmp_path, monkeypatch):
    checkpoint = Recovery.checkpoint

    def rogue(self, state, reason):
        checkpoint(self, state, reason)
        state.dirty = False  # what the parts used to do

    monkeypatch.setattr(Recovery, "checkpoint", rogue)
    with pytest.raises(StateWriteError, match="dirty"):
        run(PLAN, tmp_path)


def test_only_the_executor_opens_the_state():
    opened = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "paretrain").rglob("*.py")
        if re.search(r"\.unlocked\(\)", p.read_text(encoding="utf-8"))
    ]
    assert opened == ["paretrain/runtime/run/executor.py"]
