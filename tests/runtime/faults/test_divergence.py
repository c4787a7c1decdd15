"""A non-finite loss or metric in a run: back to the last checkpoint at half the learning rate,
once; a second divergence (or ``runtime.on_divergence: stop``) stops with exit 3, naming the
step, the value and what stopping saved of the candidate's predicted cost."""

from __future__ import annotations

import math
import re

import pytest

from tests.runtime.faults.workload import assert_ledger_consistent, ledger, make_plan_in, one_line, run_plan

#: the loss turns NaN at the 20th call (the dry check's call included), once or from then on
NAN_LOSS = """
_base_loss = W.loss
def _loss(self, model, batch):
    CALLS["loss"] += 1
    loss = _base_loss(self, model, batch)
    return loss * float("nan") if CALLS["loss"] {op} 20 else loss
W.loss = _loss
"""

NAN_METRIC = """
_base_eval = W.evaluate
def _evaluate(self, model, batches):
    out = dict(_base_eval(self, model, batches))
    CALLS["evaluate"] += 1
    if CALLS["evaluate"] >= 2:
        out["val_accuracy"] = float("inf")
    return out
W.evaluate = _evaluate
"""


def events(folder, name):
    return [c for c in ledger(folder) if c["kind"] == "event" and c.get("event") == name]


def test_a_loss_that_turns_nan_once_is_retried_from_the_checkpoint_at_half_the_lr(tmp_path):
    plan = make_plan_in(tmp_path, NAN_LOSS.format(op="=="), checkpoint_every_s=0.005)
    done = run_plan(tmp_path)
    assert done.returncode == 0, done.stderr
    [diverged] = events(tmp_path, "divergence")
    assert diverged["what"] == "the training loss" and diverged["value"] == "nan"
    [halved] = events(tmp_path, "lr_halved")
    assert halved["lr"] == pytest.approx(0.005)
    [rollback] = events(tmp_path, "rollback")
    assert rollback["checkpoint"].startswith("ckpt-") and rollback["lost_usd"] >= 0
    assert assert_ledger_consistent(tmp_path, plan.spec.budget.train_usd) > 0


@pytest.mark.parametrize(
    ("fault", "runtime", "what", "again"),
    [
        (NAN_LOSS.format(op=">="), {}, "the training loss was nan", True),
        (NAN_LOSS.format(op=">="), {"on_divergence": "stop"}, "the training loss was nan", False),
        (NAN_METRIC, {"on_divergence": "stop"}, "the evaluated val_accuracy was inf", False),
    ],
    ids=["retried-then-stopped", "stopped-at-once", "metric"],
)
def test_a_run_that_keeps_diverging_stops_with_exit_3_and_what_it_saved(
    tmp_path, fault, runtime, what, again
):
    plan = make_plan_in(tmp_path, fault, checkpoint_every_s=0.005, **runtime)
    done = run_plan(tmp_path)
    assert done.returncode == 3, done.stderr
    line = one_line(done.stderr)
    assert what in line and re.search(r"at step \d+", line), line
    assert ("again, after a retry at half the learning rate" in line) == again
    # the fix: a lower rate; another retry only where the run did not already retry
    assert "lower the config's lr" in line and ("on_divergence: retry" in line) == (not again)
    total = assert_ledger_consistent(tmp_path, plan.spec.budget.train_usd)
    cost = plan.candidate("cheapest").cost_usd
    if cost > total:
        saved = float(re.search(r"stopping saved \$([0-9.e-]+)", line).group(1))
        assert saved == pytest.approx(cost - total, rel=1e-4, abs=1e-9)
    else:  # nothing saved: the line says so rather than "saved $0"
        assert f"the candidate's predicted ${cost:.6g} was already spent" in line, line
    assert f"spent ${total:.6g}" in line
    assert len(events(tmp_path, "lr_halved")) == (1 if again else 0)
    assert events(tmp_path, "end")[-1]["status"] == "diverged"
    assert math.fsum(c["usd"] for c in ledger(tmp_path)) == total
