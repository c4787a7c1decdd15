"""SIGTERM and SIGINT during a run: the step in flight finishes, a checkpoint is written, the
billing hold settled and the ledger's end written; exit 143 / 130 with one line naming the
``--resume`` command, which then continues from that checkpoint to the target, the ledger
neither losing nor double-counting a charge."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from paretrain.runtime.train.checkpoint import checkpoint_paths
from tests.runtime.faults.workload import (
    assert_ledger_consistent,
    ledger,
    make_plan_in,
    one_line,
    run_args,
    run_plan,
    start,
)

pytestmark = pytest.mark.slow  # a run, a signal and a resume: ~10 s each

#: each step takes 20 ms of real time, so that a signal lands while the run trains
SLOW_STEPS = """
import time
_base_loss = W.loss
def _loss(self, model, batch):
    time.sleep(0.02)
    return _base_loss(self, model, batch)
W.loss = _loss
"""


def train_lines(folder) -> int:
    try:
        return sum(1 for c in ledger(folder) if c.get("what") == "train")
    except (OSError, ValueError):
        return 0


def signalled(folder, sig: int) -> subprocess.CompletedProcess:
    proc = start(folder, run_args())
    deadline = time.monotonic() + 120
    while train_lines(folder) < 10 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["TERM", "INT"])
def test_a_signal_checkpoints_settles_and_resume_reaches_the_target(tmp_path, sig, code):
    plan = make_plan_in(tmp_path, SLOW_STEPS, lr=0.003, checkpoint_every_s=5.0)
    stopped = signalled(tmp_path, sig)
    assert stopped.returncode == code, stopped.stderr
    line = one_line(stopped.stderr)
    name = signal.Signals(sig).name
    assert f"stopped by {name}" in line and "paretrain run plan.json --candidate p01 --resume" in line, line
    run_dir = next((tmp_path / ".paretrain" / "runs").iterdir())
    assert len(checkpoint_paths(run_dir)) == 2  # the start's, and the one the signal wrote
    budget = plan.spec.budget.train_usd
    total = assert_ledger_consistent(tmp_path, budget)
    assert f"spent ${total:.6g}" in line
    # what it did so far is shown, not judged against the prediction: the resumed run will be
    assert f"{name}: the figures are the run so far, not judged" in stopped.stdout
    cost_row = next(x for x in stopped.stdout.splitlines() if x.startswith("cost_usd"))
    assert cost_row.split()[-1] == "-", cost_row
    before = ledger(tmp_path)
    assert [c["status"] for c in before if c.get("event") == "end"] == [name]
    assert [c["what"] for c in before if c["kind"] == "checkpoint"][-1] == name
    steps = [c["step"] for c in before if c.get("what") == "train"]

    resumed = run_plan(tmp_path, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    lines = ledger(tmp_path)
    assert lines[: len(before)] == before  # nothing rewritten
    assert_ledger_consistent(tmp_path, budget)
    after = [c["step"] for c in lines[len(before) :] if c.get("what") == "train"]
    assert after[0] == steps[-1] + 1  # exactly where the signal stopped it: no step lost or repeated
    [resume] = [c for c in lines if c.get("event") == "resume"]
    train_lost = [c for c in lines[resume["from_line"] : lines.index(resume)] if c.get("what") == "train"]
    assert not train_lost  # no training is lost: only the checkpoint's own write and the settling
