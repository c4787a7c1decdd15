"""``runtime.max_memory_mb`` on a CPU: a stage whose step at the planned batch would pass it
trains at a halved batch (the learning rate rescaled), recorded as a ``memory`` event, and the
run still reaches its target within its budget."""

from __future__ import annotations

from tests.runtime.faults.workload import assert_ledger_consistent, ledger, make_plan_in, run_plan


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
