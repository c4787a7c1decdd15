"""End to end through the real CLI: plan, run and compare a small MNIST-1D spec, with MLflow.

The plan starts from the session's measured profile of the spec (``small_profiles``, measured by
``paretrain profile``), with that profile's ledger: a user's plan after ``paretrain profile``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from paretrain.planner.plan.plan_file import PLAN_SCHEMA
from tests.conftest import small_spec
from tests.e2e.cli import ledger_total, paretrain

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def planned(tmp_path_factory, small_profiles: Path):
    cwd = tmp_path_factory.mktemp("e2e")
    (cwd / "spec.yaml").write_text(yaml.safe_dump(small_spec()))
    shutil.copytree(small_profiles.parent, cwd / ".paretrain")  # the profiles and their ledger
    p = paretrain(cwd, "plan", "spec.yaml", "-o", "plan.json")
    assert p.returncode == 0, p.stderr
    return cwd, p


def test_plan_prints_the_pareto_table_and_writes_plan_and_plot(planned, small_profiles: Path):
    cwd, p = planned
    assert "id" in p.stdout and "cost_usd" in p.stdout and "knee" in p.stdout
    plan = json.loads((cwd / "plan.json").read_text())
    assert plan["schema"] == PLAN_SCHEMA and len(plan["pareto"]) >= 1
    assert (cwd / "pareto.png").stat().st_size > 1000
    assert "measured" in (small_profiles.parents[1] / "profile.out").read_text()  # for real, once
    assert "reused" in p.stdout  # and the plan read it back
    assert 0 < ledger_total(cwd, "profile-") <= 0.003  # the profile envelope


def test_planning_again_reuses_the_profile_and_gives_the_same_bytes(planned):
    cwd, _ = planned
    first = (cwd / "plan.json").read_bytes()
    p = paretrain(cwd, "plan", "spec.yaml", "-o", "plan2.json", "--no-track")
    assert p.returncode == 0, p.stderr
    assert "reused" in p.stdout
    assert (cwd / "plan2.json").read_bytes() == first


def test_run_reaches_target_within_budget_and_mlflow_holds_plan_and_run(planned):
    cwd, _ = planned
    r = paretrain(cwd, "run", "plan.json", "--candidate", "cheapest")
    assert r.returncode == 0, r.stderr
    assert "predicted" in r.stdout and "realized" in r.stdout
    plan = json.loads((cwd / "plan.json").read_text())
    budget = plan["spec"]["budget"]["envelopes"]["train"]
    assert ledger_total(cwd, "run-") <= budget

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{cwd / 'mlflow.db'}")
    exp = client.get_experiment_by_name("mnist1d-test")
    assert exp is not None
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    kinds = [r.data.tags.get("paretrain.kind") for r in runs]
    parent = next(r for r in runs if r.data.tags.get("paretrain.kind") == "plan")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == len(plan["pareto"]) == kinds.count("candidate")
    for child in children:
        assert {"predicted_cost_usd", "predicted_wall_s", "predicted_val_accuracy"} <= set(child.data.metrics)
    execution = [r for r in runs if r.data.tags.get("paretrain.kind") == "run"]
    assert len(execution) == 1
    ex = execution[0]
    assert ex.data.tags["paretrain.plan_fingerprint"] == plan["fingerprint"]
    assert ex.data.tags["paretrain.candidate"] == plan["cheapest"]
    assert ex.data.metrics["cost_usd"] == pytest.approx(ledger_total(cwd, "run-"), rel=1e-9)
    assert (
        ex.data.metrics["val_accuracy"]
        >= next(c for c in plan["pareto"] if c["id"] == plan["cheapest"])["predicted"]["level"]
    )
    assert len(client.get_metric_history(ex.info.run_id, "val_accuracy")) >= 2

    c = paretrain(cwd, "compare", "--experiment", "mnist1d-test", "--format", "json")
    assert c.returncode == 0, c.stderr
    rows = json.loads(c.stdout)["runs"]
    assert [row["candidate"] for row in rows] == [plan["cheapest"]]
    row = rows[0]
    assert row["metric"] == "val_accuracy" and row["val_accuracy"] == ex.data.metrics["val_accuracy"]
    assert row["predicted_val_accuracy"] == next(
        c["predicted"]["level"] for c in plan["pareto"] if c["id"] == plan["cheapest"]
    )
    # errors are numbers: (realized - predicted) / predicted
    assert row["cost_err"] == pytest.approx(
        (row["cost_usd"] - row["predicted_cost_usd"]) / row["predicted_cost_usd"]
    )
    assert isinstance(row["wall_err"], float) and "predicted_accuracy" not in row
    assert (cwd / "compare.png").exists()


def test_run_stops_at_its_budget_with_exit_3_and_never_overspends(tmp_path):
    # The spec claims the MLP converges in 50 samples, so the plan is cheap; the real MLP
    # needs far more, and the tiny training envelope runs out first.
    data = small_spec(
        convergence={"mlp-64x2": {"e_min": 50, "b_noise": 1000, "level": 0.9}},
        configs=[{"id": "mlp-64x2", "family": "mlp", "width": 64, "depth": 2}],
        target={"goal": 0.9, "max_samples": 10**6},
        budget={"total_usd": 0.01, "envelopes": {"profile": 0.003, "train": 0.00001}},
    )
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(data))
    p = paretrain(tmp_path, "plan", "spec.yaml", "-o", "plan.json", "--no-track")
    assert p.returncode == 0, p.stderr
    r = paretrain(tmp_path, "run", "plan.json", "--no-track")
    assert r.returncode == 3, r.stdout + r.stderr
    assert "stopped at its budget" in r.stderr and "--resume" in r.stderr
    assert ledger_total(tmp_path, "run-") <= 0.00001
    assert list((tmp_path / ".paretrain" / "runs").glob("*/ckpt-*.pt"))


def test_infeasible_spec_exits_3_naming_the_binding_constraint(profiled):
    tmp_path = profiled
    data = small_spec(deadline_s=0.001)
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(data))
    p = paretrain(tmp_path, "plan", "spec.yaml", "--no-track")
    assert p.returncode == 3
    assert "Binding: deadline" in p.stderr and "deadline_s to at least" in p.stderr
    assert not (tmp_path / "plan.json").exists()
