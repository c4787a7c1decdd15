"""A plan from truncated convergence runs, as a user runs it: the digits example with
``planner.convergence: truncated``, through the real command line and real training."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from tests.conftest import ROOT
from tests.e2e.cli import ledger_total, paretrain

pytestmark = pytest.mark.slow

EXAMPLE = ROOT / "examples" / "custom_workload"


def test_truncated_runs_plan_the_digits_example_and_say_what_the_profile_cost(tmp_path):
    for f in EXAMPLE.iterdir():
        if f.is_file():
            shutil.copy(f, tmp_path / f.name)
    spec = yaml.safe_load((tmp_path / "digits.yaml").read_text())
    spec["planner"] = {**spec["planner"], "convergence": "truncated"}
    (tmp_path / "digits.yaml").write_text(yaml.safe_dump(spec))
    p = paretrain(tmp_path, "plan", "digits.yaml", "-o", "plan.json", "--no-track", "--format", "json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    cost = out["profile_cost"]
    assert cost["convergence"] == "truncated" and cost["spend_usd"] > 0
    assert cost["share"] == pytest.approx(cost["spend_usd"] / cost["knee_cost_usd"])
    profile = json.loads(next((tmp_path / ".paretrain" / "profiles").glob("*.json")).read_text())
    runs = profile["convergence"]
    assert runs and all(r["truncated"] for r in runs)
    assert len({(r["config_id"], r["batch_size"]) for r in runs}) == len(runs)  # one run per config
    notes = profile["notes"]["truncated"]
    assert notes["profile_fraction"] == 0.1 and notes["rounds"] >= 1
    # the profile's ledger holds what it reported, within the profile envelope
    assert ledger_total(tmp_path, "profile") == pytest.approx(cost["spend_usd"], rel=1e-6)
    assert cost["spend_usd"] <= spec["budget"]["envelopes"]["profile"]
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["pareto"]
    # each run's last state is kept beside the profile; the runs trained at batch 16, which
    # planner.batch_sizes does not offer, so no candidate starts from one
    assert {c["config_id"] for c in profile["checkpoints"]} == {r["config_id"] for r in runs}
    assert all(c["batch_size"] == 16 and c["path"].endswith(".pt") for c in profile["checkpoints"])
    assert all(c["start"] is None for c in plan["pareto"])
    # the plan's records cover the configs on its front; the notes, every config
    used = {c["config"] for c in plan["pareto"]}
    extrapolated = {
        (n.split(":")[0], n.split(" ")[2])
        for n in plan["notes"]
        if "extrapolated from a truncated run" in n and n.split(":")[0] in used
    }
    records = {
        (c["config_id"], f"{c['level']:g}") for c in plan["models"]["convergence"] if c["extrapolated"]
    }
    assert extrapolated == records
