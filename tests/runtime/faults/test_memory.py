"""Out of memory at a planned batch: ``runtime.max_memory_mb`` on a CPU (a stage whose step at
the planned batch would pass it), or a step raising ``torch.OutOfMemoryError`` (what a GPU
raises; raised here on a CPU by the workload): the batch is halved (the learning rate
rescaled), recorded as a ``memory`` event, the rest of the run replanned within the new cap,
and the run still reaches its target within its budget."""

from __future__ import annotations

import json

import pytest

from tests.runtime.faults.workload import OFFER, assert_ledger_consistent, ledger, make_plan_in, run_plan


def test_a_step_over_max_memory_halves_the_batch_and_the_run_goes_on(tmp_path):
    plan = make_plan_in(tmp_path, max_memory_mb=0.006)  # the tiny MLP's step: 12 KB at 32, 5 KB at 8
    done = run_plan(tmp_path)
    assert done.returncode == 0, done.stderr
    [memory] = [c for c in ledger(tmp_path) if c.get("event") == "memory"]
    assert memory["was"] == 32 and memory["batch_size"] < 32 and memory["peak_mb"] <= 0.006
    steps = [c for c in ledger(tmp_path) if c.get("what") == "train"]
    assert steps and "out of memory at batch 32" in done.stderr + done.stdout
    assert_ledger_consistent(tmp_path, plan.spec.budget.train_usd)


def test_without_max_memory_the_planned_batch_is_kept(tmp_path):
    make_plan_in(tmp_path)
    assert run_plan(tmp_path).returncode == 0
    assert not [c for c in ledger(tmp_path) if c.get("event") == "memory"]


#: a step over 16 samples runs out of memory, from the loss's ``{after}``th call on (the dry
#: check's tiny batch fits); each time is written to oom.log
OOM_ABOVE_16 = """
_base_loss = W.loss
def _loss(self, model, batch):
    CALLS["loss"] += 1
    if len(batch[0]) > 16 and CALLS["loss"] >= {after}:
        with open("oom.log", "a") as f:
            f.write(f"{{len(batch[0])}}\\n")
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB")
    return _base_loss(self, model, batch)
W.loss = _loss
"""


@pytest.mark.slow  # a real run in a fresh process: 4-9 s
@pytest.mark.parametrize("after", [0, 30], ids=["first-step", "mid-window"])
def test_a_step_out_of_memory_is_taken_again_at_half_the_batch_and_the_rest_replanned(tmp_path, after):
    # torch.cuda.OutOfMemoryError is torch.OutOfMemoryError: what a GPU step raises, raised on a CPU
    plan = make_plan_in(tmp_path, OOM_ABOVE_16.format(after=after), planner={"stages": 2})
    assert [s.batch_size for s in plan.candidate("cheapest").stages] == [32, 32]
    done = run_plan(tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "target" in done.stdout
    assert "out of memory at batch 32: batch 16" in done.stderr + done.stdout
    [memory] = [c for c in ledger(tmp_path) if c.get("event") == "memory"]
    assert (memory["was"], memory["batch_size"], memory["oom"]) == (32, 16, "OutOfMemoryError")
    [replan] = [c for c in ledger(tmp_path) if c.get("event") == "replan"]
    assert replan["reason"] == "out of memory at batch 32" and replan["action"] == "resize_batch"
    assert replan["batch_cap"] == {OFFER: 16}
    run_dir = next((tmp_path / ".paretrain" / "runs").iterdir())
    events = [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines()]
    [stages] = [e["stages"] for e in events if e["event"] == "replan"]
    assert stages == [f"{OFFER} b16", f"{OFFER} b16"]  # the later stage too: never above the cap
    assert (tmp_path / "oom.log").read_text().split() == ["32"]  # one step lost, never again
    steps = [c["step"] for c in ledger(tmp_path) if c.get("what") == "train"]
    assert steps == list(range(1, len(steps) + 1))  # the lost step is neither charged nor counted
    assert_ledger_consistent(tmp_path, plan.spec.budget.train_usd)


@pytest.mark.slow
def test_without_adaptation_a_step_out_of_memory_only_halves_the_batch(tmp_path):
    make_plan_in(tmp_path, OOM_ABOVE_16.format(after=0), adapt=False)
    done = run_plan(tmp_path)
    assert done.returncode == 0, done.stderr
    assert [c["batch_size"] for c in ledger(tmp_path) if c.get("event") == "memory"] == [16]
    assert not [c for c in ledger(tmp_path) if c.get("event") == "replan"]
