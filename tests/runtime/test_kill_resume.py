"""kill -9 at random moments, then --resume: nothing lost, nothing counted twice."""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from planner.plan import plan_to_json
from runtime.train.checkpoint import checkpoint_paths
from runtime.money.ledger import read_charges
from tests.conftest import ROOT
from tests.runtime.plans import make_test_plan, tiny_spec

pytestmark = pytest.mark.slow

CKPT_EVERY = 0.1  # virtual seconds


def start(cwd: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "paretrain.cli", "run", "plan.json", "--candidate", "cheapest",
                             "--no-track", *extra], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def ledger_lines(cwd: Path) -> list[dict]:
    files = list((cwd / ".paretrain" / "ledger").glob("run-*.jsonl"))
    return list(read_charges(files[0])) if files else []


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("kill")
    data = tiny_spec(target={"goal": 0.99, "levels": [0.99], "max_samples": 60000},
                     runtime={"eval_every_samples": 2000, "checkpoint_every_s": CKPT_EVERY, "keep_checkpoints": 2},
                     hardware={"allow": ["aws/g4dn.xlarge"], "catalog": "builtin", "spot": False})
    plan = make_test_plan(data, e_min=20000)
    (cwd / "plan.json").write_text(plan_to_json(plan))
    rng = random.Random(7)
    kills = 0
    proc = start(cwd)
    for _ in range(4):
        before = len(ledger_lines(cwd))
        deadline = time.monotonic() + 60
        while len(ledger_lines(cwd)) < before + 50 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 0.4))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
        proc = start(cwd, "--resume")
    out, err = proc.communicate(timeout=300)
    return cwd, plan, kills, proc.returncode, out, err


def test_the_run_finishes_after_the_kills(killed_and_resumed):
    cwd, plan, kills, code, out, err = killed_and_resumed
    assert kills >= 3
    assert code == 3, err  # an unreachable level: it stops at max_samples, having resumed each time
    assert "target.max_samples" in err
    status = json.loads(next((cwd / ".paretrain" / "runs").glob("*/status.json")).read_text())
    assert status["samples"] >= 60000


def test_no_charge_id_appears_twice_and_none_is_missing(killed_and_resumed):
    cwd = killed_and_resumed[0]
    lines = ledger_lines(cwd)
    ids = [int(c["id"].rsplit(":", 1)[1]) for c in lines]
    assert ids == list(range(len(lines)))


def test_run_time_is_continuous_so_no_work_is_uncharged_or_charged_twice(killed_and_resumed):
    lines = [c for c in ledger_lines(killed_and_resumed[0]) if c["kind"] != "event"]
    for a, b in zip(lines, lines[1:]):
        assert b["t_run"] == pytest.approx(a["t_run"] + a["seconds"], abs=2e-6)


def test_lost_work_is_recorded_once_and_at_most_one_checkpoint_interval(killed_and_resumed):
    cwd, plan = killed_and_resumed[:2]
    lines = ledger_lines(cwd)
    resumes = [(i, c) for i, c in enumerate(lines) if c.get("event") == "resume"]
    assert len(resumes) >= 3
    step_s = max(s.step_s for s in plan.candidate("cheapest").stages)
    eval_s = max(s.eval_s for s in plan.candidate("cheapest").stages)
    for i, ev in resumes:
        lost = math.fsum(c["usd"] for c in lines[ev["from_line"]:i])
        assert ev["lost_usd"] == pytest.approx(lost, rel=1e-9, abs=1e-15)
        assert ev["lost_s"] <= CKPT_EVERY + 2 * step_s + eval_s + 0.1  # + the checkpoint's own write
    total = math.fsum(c["usd"] for c in lines)
    kept_and_lost = math.fsum(c["usd"] for c in lines if c["kind"] != "event")
    assert total == kept_and_lost


def test_only_the_last_checkpoints_are_kept(killed_and_resumed):
    cwd = killed_and_resumed[0]
    run_dir = next((cwd / ".paretrain" / "runs").iterdir())
    assert len(checkpoint_paths(run_dir)) <= 2


def test_a_truncated_checkpoint_is_survived_on_resume(tmp_path):
    data = tiny_spec(target={"goal": 0.99, "levels": [0.99], "max_samples": 4000},
                     runtime={"eval_every_samples": 1000, "checkpoint_every_s": 0.05, "keep_checkpoints": 3},
                     hardware={"allow": ["aws/g4dn.xlarge"], "catalog": "builtin", "spot": False})
    plan = make_test_plan(data, e_min=1500)
    (tmp_path / "plan.json").write_text(plan_to_json(plan))
    first = start(tmp_path)
    first.communicate(timeout=300)
    run_dir = next((tmp_path / ".paretrain" / "runs").iterdir())
    newest = checkpoint_paths(run_dir)[-1]
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 3])
    again = start(tmp_path, "--resume")
    out, err = again.communicate(timeout=300)
    assert again.returncode == 3, err
    assert "resume: back to" in err
    assert newest.with_suffix(".damaged").exists()
