"""SIGTERM during a data-parallel stage (``planner.max_workers: 2``, both workers local): the run's
own process, rank 0, finishes the step in flight, writes the checkpoint and settles the ledger,
then stops its helpers (the elastic agent and the second worker), none of which outlives it;
exit 143 with one line, and ``--resume`` goes on from that checkpoint to the target."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from paretrain.planner.plan.plan import Plan
from paretrain.runtime.train.checkpoint import checkpoint_paths
from tests.runtime.faults.test_signals import SLOW_STEPS, train_lines
from tests.runtime.faults.workload import (
    assert_ledger_consistent,
    ledger,
    one_line,
    plan_in,
    run_args,
    run_plan,
    spec_data,
    start,
    write_workload,
)

pytestmark = pytest.mark.slow  # two processes launched twice (the run, its resume): ~30 s


def data_parallel_plan(folder: Path) -> Plan:
    """The tiny workload planned on ``local/cpu-1`` with every stage on two workers."""
    write_workload(folder, SLOW_STEPS)
    data = spec_data(
        0.003, planner={"max_workers": 2, "min_workers": 2, "batch_sizes": [16]}, checkpoint_every_s=5.0
    )
    data["hardware"] = {"allow": ["local/cpu-1"], "catalog": "none"}
    return plan_in(folder, data)


def _children() -> dict[int, list[int]]:
    """Every process's children, from /proc."""
    out: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            out.setdefault(ppid, []).append(int(entry.name))
    return out


def descendants(pid: int) -> set[int]:
    tree, found, todo = _children(), set(), [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def test_sigterm_in_a_data_parallel_stage_checkpoints_on_rank_0_stops_the_helpers_and_resumes(tmp_path):
    plan = data_parallel_plan(tmp_path)
    assert all(s.workers == 2 for s in plan.candidate("cheapest").stages)
    proc = start(tmp_path, run_args())
    helpers: set[int] = set()
    deadline = time.monotonic() + 120
    while train_lines(tmp_path) < 10 and proc.poll() is None and time.monotonic() < deadline:
        helpers |= descendants(proc.pid)
        time.sleep(0.05)
    helpers |= descendants(proc.pid)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert len(helpers) >= 2, helpers  # the elastic agent and the second worker were there
    time.sleep(1.0)
    orphans = [p for p in helpers if alive(p)]
    for p in orphans:  # never leave them behind, even when the test fails
        os.kill(p, signal.SIGKILL)
    assert not orphans, f"helpers {orphans} outlived their run"
    line = one_line(err)
    assert "stopped by SIGTERM" in line and "--resume" in line, line
    before = ledger(tmp_path)
    assert [c["status"] for c in before if c.get("event") == "end"] == ["SIGTERM"]
    assert [c["what"] for c in before if c["kind"] == "checkpoint"][-1] == "SIGTERM"
    run_dir = next((tmp_path / ".paretrain" / "runs").iterdir())
    events = [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines()]
    assert [e["workers"] for e in events if e["event"] == "workers"] == [2]  # the signal came in the stage
    assert len(checkpoint_paths(run_dir)) == 2  # the start's, and the one rank 0 wrote for the signal
    budget = plan.spec.budget.train_usd
    total = assert_ledger_consistent(tmp_path, budget, billed=False)
    assert f"spent ${total:.6g}" in line
    steps = [c["step"] for c in before if c.get("what") == "train" and "step" in c]  # a local offer's
    # last train line charges the real time since the last step, without a step of its own

    resumed = run_plan(tmp_path, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "target" in resumed.stdout
    lines = ledger(tmp_path)
    assert lines[: len(before)] == before
    assert_ledger_consistent(tmp_path, budget, billed=False)
    after = [c["step"] for c in lines[len(before) :] if c.get("what") == "train" and "step" in c]
    assert after[0] == steps[-1] + 1  # on from the signal's checkpoint: no step lost or repeated
