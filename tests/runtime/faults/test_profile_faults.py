"""Faults while ``paretrain plan`` / ``paretrain profile`` measure (the real TorchLab on the tiny
user workload): a signal stops at the next unit of measuring with one line naming the money
spent, exit 143 / 130, and no profile or plan written; a config whose convergence run diverges
is marked failed and left out of the plan (a note and one line on stderr), or, none left, exit 3;
a member that raises is exit 2 with one line. In every case the profile's ledger is whole and
sums to what was reported."""

from __future__ import annotations

import json
import math
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from paretrain.runtime.money.ledger import read_charges
from tests.runtime.faults.workload import one_line, paretrain, spec_data, start, write_workload

pytestmark = pytest.mark.slow  # each measures for real in a fresh process: 6-12 s

SLOW_STEPS = """
import time
_base_loss = W.loss
def _loss(self, model, batch):
    time.sleep(0.02)
    return _base_loss(self, model, batch)
W.loss = _loss
"""

#: width 32 diverges after its model's 20th step (the dry check takes one): its loss turns NaN
#: (step timing ignores it, a convergence run does not), or its evaluated accuracy does
WIDE_LOSS_NAN = """
_base_loss = W.loss
def _loss(self, model, batch):
    model.steps = getattr(model, "steps", 0) + 1
    loss = _base_loss(self, model, batch)
    return loss * float("nan") if model[0].out_features == 32 and model.steps > 20 else loss
W.loss = _loss
"""

#: each model counts the training steps it took (``model.steps``), for the faults below
COUNT_STEPS = """
_base_loss, _base_eval = W.loss, W.evaluate
def _loss(self, model, batch):
    model.steps = getattr(model, "steps", 0) + 1
    return _base_loss(self, model, batch)
"""

WIDE_METRIC_NAN = (
    COUNT_STEPS
    + """
def _evaluate(self, model, batches):
    out = dict(_base_eval(self, model, batches))
    if model[0].out_features == 32 and getattr(model, "steps", 0) > 20:
        out["val_accuracy"] = float("nan")
    return out
W.loss, W.evaluate = _loss, _evaluate
"""
)

LOSS_RAISES = """
_base_loss = W.loss
def _loss(self, model, batch):
    CALLS["loss"] += 1
    if CALLS["loss"] == 60:
        raise RuntimeError("the loss server is gone")
    return _base_loss(self, model, batch)
W.loss = _loss
"""

OOM_ABOVE_16 = """
_base_loss = W.loss
def _loss(self, model, batch):
    if len(batch[0]) > 16:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB")
    return _base_loss(self, model, batch)
W.loss = _loss
"""

WIDE = {"id": "mlp-32", "family": "mlp", "width": 32, "lr": 0.01}


def setup(folder: Path, fault: str, *, wide: str = "both", **planner: object) -> None:
    """``wl.py`` with ``fault`` and ``spec.yaml``: mlp-16 and mlp-32 (``wide``: both, or only)."""
    write_workload(folder, fault)
    data = spec_data()
    data["configs"] = {"both": [*data["configs"], WIDE], "only": [WIDE], "none": data["configs"]}[wide]
    data["planner"].update(planner)
    (folder / "spec.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def profile_ledger(folder: Path) -> list[dict]:
    return [
        c for f in sorted((folder / ".paretrain" / "ledger").glob("profile-*.jsonl")) for c in read_charges(f)
    ]


def assert_ledger_whole(folder: Path) -> float:
    """Every line whole, numbered without gap, within the profile envelope; its total."""
    lines = profile_ledger(folder)
    assert [int(c["id"].rsplit(":", 1)[1]) for c in lines] == list(range(len(lines)))
    total = math.fsum(c["usd"] for c in lines)
    assert 0 < total <= spec_data()["budget"]["envelopes"]["profile"]
    return total


def written(folder: Path) -> set[str]:
    """The profile and plan files in ``folder``."""
    return {p.name for p in (folder / ".paretrain" / "profiles").glob("*.json")} | {
        p.name for p in folder.glob("*.json")
    }


def signalled(folder: Path, args: list[str], sig: int) -> subprocess.CompletedProcess:
    """``args`` in ``folder``, sent ``sig`` once the step timing has been charged."""
    proc = start(folder, [sys.executable, "-m", "paretrain.cli", *args])
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            if any(c.get("what", "").startswith("steps of") for c in profile_ledger(folder)):
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.parametrize(
    ("args", "sig", "code"),
    [
        (["profile", "spec.yaml", "-o", "out.json"], signal.SIGTERM, 143),
        (["plan", "spec.yaml", "-o", "plan.json", "--no-track"], signal.SIGINT, 130),
    ],
    ids=["profile-TERM", "plan-INT"],
)
def test_a_signal_while_profiling_stops_at_a_measurement_and_writes_nothing(tmp_path, args, sig, code):
    setup(tmp_path, SLOW_STEPS, wide="none")
    stopped = signalled(tmp_path, args, sig)
    assert stopped.returncode == code, stopped.stderr
    line = one_line(stopped.stderr)
    name = signal.Signals(sig).name
    assert f"profiling stopped by {name} at a measurement boundary" in line, line
    assert "no profile was written" in line and "run the same command again" in line
    assert written(tmp_path) == set()  # no profile, no plan, nothing half-written
    assert not list(tmp_path.rglob("*.tmp*"))
    total = assert_ledger_whole(tmp_path)
    assert f"spent ${total:.6g} of the profile envelope" in line  # every second measured is charged
    assert profile_ledger(tmp_path)[-1]["what"].startswith("steps of")  # it stopped there, not later


@pytest.mark.parametrize(
    ("fault", "mode", "said"),
    [
        (WIDE_LOSS_NAN, "full", "the training loss was nan at step 21"),
        (WIDE_METRIC_NAN, "truncated", "the evaluated val_accuracy was nan at"),
    ],
    ids=["loss-full", "metric-truncated"],
)
def test_a_config_that_diverges_while_profiling_is_marked_failed_and_the_plan_goes_on(
    tmp_path, fault, mode, said
):
    setup(tmp_path, fault, convergence=mode)
    done = paretrain(tmp_path, "plan", "spec.yaml", "-o", "plan.json", "--no-track")
    assert done.returncode == 0, done.stderr
    line = one_line(done.stderr)
    assert line.startswith("paretrain: mlp-32 diverged while profiling (") and said in line, line
    assert "marked failed, not planned" in line
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert {c["config"] for c in plan["pareto"]} == {"mlp-16"}
    assert [n for n in plan["notes"] if n.startswith("mlp-32: diverged while profiling")]
    [profile] = (tmp_path / ".paretrain" / "profiles").glob("*.json")
    runs = json.loads(profile.read_text())["convergence"]
    wide = [r for r in runs if r["config_id"] == "mlp-32"]
    assert len(wide) == 1 and said in wide[0]["diverged"]  # no more money spent on it
    assert all(math.isfinite(v) for r in runs for _, v in r["curve"])
    assert all(not r["diverged"] for r in runs if r["config_id"] == "mlp-16")
    assert_ledger_whole(tmp_path)


def test_when_every_config_diverges_while_profiling_the_plan_exits_3(tmp_path):
    setup(tmp_path, WIDE_LOSS_NAN, wide="only")
    done = paretrain(tmp_path, "plan", "spec.yaml", "-o", "plan.json", "--no-track")
    assert done.returncode == 3, done.stderr
    line = one_line(done.stderr)
    assert "no configuration is left to plan: every one diverged while profiling" in line, line
    assert "mlp-32: the training loss was nan at step 21" in line and "To fix:" in line
    assert "plan.json" not in written(tmp_path)
    assert_ledger_whole(tmp_path)


@pytest.mark.parametrize("command", ["plan", "profile"])
def test_a_member_that_raises_while_profiling_exits_2_with_one_line(tmp_path, command):
    setup(tmp_path, LOSS_RAISES, wide="none")
    extra = ["--no-track"] if command == "plan" else []
    done = paretrain(tmp_path, command, "spec.yaml", "-o", "out.json", *extra)
    assert done.returncode == 2, done.stderr
    line = one_line(done.stderr)
    assert "internal error" not in line
    assert re.search(
        r"workload tiny: loss\(model 'mlp-16', a batch\) raised RuntimeError: the loss server is gone at step \d+ "
        r"\(at wl\.py:\d+, in _loss\)",
        line,
    ), line
    assert written(tmp_path) == set()
    assert_ledger_whole(tmp_path)


def test_a_batch_that_runs_out_of_memory_while_profiling_is_not_planned(tmp_path):
    """What a GPU raises, raised on a CPU: the step timing records the first batch that ran out
    (larger ones are not timed), the convergence run there is not measured, and the plan uses
    only the batches that fit, saying why in its notes."""
    setup(tmp_path, OOM_ABOVE_16, wide="none", batch_sizes=[16, 64], convergence_batch_sizes=[8, 16, 64])
    data = yaml.safe_load((tmp_path / "spec.yaml").read_text())
    data["hardware"] = {"allow": ["local/cpu-1"], "catalog": "none"}
    data["planner"]["convergence"] = "full"  # a convergence run at each batch size
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    done = paretrain(tmp_path, "plan", "spec.yaml", "-o", "plan.json", "--no-track")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "paretrain:" not in done.stderr
    [profile] = (tmp_path / ".paretrain" / "profiles").glob("*.json")
    prof = json.loads(profile.read_text())
    [steps] = prof["steps"]
    assert steps["oom_batch"] == 64 and [s["batch_size"] for s in steps["samples"]] == [16]
    assert sorted(r["batch_size"] for r in prof["convergence"]) == [8, 16]
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert {s["batch_size"] for c in plan["pareto"] for s in c["stages"]} == {16}
    assert [n for n in plan["notes"] if "a step at batch 64 ran out of memory while profiling" in n]
    assert [n for n in plan["notes"] if "mlp-16 at batch 64 on local/cpu-1: out of memory" in n]
    assert_ledger_whole(tmp_path)


#: evaluate raises, after half a second, once its model has trained 40 steps: past the dry
#: check's, inside a measurement whose meter has not yet charged that half second
EVAL_RAISES_LATE = (
    COUNT_STEPS
    + """
import time
def _evaluate(self, model, batches):
    if getattr(model, "steps", 0) > 40:
        time.sleep(0.5)
        raise RuntimeError("the metric server is gone")
    return _base_eval(self, model, batches)
W.loss, W.evaluate = _loss, _evaluate
"""
)


def test_a_member_that_raises_mid_measurement_has_the_time_it_took_charged(tmp_path):
    setup(tmp_path, EVAL_RAISES_LATE, wide="none")
    done = paretrain(tmp_path, "plan", "spec.yaml", "-o", "plan.json", "--no-track")
    assert done.returncode == 2, done.stderr
    assert "raised RuntimeError: the metric server is gone" in one_line(done.stderr)
    assert written(tmp_path) == set()
    assert_ledger_whole(tmp_path)
    assert profile_ledger(tmp_path)[-1]["seconds"] >= 0.5  # the failing evaluation's half second


def test_the_profile_envelope_holds_across_attempts_that_did_not_finish(tmp_path):
    """A retried plan measures from the start within what is left of the envelope: an envelope
    that the stopped attempt already spent refuses to start (exit 3, nothing written); a larger
    one measures, and the profile written closes the account."""
    setup(tmp_path, SLOW_STEPS, wide="none")
    args = ["plan", "spec.yaml", "-o", "plan.json", "--no-track"]
    assert signalled(tmp_path, args, signal.SIGINT).returncode == 130
    spent = assert_ledger_whole(tmp_path)
    data = yaml.safe_load((tmp_path / "spec.yaml").read_text())
    data["budget"]["envelopes"]["profile"] = spent  # what the stopped attempt spent: nothing left
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    refused = paretrain(tmp_path, *args)
    assert refused.returncode == 3, refused.stderr
    line = one_line(refused.stderr)
    assert "profiling not started: earlier attempts at this profile that did not finish spent" in line
    assert "budget.envelopes.profile" in line
    assert written(tmp_path) == set() and math.fsum(c["usd"] for c in profile_ledger(tmp_path)) == spent
    data["budget"]["envelopes"]["profile"] = 0.1
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    assert paretrain(tmp_path, *args).returncode == 0
    assert profile_ledger(tmp_path)[-1]["event"] == "profile_written"  # the account is closed
