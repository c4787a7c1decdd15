"""kill -9 at chosen ledger offsets, then --resume: nothing lost, nothing counted twice.

The run is killed by the ledger's test hook (``PARETRAIN_TEST_KILL_AT_LINE``): SIGKILL right
after the N-th ledger line is durably written, so the kill points are the same on every machine.
The offer is emulated (virtual clock), so the uninterrupted run charges the very same steps.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from paretrain.planner.plan.plan_file import plan_to_json
from paretrain.runtime.money.ledger import KILL_AT_LINE_ENV, read_charges
from paretrain.runtime.train.checkpoint import checkpoint_paths
from tests.conftest import ROOT
from tests.runtime.plans import make_test_plan, tiny_spec, unreachable_plan

pytestmark = pytest.mark.slow

CKPT_EVERY = 0.1  # virtual seconds: a checkpoint every ~100 ledger lines
#: ledger lines; the level is out of reach, so the run's curve stops it after ~660 lines (~820
#: with these kills)
KILL_AT = (150, 370, 580, 800)


def start(cwd: Path, *extra: str, kill_at: int = 0) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop(KILL_AT_LINE_ENV, None)
    if kill_at:
        env[KILL_AT_LINE_ENV] = str(kill_at)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "paretrain.cli",
            "run",
            "plan.json",
            "--candidate",
            "cheapest",
            "--no-track",
            *extra,
        ],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def ledger_lines(cwd: Path) -> list[dict]:
    files = list((cwd / ".paretrain" / "ledger").glob("run-*.jsonl"))
    return list(read_charges(files[0])) if files else []


def kill_spec_plan():
    return unreachable_plan(CKPT_EVERY)


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("kill")
    plan = kill_spec_plan()
    (cwd / "plan.json").write_text(plan_to_json(plan))
    killed = []
    for i, n in enumerate(KILL_AT):
        proc = start(cwd, *(("--resume",) if i else ()), kill_at=n)
        proc.communicate(timeout=300)
        killed.append(proc.returncode)
    proc = start(cwd, "--resume")
    out, err = proc.communicate(timeout=300)
    return cwd, plan, killed, proc.returncode, out, err


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("whole")
    (cwd / "plan.json").write_text(plan_to_json(kill_spec_plan()))
    proc = start(cwd)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 3, err
    return ledger_lines(cwd)


def resumes(lines: list[dict]) -> list[tuple[int, dict]]:
    return [(i, c) for i, c in enumerate(lines) if c.get("event") == "resume"]


def lost_lines(lines: list[dict]) -> set[int]:
    """Indices of the lines a resume declared lost: from its checkpoint's position to itself."""
    return {j for i, ev in resumes(lines) for j in range(ev["from_line"], i)}


def work(lines: list[dict]) -> list[tuple]:
    """The training and evaluation compute charges: (what, step, usd, seconds)."""
    return [
        (c["what"], c.get("step"), c["usd"], c["seconds"])
        for c in lines
        if c["kind"] == "compute" and c["what"] in ("train", "eval")
    ]


def test_the_run_finishes_after_the_kills(killed_and_resumed, uninterrupted):
    cwd, _plan, killed, code, _out, err = killed_and_resumed
    assert killed == [-signal.SIGKILL] * len(KILL_AT)  # each run died at its ledger offset
    assert code == 3, err  # an unreachable level: its curve stops the run, having resumed each time
    assert "will not reach 0.99" in err
    # the curve's points survive each kill (they are in the checkpoints): the run stops exactly
    # where the uninterrupted run stopped
    [stop] = [c for c in ledger_lines(cwd) if c.get("event") == "unreachable"]
    [whole] = [c for c in uninterrupted if c.get("event") == "unreachable"]
    assert (stop["step"], stop["samples"]) == (whole["step"], whole["samples"])
    status = json.loads(next((cwd / ".paretrain" / "runs").glob("*/status.json")).read_text())
    assert status["status"] == "unreachable" and status["samples"] == whole["samples"] < 60000


def test_each_resume_continues_the_ledger_where_the_kill_left_it(killed_and_resumed):
    lines = ledger_lines(killed_and_resumed[0])
    assert [i for i, _ in resumes(lines)] == list(KILL_AT)


def test_no_charge_id_appears_twice_and_none_is_missing(killed_and_resumed):
    cwd = killed_and_resumed[0]
    lines = ledger_lines(cwd)
    ids = [int(c["id"].rsplit(":", 1)[1]) for c in lines]
    assert ids == list(range(len(lines)))


def test_run_time_is_continuous_so_no_work_is_uncharged_or_charged_twice(killed_and_resumed):
    lines = [c for c in ledger_lines(killed_and_resumed[0]) if c["kind"] != "event"]
    for a, b in itertools.pairwise(lines):
        assert b["t_run"] == pytest.approx(a["t_run"] + a["seconds"], abs=2e-6)


def test_each_step_is_charged_once_besides_the_lost_work(killed_and_resumed, uninterrupted):
    """Outside the lines declared lost, the killed run charges exactly the steps and evaluations
    of the uninterrupted run, each once and in order, at the same price."""
    lines = ledger_lines(killed_and_resumed[0])
    lost = lost_lines(lines)
    kept = [c for j, c in enumerate(lines) if j not in lost]
    steps = [step for what, step, _, _ in work(kept) if what == "train"]
    assert steps == list(range(1, len(steps) + 1))
    assert [(what, step, seconds) for what, step, _, seconds in work(kept)] == [
        (what, step, seconds) for what, step, _, seconds in work(uninterrupted)
    ]
    # the same price; the amounts differ in the last bits (integrated from another start time)
    assert [usd for _, _, usd, _ in work(kept)] == pytest.approx(
        [usd for _, _, usd, _ in work(uninterrupted)], rel=1e-9
    )
    # and each kill lost training steps, which the resumed run did again
    for i, ev in resumes(lines):
        redone = [c["step"] for c in lines[ev["from_line"] : i] if c.get("what") == "train"]
        assert redone and set(redone) <= set(steps)


def test_lost_work_is_recorded_once_and_at_most_one_checkpoint_interval(killed_and_resumed, uninterrupted):
    cwd, plan = killed_and_resumed[:2]
    lines = ledger_lines(cwd)
    stages = plan.candidate("cheapest").stages
    ckpt_s = max(c["seconds"] for c in lines if c["kind"] == "checkpoint")
    # a checkpoint is taken once an interval has passed: at most a step (or an evaluation) after
    # it; the checkpoint's own write is counted lost too (the ledger position is taken before it)
    bound = CKPT_EVERY + max(s.step_s for s in stages) + max(s.eval_s for s in stages) + ckpt_s + 1e-5
    previous = 0
    for i, ev in resumes(lines):
        assert previous <= ev["from_line"] < i  # the lost ranges do not overlap
        previous = i
        lost = lines[ev["from_line"] : i]
        assert ev["usd"] == 0.0
        assert ev["lost_usd"] == pytest.approx(math.fsum(c["usd"] for c in lost), rel=1e-9, abs=1e-15)
        assert ev["lost_s"] == pytest.approx(math.fsum(c["seconds"] for c in lost), abs=1e-5)
        assert 0 < ev["lost_s"] <= bound
    # recorded once: the run paid the uninterrupted run's steps, the lost work, and its overheads
    # (restores, checkpoints, storage); no other line charges lost work again
    lost = lost_lines(lines)
    kept = [c for j, c in enumerate(lines) if j not in lost]
    assert {c["kind"] for c in kept} <= {"compute", "checkpoint", "storage", "event"}
    # besides the work: provisioning at the start, restarts, and billing increments when it ends
    fixed = ("provision", "restore", "billing increment")
    assert {c["what"] for c in kept if c["kind"] == "compute"} <= {"train", "eval", "teardown", *fixed}
    total = math.fsum(c["usd"] for c in lines)
    restores = math.fsum(c["usd"] for c in kept if c.get("what") in fixed)
    overhead = math.fsum(c["usd"] for c in kept if c["kind"] in ("checkpoint", "storage"))
    training = math.fsum(
        c["usd"] for c in uninterrupted if c["kind"] == "compute" and c["what"] in ("train", "eval")
    )
    recorded_lost = math.fsum(ev["lost_usd"] for _, ev in resumes(lines))
    assert total == pytest.approx(training + recorded_lost + restores + overhead, rel=1e-12)


def test_only_the_last_checkpoints_are_kept(killed_and_resumed):
    cwd = killed_and_resumed[0]
    run_dir = next((cwd / ".paretrain" / "runs").iterdir())
    assert len(checkpoint_paths(run_dir)) <= 2


def test_a_truncated_checkpoint_is_survived_on_resume(tmp_path):
    data = tiny_spec(
        target={"goal": 0.99, "levels": [0.99], "max_samples": 4000},
        runtime={"eval_every_samples": 1000, "checkpoint_every_s": 0.05, "keep_checkpoints": 3},
        hardware={"allow": ["aws/g4dn.xlarge"], "catalog": "builtin", "spot": False},
    )
    plan = make_test_plan(data, e_min=1500)
    (tmp_path / "plan.json").write_text(plan_to_json(plan))
    first = start(tmp_path)
    first.communicate(timeout=300)
    run_dir = next((tmp_path / ".paretrain" / "runs").iterdir())
    newest = checkpoint_paths(run_dir)[-1]
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 3])
    again = start(tmp_path, "--resume")
    _out, err = again.communicate(timeout=300)
    assert again.returncode == 3, err
    assert "resume: back to" in err
    assert newest.with_suffix(".damaged").exists()


def test_each_killed_processes_billing_hold_is_settled_on_resume(killed_and_resumed):
    """The provider billed each killed process's machine to its increment or minimum: the resume
    charges that once, right after it, and the run still stays within its budget."""
    cwd, plan = killed_and_resumed[:2]
    lines = ledger_lines(cwd)
    offer = plan.offer("aws/g4dn.xlarge")
    settled = [c for c in lines if c.get("interrupted")]
    assert len(settled) == len(KILL_AT)
    for c in settled:
        assert c["what"] == "billing increment" and c["usd"] > 0
        assert c["billed_s"] == pytest.approx(offer.billed_s(c["held_s"]) - c["held_s"], abs=1e-5)
    assert math.fsum(c["usd"] for c in lines) <= plan.spec.budget.train_usd
