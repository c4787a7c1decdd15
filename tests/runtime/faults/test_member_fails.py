"""A workload member that raises mid-run (a loader on one sample in the second epoch, evaluate at its third call):
the run stops with one line naming the member (exit 2), its ledger closed and the last
checkpoint kept; once the workload is fixed, ``--resume`` reaches the target."""

from __future__ import annotations

import pytest

from paretrain.runtime.train.checkpoint import checkpoint_paths
from tests.runtime.faults.workload import (
    assert_ledger_consistent,
    ledger,
    make_plan_in,
    on_call,
    one_line,
    run_plan,
    write_workload,
)

BAD_SAMPLE = """
class _Corrupt(torch.utils.data.Dataset):
    def __init__(self, base):
        self.base = base
    def __len__(self):
        return len(self.base)
    def __getitem__(self, i):
        CALLS["items"] = CALLS.get("items", 0) + 1
        if CALLS["items"] == 700:  # in the second epoch
            raise ValueError(f"sample {i} cannot be read")
        return self.base[i]
W.train_dataset = lambda self: _Corrupt(self._data(512, 0))
"""

THIRD_EVALUATE = """
_base_eval = W.evaluate
def _evaluate(self, model, batches):
    CALLS["evaluate"] += 1
    if CALLS["evaluate"] >= 3:
        raise RuntimeError("the metric server is gone")
    return _base_eval(self, model, batches)
W.evaluate = _evaluate
"""


def _third_evaluate_returns(value: str) -> str:
    """``evaluate`` returns ``value`` (Python source) from its third call on."""
    return f"""
_base_eval = W.evaluate
def _evaluate(self, model, batches):
    CALLS["evaluate"] += 1
    out = _base_eval(self, model, batches)
    return {value} if CALLS["evaluate"] >= 3 else out
W.evaluate = _evaluate
"""


LOSS_EXITS = on_call("loss", 30, "sys.exit(0)", "import sys")


@pytest.mark.parametrize(
    ("fault", "member", "said"),
    [
        (BAD_SAMPLE, "train_dataset()", "cannot be read at step 22"),
        (THIRD_EVALUATE, "evaluate(model 'mlp-16')", "raised RuntimeError: the metric server is gone"),
        (_third_evaluate_returns("None"), "evaluate(model 'mlp-16')", "returned NoneType, not a dict"),
        (
            _third_evaluate_returns('{**out, "val_accuracy": "0.99"}'),
            "evaluate(model 'mlp-16')",
            "returned val_accuracy='0.99', not a number",
        ),
        (
            LOSS_EXITS,
            "loss(model 'mlp-16', a batch)",
            "raised WorkloadExit: sys.exit(0) was called at step 29 (at wl.py",
        ),
    ],
    ids=["loader", "evaluate", "evaluate-none", "evaluate-string", "loss-sys-exit"],
)
def test_a_member_that_raises_mid_run_stops_it_cleanly_and_resume_finishes(tmp_path, fault, member, said):
    """The resume is taken for the first two only: the others end the same way (exit 2, the
    run settled), and their resume would retrace the same path."""
    plan = make_plan_in(tmp_path, fault, checkpoint_every_s=0.005, eval_every_samples=256)
    failed = run_plan(tmp_path)
    assert failed.returncode == 2, failed.stderr
    line = one_line(failed.stderr)
    assert member in line and said in line and "workload tiny" in line, line
    assert "internal error" not in line and "--resume" in line
    run_dir = next((tmp_path / ".paretrain" / "runs").iterdir())
    assert checkpoint_paths(run_dir)  # the last checkpoint is kept
    budget = plan.spec.budget.train_usd
    total = assert_ledger_consistent(tmp_path, budget)
    assert f"spent ${total:.6g}" in line
    assert [c["status"] for c in ledger(tmp_path) if c.get("event") == "end"] == ["workload"]
    steps_before = [c["step"] for c in ledger(tmp_path) if c.get("what") == "train"]
    if fault not in (BAD_SAMPLE, THIRD_EVALUATE):
        return

    write_workload(tmp_path)  # fixed
    resumed = run_plan(tmp_path, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "target" in resumed.stdout
    assert_ledger_consistent(tmp_path, budget)
    lines = ledger(tmp_path)
    [resume] = [c for c in lines if c.get("event") == "resume"]
    # the resumed run goes on from the checkpoint's step, not from the start
    steps_after = [c["step"] for c in lines[lines.index(resume) :] if c.get("what") == "train"]
    assert steps_after and 1 < steps_after[0] <= max(steps_before) + 1
