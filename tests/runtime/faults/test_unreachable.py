"""A target the run cannot reach: a user's workload whose labels are 40% noise levels off near
0.6 of a 0.9 target. The run's own curve says so once it has enough points, and the run stops
with exit 3, saying where it levels off and what stopping saved, long before
``target.max_samples``, its ledger closed and its last checkpoint kept.

``target.max_samples`` is 4,000,000 here: going on that far would hold the emulated offer for
about two minutes of its virtual clock, past the provider's 60-second minimum, so stopping
saves money (at the usual 40,000 the minimum is paid either way)."""

from __future__ import annotations

import json
import math
import re

import pytest

from tests.runtime.faults.workload import assert_ledger_consistent, ledger, make_plan_in, one_line, run_plan

#: the labels are flipped for 40% of the samples, training and validation alike: no model
#: gets past about 0.6 (a validation set of 2,048 keeps the curve's own noise small)
PLATEAU = """
def _noisy(self, n, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    flip = torch.rand(n, generator=g) < 0.4
    return TensorDataset(x, ((x[:, 0] > 0) ^ flip).long())
W._data = _noisy
W.val_dataset = lambda self: self._data(2048, 1)
"""


@pytest.mark.slow  # ~15 s: a run through the command line and four refits of its curve
def test_a_target_the_curve_cannot_reach_stops_early_with_exit_3_and_what_it_saved(tmp_path):
    plan = make_plan_in(tmp_path, PLATEAU, max_samples=4_000_000)
    done = run_plan(tmp_path)
    assert done.returncode == 3, done.stderr
    line = one_line(done.stderr)
    assert "val_accuracy will not reach 0.9: the run's curve levels off at 0." in line, line
    step = int(re.search(r"stopped at step (\d+)", line).group(1))
    samples = int(re.search(r"now after (\d+) samples", line).group(1))
    assert step > 0 and samples < 12000  # the plan schedules 3,488; no run here stops before 40,000
    total = assert_ledger_consistent(tmp_path, plan.spec.budget.train_usd)
    assert f"spent ${total:.6g}" in line
    saved, projected = (
        float(x)
        for x in re.search(r"stopping saved \$([0-9.e-]+) of the \$([0-9.e-]+) going on", line).groups()
    )
    assert saved == pytest.approx(projected - total, rel=1e-4) and saved > 0
    [stop] = [c for c in ledger(tmp_path) if c.get("event") == "unreachable"]
    assert stop["samples"] == samples and stop["step"] == step
    assert [c for c in ledger(tmp_path) if c.get("event") == "end"][-1]["status"] == "unreachable"
    assert math.fsum(c["usd"] for c in ledger(tmp_path)) == total
    [run_dir] = (tmp_path / ".paretrain" / "runs").iterdir()
    assert sorted(run_dir.glob("ckpt-*"))  # the last checkpoint is kept
    refits = [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines()]
    refits = [e for e in refits if e["event"] == "curve"]
    assert len(refits) >= 2 and refits[-1]["samples"] <= samples
