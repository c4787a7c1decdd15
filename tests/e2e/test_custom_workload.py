"""The custom-workload example as a user runs it: its folder copied to a fresh directory, then
``paretrain plan``, ``run`` and ``compare`` through the real command line, with MLflow. And its
workload through the Trainer: the same seed gives the same losses."""

from __future__ import annotations

import json
import math
import shutil

import pytest

from paretrain.planner.inputs.space import Config
from paretrain.runtime.train.trainer import Trainer
from paretrain.runtime.train.workloads import user_factory
from tests.conftest import ROOT
from tests.e2e.cli import ledger_total, paretrain

EXAMPLE = ROOT / "examples" / "custom_workload"
EXPERIMENT = "digits-custom"  # the example spec's name


def example_workload(seed: int = 0):
    return user_factory(f"file:{EXAMPLE / 'digits_workload.py'}:make_workload")(seed=seed, val_fraction=0.2)


@pytest.mark.parametrize(
    "config",
    [
        Config("mlp-32x2", "mlp", (("width", 32), ("depth", 2)), lr=0.003),
        Config("cnn-8", "cnn", (("channels", 8),), lr=0.003),
    ],
    ids=lambda c: c.family,
)
def test_example_workload_trains_the_same_under_the_same_seed(config):
    def first_losses(seed: int, loader_workers: int = 0) -> list[float]:
        t = Trainer(example_workload(), config, batch_size=32, seed=seed, loader_workers=loader_workers)
        losses = [t.step() for _ in range(6)]
        t.set_batch_size(64)
        return losses + [t.step() for _ in range(2)]

    first = first_losses(seed=1)
    assert all(math.isfinite(v) for v in first)
    assert first_losses(seed=1) == first
    assert first_losses(seed=2) != first
    # Through DataLoader worker processes the batches, and so the losses, are the same.
    assert first_losses(seed=1, loader_workers=1) == first


def test_example_workload_evaluates_its_declared_metrics():
    w = example_workload()
    t = Trainer(w, Config("mlp-32x2", "mlp", (("width", 32), ("depth", 2)), lr=0.01), batch_size=64)
    before = t.evaluate()
    for _ in t.steps_for(4000):
        pass
    after = t.evaluate()
    assert set(after.metrics) == {name for name, _ in w.info.metrics}
    assert after.metric.name == "val_accuracy"
    assert after.value > max(before.value, 0.7)


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("custom") / "digits"
    shutil.copytree(EXAMPLE, cwd, ignore=shutil.ignore_patterns("__pycache__"))
    p = paretrain(cwd, "plan", "digits.yaml", "-o", "plan.json")
    assert p.returncode == 0, p.stdout + p.stderr
    return cwd, p


@pytest.mark.slow
def test_example_plans_runs_and_compares_from_a_fresh_directory(planned):
    cwd, p = planned
    plan = json.loads((cwd / "plan.json").read_text())
    assert plan["spec"]["workload"]["name"] == f"file:{cwd / 'digits_workload.py'}:make_workload"
    assert len(plan["pareto"]) >= 1
    families = {c["id"]: c["family"] for c in plan["configs"]}
    assert {c["config"] for c in plan["pareto"]} <= set(families) <= {"mlp-64x2", "cnn-16"}
    assert set(families.values()) <= {"mlp", "cnn"}
    goal = plan["spec"]["target"]["goal"]
    assert all(c["predicted"]["level"] >= goal for c in plan["pareto"])
    assert plan["cheapest"] in {c["id"] for c in plan["pareto"]}
    assert "cost_usd" in p.stdout and "cheapest" in p.stdout
    assert ledger_total(cwd, "profile-") <= plan["spec"]["budget"]["envelopes"]["profile"]

    r = paretrain(cwd, "run", "plan.json", "--candidate", "cheapest")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "predicted" in r.stdout and "realized" in r.stdout
    train_budget = plan["spec"]["budget"]["envelopes"]["train"]
    spent = ledger_total(cwd, "run-")
    assert 0 < spent <= train_budget
    statuses = [json.loads(f.read_text()) for f in (cwd / ".paretrain" / "runs").glob("*/status.json")]
    assert [s["status"] for s in statuses] == ["target"]
    assert statuses[0]["candidate"] == plan["cheapest"]

    c = paretrain(cwd, "compare", "--experiment", EXPERIMENT, "--format", "json")
    assert c.returncode == 0, c.stdout + c.stderr
    rows = json.loads(c.stdout)["runs"]
    assert [row["candidate"] for row in rows] == [plan["cheapest"]]
    row = rows[0]
    assert row["status"] == "target" and row["metric"] == "val_accuracy" and row["direction"] == "maximize"
    cheapest = next(cand for cand in plan["pareto"] if cand["id"] == plan["cheapest"])
    assert row["val_accuracy"] >= cheapest["predicted"]["level"]
    assert row["cost_usd"] == pytest.approx(spent, rel=1e-9)

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{cwd / 'mlflow.db'}")
    exp = client.get_experiment_by_name(EXPERIMENT)
    assert exp is not None
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parent = [run for run in runs if run.data.tags.get("paretrain.kind") == "plan"]
    assert len(parent) == 1
    children = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent[0].info.run_id]
    assert len(children) == len(plan["pareto"])
    for child in children:
        assert {"predicted_cost_usd", "predicted_wall_s", "predicted_val_accuracy"} <= set(child.data.metrics)
    execution = [run for run in runs if run.data.tags.get("paretrain.kind") == "run"]
    assert len(execution) == 1
    ex = execution[0]
    assert ex.data.tags["paretrain.plan_fingerprint"] == plan["fingerprint"]
    assert ex.data.tags["paretrain.candidate"] == plan["cheapest"]
    assert ex.data.tags["paretrain.metric"] == "val_accuracy"
    assert {"cost_usd", "wall_s", "val_accuracy", "val_loss"} <= set(ex.data.metrics)
    assert ex.data.metrics["cost_usd"] == pytest.approx(spent, rel=1e-9)
    assert len(client.get_metric_history(ex.info.run_id, "val_accuracy")) >= 1
