"""The regression workload of the how-to "Your own workload", taken from the page as a user copies
it: planned and run through the real command line, its target a loss (``val_mse``, minimized)."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from tests.conftest import ROOT
from tests.e2e.cli import ledger_total, paretrain

pytestmark = pytest.mark.slow  # a real profile and run: about 20 s

PAGE = ROOT / "docs" / "how-to" / "own-workload.md"

SPEC = {
    "name": "regression-from-the-docs",
    "workload": {"file": "./regression.py", "factory": "make_workload", "args": {"seed": 0}},
    "configs": [{"id": "mlp-32", "family": "mlp", "width": 32, "optimizer": "adam", "lr": 0.003}],
    "target": {"metric": "val_mse", "goal": 0.5, "levels": [0.5, 0.4], "max_samples": 60000},
    "budget": {"total_usd": 0.01, "envelopes": {"profile": 0.004, "search": 0.0, "train": 0.006}},
    "deadline_s": 600,
    "hardware": {"local": "auto", "catalog": "none", "allow": ["local/cpu-1"]},
    "planner": {"stages": 2, "batch_sizes": [32, 64], "convergence_batch_sizes": [32, 64, 128]},
    "runtime": {"eval_every_samples": 2000},
}


def page_workload() -> str:
    """The page's whole regression workload: the python block that defines ``make_workload``."""
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)
    (code,) = [b for b in blocks if "class Regression(Workload)" in b and "def make_workload" in b]
    return code


def test_the_docs_regression_workload_plans_and_runs_to_its_loss_target(tmp_path):
    (tmp_path / "regression.py").write_text(page_workload())
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(SPEC, sort_keys=False))
    plan = paretrain(tmp_path, "plan", "spec.yaml", "-o", "plan.json", "--no-track")
    assert plan.returncode == 0, plan.stderr
    run = paretrain(tmp_path, "run", "plan.json", "--no-track", "--format", "json")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)["run"]
    assert result["status"] == "target", result
    assert result["metric"] == "val_mse" and result["level"] <= 0.5  # minimized: at or below its level
    assert 0 < ledger_total(tmp_path, "run-") <= SPEC["budget"]["envelopes"]["train"]
