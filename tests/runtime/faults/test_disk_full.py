"""A full disk while a checkpoint or the ledger is written (``ENOSPC`` injected at the write):
the run stops with exit 3 and one line naming the folder and the bytes needed, no ledger line is
half-written, and ``--resume`` finishes the run once space is freed."""

from __future__ import annotations

import errno
import json

import pytest
from click.testing import CliRunner

from paretrain.cli import cli
from paretrain.runtime.money import disk
from paretrain.runtime.train import checkpoint
from tests.runtime.faults.workload import assert_ledger_consistent, ledger, make_plan_in

ARGS = ["run", "plan.json", "--candidate", "cheapest", "--no-track"]


def full_after(calls: int, write):
    """``write`` whose ``calls``-th call and every later one find the disk full."""
    seen = [0]

    def fill(*args):
        seen[0] += 1
        if seen[0] >= calls:
            raise OSError(errno.ENOSPC, "No space left on device")
        return write(*args)

    return fill


def half_written_beyond(size: int):
    """The ledger's append once the file would pass ``size`` bytes: half of that write reaches
    the file (by bytes, not by calls: how the steps' lines are batched depends on the machine)."""
    written = [0]

    def append(fd, data):
        if written[0] + len(data) > size:
            data = data[: len(data) // 2]
        n = disk.os.write(fd, data)
        written[0] += n
        return n

    return append


def stopped_then_resumed(tmp_path, monkeypatch, target, patched) -> tuple:
    monkeypatch.chdir(tmp_path)
    plan = make_plan_in(tmp_path, checkpoint_every_s=0.005)
    monkeypatch.setattr(target[0], target[1], patched)
    stopped = CliRunner().invoke(cli, ARGS)
    monkeypatch.undo()  # space is freed
    monkeypatch.chdir(tmp_path)
    raw = next((tmp_path / ".paretrain" / "ledger").glob("run-*.jsonl")).read_bytes()
    resumed = CliRunner().invoke(cli, [*ARGS, "--resume"])
    return plan, stopped, raw, resumed


@pytest.mark.parametrize(
    ("where", "folder", "what"),
    [("checkpoint", "runs", "checkpoint ckpt-"), ("ledger", "ledger", "the ledger run-")],
)
def test_a_full_disk_stops_with_exit_3_naming_folder_and_bytes_and_resume_finishes(
    tmp_path, monkeypatch, where, folder, what
):
    if where == "checkpoint":
        target, patched = (checkpoint, "atomic_write_bytes"), full_after(3, checkpoint.atomic_write_bytes)
    else:
        target, patched = (disk, "append"), half_written_beyond(6000)
    plan, stopped, raw, resumed = stopped_then_resumed(tmp_path, monkeypatch, target, patched)
    assert stopped.exit_code == 3, stopped.output
    lines = [ln for ln in stopped.stderr.splitlines() if ln.startswith("paretrain:")]
    assert len(lines) == 1 and "Traceback" not in stopped.stderr, stopped.stderr
    line = lines[0]
    assert f"no space left in .paretrain/{folder}" in line and what in line, line
    assert " bytes needed to write " in line and "--resume" in line
    assert raw.endswith(b"\n")  # no line is half-written
    assert all(json.loads(ln) for ln in raw.decode().splitlines())
    assert resumed.exit_code == 0, resumed.output
    assert_ledger_consistent(tmp_path, plan.spec.budget.train_usd)
    assert sum(1 for c in ledger(tmp_path) if c.get("event") == "resume") == 1
