"""Through the real CLI: a second process never spends a budget that another one is spending.

- ``paretrain profile`` of a profile another process measures waits for it and reuses it;
- ``paretrain run --resume`` while the run it would resume still trains is bad input (exit 2)
  and writes nothing.

The other process is the test itself, holding the lock that a ``paretrain`` process holds while
it measures or trains (``paretrain.runtime.locks``: ``flock`` binds open files, whichever
process they belong to)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from paretrain.planner.plan.plan_file import plan_to_json
from paretrain.runtime.locks import held
from paretrain.runtime.money.ledger import KILL_AT_LINE_ENV, Ledger
from tests.conftest import ROOT
from tests.e2e.cli import paretrain
from tests.runtime.plans import unreachable_plan


def _tree(root: Path) -> dict[str, int]:
    """Every file under ``root`` with its size."""
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


def test_a_profile_being_measured_elsewhere_is_waited_for_then_reused(profiled: Path):
    profiles = profiled / ".paretrain" / "profiles"
    [done] = list(profiles.glob("*.json"))
    aside = done.with_suffix(".measuring")
    done.rename(aside)  # as if the other process had not written it yet
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)
    err_path = profiled / "stderr.txt"
    with held(profiles / f"{done.stem}.lock", "the test's measurement"):
        with err_path.open("w") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "paretrain.cli", "profile", "spec.yaml"],
                cwd=profiled,
                env=env,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        deadline = time.monotonic() + 300
        while "waiting for" not in err_path.read_text():
            assert proc.poll() is None, f"it did not wait: {err_path.read_text()}"
            assert time.monotonic() < deadline, "it never said it waits"
            time.sleep(0.2)
        aside.rename(done)  # the other process wrote the profile, then lets go of the lock
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, err_path.read_text()
    assert f"process {os.getpid()}" in err_path.read_text() or "another process" in err_path.read_text()
    assert "reused" in out
    assert not list((profiled / ".paretrain" / "ledger").glob("profile-*.jsonl"))  # nothing spent


def test_resuming_a_run_that_still_trains_is_bad_input_and_writes_nothing(tmp_path: Path):
    (tmp_path / "plan.json").write_text(plan_to_json(unreachable_plan()))
    env = {**os.environ, "PYTHONPATH": str(ROOT), KILL_AT_LINE_ENV: "60"}
    env.pop("MLFLOW_TRACKING_URI", None)
    killed = subprocess.run(
        [sys.executable, "-m", "paretrain.cli", "run", "plan.json", "--candidate", "cheapest", "--no-track"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -9, killed.stderr  # an unfinished run, as a crash leaves it
    [ledger] = list((tmp_path / ".paretrain" / "ledger").glob("run-*.jsonl"))
    with Ledger(ledger, ledger.stem):  # the process that still trains it holds its ledger
        before = _tree(tmp_path)
        r = paretrain(tmp_path, "run", "plan.json", "--candidate", "cheapest", "--resume", "--no-track")
    assert r.returncode == 2, r.stderr
    line = r.stderr.strip()
    assert "\n" not in line and "still training" in line and ledger.name in line
    assert _tree(tmp_path) == before
