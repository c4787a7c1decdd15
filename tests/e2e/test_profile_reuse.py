"""No work paid twice, for real: a truncated profile on this machine keeps each run's last state
beside the profile file, the plan starts the knee there, and the run goes on from it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from paretrain.planner.inputs.spec_parse import parse_spec
from paretrain.runtime.money.ledger import read_charges
from paretrain.runtime.pipeline import Workspace, plan_spec
from paretrain.runtime.run.executor import Executor
from paretrain.runtime.train.workloads import WORKLOADS
from tests.runtime.plans import tiny_spec

pytestmark = pytest.mark.slow


def _spec():
    data = tiny_spec(
        hardware={"allow": ["local/cpu-1"]},
        target={"goal": 0.3, "levels": [0.3], "max_samples": 20000},
        planner={
            "convergence": "truncated",
            "stages": 2,
            "batch_sizes": [16],  # the truncated run's batch (the smallest convergence batch size)
            "convergence_batch_sizes": [16, 64],
            "profile_steps": 5,
            "noise": False,
        },
    )
    return parse_spec(data, "spec.yaml", WORKLOADS)


def test_a_truncated_profile_plans_and_runs_the_knee_from_its_checkpoint(tmp_path):
    spec, ws = _spec(), Workspace(Path(tmp_path))
    plan, profile, _ = plan_spec(spec, ws)
    # the profile file names the checkpoint beside it, and its ledger paid for writing it
    (ck,) = profile.checkpoints
    on_disk = json.loads((ws.profiles / f"{profile.key}.json").read_text())
    assert on_disk["checkpoints"][0]["sha256"] == ck.sha256
    assert (ws.profiles / ck.path).is_file() and ck.path.startswith(f"{profile.key}.checkpoints/")
    assert (ck.batch_size, ck.precision, ck.device, ck.seed) == (16, "fp32", "local/cpu-1", 0)
    assert ck.samples == profile.convergence[0].curve[-1][0]
    charges = list(read_charges(next(ws.ledgers.glob("profile-*.jsonl"))))
    assert any("checkpoint of the truncated run" in str(c.get("what")) for c in charges)
    assert profile.spend_usd <= spec.budget.profile_usd
    knee = plan.candidate("knee")
    assert knee.start is not None and knee.start.samples == ck.samples
    # what the profile paid for the training the knee reuses: some of its spend, not all of it
    assert 0 < ck.trained_usd < profile.spend_usd and knee.start.trained_usd == ck.trained_usd

    ex = Executor(plan, knee, workdir=ws.root, run_id="r")
    result = ex.run()
    assert result.reused_samples == ck.samples and result.samples > ck.samples
    (line,) = [c for c in read_charges(ws.ledgers / "r.jsonl") if c.get("event") == "reused"]
    assert (line["samples"], line["path"]) == (ck.samples, ck.path)

    # without the file the plan starts from scratch, says why, and counts the samples again
    shutil.rmtree(ws.profiles / f"{profile.key}.checkpoints")
    again, _, reused = plan_spec(spec, ws)
    assert reused and all(c.start is None for c in again.candidates)
    assert any("is missing" in n for n in again.notes)
    # the same batch throughout: the checkpoint's samples are what the first plan left out, or,
    # where the profile's run had already reached the level, all but a step per stage
    scratch = again.candidate("knee").samples
    crossing = dict(profile.convergence[0].reached).get(0.3)
    if crossing is None:
        assert scratch - knee.samples == pytest.approx(ck.samples, abs=16 * 2)
    else:
        assert knee.samples <= 16 * 2 and scratch <= ck.samples


WORKLOAD = """
from paretrain.runtime.train.workloads.mnist1d import Mnist1D


def make_workload(samples=800):
    return Mnist1D(samples=samples, val_fraction=0.25, seed=0)
"""


def test_a_run_does_not_start_from_state_that_an_earlier_version_of_the_workload_trained(tmp_path):
    from paretrain.runtime.run.executor import RunStopped
    from paretrain.runtime.train.checkpoint import load_verified
    from paretrain.runtime.train.workloads import workload_source_digest, workloads_for

    (tmp_path / "mine.py").write_text(WORKLOAD)
    raw = {**tiny_spec(), "workload": {"file": str(tmp_path / "mine.py"), "factory": "make_workload"}}
    data = {**raw, "target": _spec().data["target"], "planner": _spec().data["planner"]}
    data["hardware"] = {"allow": ["local/cpu-1"]}
    spec = parse_spec(data, "spec.yaml", workloads_for(data["workload"], "spec.yaml"))
    ws = Workspace(tmp_path / "work")
    plan, _, _ = plan_spec(spec, ws)
    knee = plan.candidate("knee")
    assert knee.start is not None
    code = workload_source_digest(spec.workload.name)
    saved = load_verified(ws.profiles / knee.start.path, knee.start.sha256)
    assert code and saved["profile"]["workload_code"] == code

    (tmp_path / "mine.py").write_text(WORKLOAD + "\n# edited after the plan\n")
    lines: list[str] = []
    try:
        result = Executor(plan, knee, workdir=ws.root, run_id="r", log=lines.append).run()
    except RunStopped as err:
        result = err.result
    assert result.reused_samples == 0
    (warning,) = [x for x in lines if x.startswith("warning:")]
    assert "another version of the workload's code" in warning and "training from scratch" in warning
    (line,) = [c for c in read_charges(ws.ledgers / "r.jsonl") if c.get("event") == "reuse_failed"]
    assert "another version" in line["reason"]
