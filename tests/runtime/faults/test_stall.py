"""A step of the user's code that stalls (here: a ``time.sleep(60)`` in ``loss()``) on the real
clock is cut when the budget can pay for no more of it: the run stops with exit 3 within its
budget, the last checkpoint kept, and a ``--resume`` with nothing left spends nothing."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
import yaml

from paretrain.runtime.money.ledger import read_charges
from tests.runtime.faults.workload import (
    ledger,
    on_call,
    one_line,
    plan_in,
    run_plan,
    spec_data,
    write_workload,
)

pytestmark = pytest.mark.slow  # real training on the real clock, a process per command

STEP_STALLS = on_call("loss", 12, "time.sleep(60)", "import time")

#: after the dry check's evaluation and the run's first
EVALUATION_STALLS = on_call("evaluate", 2, "time.sleep(60)", "import time")

#: $0.01 a second on one CPU, and a project ceiling of $0.025: the run may hold it about 2.5 s
PRICE_PER_H, CEILING = 36.0, 0.025


def local_plan_in(folder: Path, fault: str) -> None:
    write_workload(folder, fault)
    data = spec_data(checkpoint_every_s=0.2)
    data["hardware"] = {
        "allow": ["local/cpu-1"],
        "catalog": "none",
        "prices": {"cpu_vcpu_usd_per_h": PRICE_PER_H},
    }
    data["budget"] = {**data["budget"], "project_ceiling_usd": CEILING, "approval_above_usd": 100.0}
    plan_in(folder, data)


@pytest.mark.parametrize(
    ("fault", "what"),
    [(STEP_STALLS, "a step"), (EVALUATION_STALLS, "an evaluation")],
    ids=["step", "evaluation"],
)
def test_stalled_user_code_is_cut_at_the_budget_and_resume_with_nothing_left_spends_nothing(
    tmp_path, fault, what
):
    local_plan_in(tmp_path, fault)
    t0 = time.monotonic()
    stopped = run_plan(tmp_path)
    took = time.monotonic() - t0
    assert stopped.returncode == 3, stopped.stderr
    line = one_line(stopped.stderr)
    assert f"{what} of the workload was still running when its budget" in line, line
    assert took < 40  # not the 60 s the step would have slept
    lines = ledger(tmp_path)
    total = math.fsum(c["usd"] for c in lines)
    assert total <= CEILING
    assert [c["status"] for c in lines if c.get("event") == "end"] == ["overran"]
    assert [c["what"] for c in lines if c.get("event") == "overran"] == [what]

    again = run_plan(tmp_path, "--resume")
    assert again.returncode == 3, again.stderr
    assert math.fsum(c["usd"] for c in ledger(tmp_path)) == total  # nothing more spent


def test_a_step_that_stalls_while_profiling_is_cut_at_the_profile_envelope(tmp_path):
    from tests.runtime.faults.workload import paretrain

    write_workload(tmp_path, on_call("loss", 30, "time.sleep(60)", "import time"))
    data = spec_data(planner={"convergence": "truncated"})
    data["hardware"] = {
        "allow": ["local/cpu-1"],
        "catalog": "none",
        "prices": {"cpu_vcpu_usd_per_h": PRICE_PER_H},
    }
    data["budget"] = {"total_usd": 1.0, "envelopes": {"profile": CEILING, "search": 0.0, "train": 0.5}}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    t0 = time.monotonic()
    done = paretrain(tmp_path, "plan", "spec.yaml", "-o", "plan.json", "--no-track")
    assert done.returncode == 3, done.stderr
    line = one_line(done.stderr)
    assert "was still running when the envelope" in line and "budget.envelopes.profile" in line, line
    assert time.monotonic() - t0 < 40
    spent = math.fsum(
        c["usd"]
        for f in (tmp_path / ".paretrain" / "ledger").glob("profile-*.jsonl")
        for c in read_charges(f)
    )
    assert 0 < spent <= CEILING
    assert not (tmp_path / "plan.json").exists()
