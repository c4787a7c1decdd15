"""End to end through the real CLI on the language-model workload, a target to *minimize*.

From a fresh folder: ``paretrain init --example stdlib-lm``, the spec shrunk for CI (a 1 MB
corpus, levels of 3.6 and 3.4 bits per byte instead of 3.0 and 2.8, no gradient-noise
measurement, whose 96 gradients of 512 sequences alone take a minute), ``plan``, ``run
--candidate cheapest`` and ``compare --format json``, with MLflow in a sqlite file. About a
minute on an idle 2-core machine; several times that when other work shares the cores, which is
why the envelopes are widened.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.e2e.cli import ledger_total
from tests.e2e.cli import paretrain as _paretrain

pytestmark = pytest.mark.slow

LEVELS = [3.6, 3.4]  # bits per byte; lower is better, so the goal is the highest level


def paretrain(cwd: Path, *args: str):
    return _paretrain(cwd, *args, timeout=900)


def shrink(data: dict) -> dict:
    """The example spec, small enough for CI: a smaller corpus and easier levels."""
    data["name"] = "stdlib-lm-test"
    data["workload"]["args"] = {"max_bytes": 1_000_000, "val_windows": 64}
    data["target"].update(goal=LEVELS[0], levels=LEVELS, max_samples=20000)
    data["budget"] = {"total_usd": 0.05, "envelopes": {"profile": 0.03, "search": 0.0, "train": 0.015}}
    data["planner"].update(profile_steps=20, noise=False)
    data["runtime"]["eval_every_samples"] = 500
    return data


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("lm")
    i = paretrain(cwd, "init", "--example", "stdlib-lm")
    assert i.returncode == 0, i.stderr
    example = yaml.safe_load((cwd / "stdlib_lm.yaml").read_text())
    assert example["workload"]["name"] == "stdlib_lm" and example["target"]["metric"] == "val_bpb"
    assert len(example["planner"]["convergence_batch_sizes"]) >= 3
    (cwd / "spec.yaml").write_text(yaml.safe_dump(shrink(example), sort_keys=False))
    p = paretrain(cwd, "plan", "spec.yaml", "-o", "plan.json")
    assert p.returncode == 0, p.stdout + p.stderr
    return cwd, p, json.loads((cwd / "plan.json").read_text())


def test_init_keeps_mnist1d_as_the_default_and_lists_the_examples(tmp_path):
    r = paretrain(tmp_path, "init")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "mnist1d.yaml").exists() and not (tmp_path / "stdlib_lm.yaml").exists()
    h = paretrain(tmp_path, "init", "--help")
    assert "mnist1d" in h.stdout and "stdlib-lm" in h.stdout
    again = paretrain(tmp_path, "init", "--example", "stdlib-lm")
    assert again.returncode == 0
    twice = paretrain(tmp_path, "init", "--example", "stdlib-lm")
    assert twice.returncode == 2 and "--force" in twice.stderr


def test_the_plan_aims_at_bits_per_byte_levels(planned):
    _, p, plan = planned
    target = plan["spec"]["target"]
    assert target["metric"] == "val_bpb" and target["direction"] == "minimize"
    assert "val_bpb" in p.stdout  # the table's metric column
    assert plan["pareto"]
    for cand in plan["pareto"]:
        assert cand["predicted"]["level"] in LEVELS  # each candidate aims at one of the levels
        assert all(s["batch_size"] in (4, 8, 16, 32) for s in cand["stages"])
    # a lower (harder) level never costs fewer samples than an easier one
    by_level = {c["predicted"]["level"]: c for c in plan["pareto"]}
    if len(by_level) == 2:
        easy, hard = (sum(s["samples"] for s in by_level[lv]["stages"]) for lv in LEVELS)
        assert hard >= easy
    assert ledger_total(planned[0], "profile-") <= plan["spec"]["budget"]["envelopes"]["profile"]


def test_run_reaches_its_bpb_level_within_budget_and_mlflow_and_compare_hold_it(planned):
    cwd, _, plan = planned
    r = paretrain(cwd, "run", "plan.json", "--candidate", "cheapest")
    assert r.returncode in (0, 3), r.stdout + r.stderr
    cand = next(c for c in plan["pareto"] if c["id"] == plan["cheapest"])
    level = cand["predicted"]["level"]
    budget = plan["spec"]["budget"]["envelopes"]["train"]
    assert ledger_total(cwd, "run-") <= budget

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{cwd / 'mlflow.db'}")
    exp = client.get_experiment_by_name("stdlib-lm-test")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    execution = [x for x in runs if x.data.tags.get("paretrain.kind") == "run"]
    assert len(execution) == 1
    metrics = execution[0].data.metrics
    assert {"val_bpb", "predicted_val_bpb", "cost_usd", "wall_s"} <= set(metrics)
    assert metrics["predicted_val_bpb"] == pytest.approx(level)
    assert metrics["cost_usd"] == pytest.approx(ledger_total(cwd, "run-"), rel=1e-9)
    if r.returncode == 0:
        assert ": target;" in r.stdout
        assert metrics["val_bpb"] <= level  # reached: at or below its level
    else:  # stopped before its target: it says why, and how to go on
        assert "stopped" in r.stderr and "--resume" in r.stderr, r.stderr
        assert metrics["val_bpb"] > level

    c = paretrain(cwd, "compare", "--experiment", "stdlib-lm-test", "--format", "json")
    assert c.returncode == 0, c.stderr
    rows = json.loads(c.stdout)["runs"]
    assert [row["candidate"] for row in rows] == [plan["cheapest"]]
    assert rows[0]["metric"] == "val_bpb" and rows[0]["direction"] == "minimize"
    assert rows[0]["predicted_val_bpb"] == pytest.approx(level) and rows[0]["val_bpb"] == metrics["val_bpb"]
    assert rows[0]["status"] == ("target" if r.returncode == 0 else rows[0]["status"])
