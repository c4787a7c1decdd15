"""Bad input through the CLI: exit 2, one line on stderr, no traceback, nothing written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from paretrain.cli import cli
from tests.conftest import ROOT, small_spec

BAD = {
    "missing file": None,
    "bad yaml": "name: x\nbudget: {total_usd: 1\n  oops: [}\n",
    "unknown key": {**small_spec(), "colour": "red"},
    "wrong type": small_spec(deadline_s="soon"),
    "negative budget": small_spec(budget={"total_usd": -5}),
    "nan budget": small_spec(budget={"total_usd": float("nan")}),
    "empty hardware list": small_spec(hardware={"allow": []}),
    "unknown workload": small_spec(workload={"name": "imagenet"}),
    "unknown offer": small_spec(hardware={"allow": ["aws/p9.huge"]}),
    "no workload section": {k: v for k, v in small_spec().items() if k != "workload"},
    "workload without a name": small_spec(workload={"samples": 3000}),
    "missing profiles file": small_spec(profiles=["measured-elsewhere.json"]),
    "python workload not importable": small_spec(workload={"name": "python:no_such_module_zz:make"}),
    "python workload without its factory": small_spec(workload={"name": "python:json:no_such_factory"}),
    "search storage in a missing folder": small_spec(
        search={"trials": 1, "storage": "sqlite:///no/such/o.db"}
    ),
}


def files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_spec_exits_2_with_one_line_and_writes_nothing(case, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "spec.yaml"
    data = BAD[case]
    if data is not None:
        spec.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    before = files(tmp_path)
    result = CliRunner().invoke(cli, ["plan", str(spec), "-o", "plan.json"])
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("paretrain: ") and "To fix" in lines[0]
    assert "Traceback" not in result.output
    assert files(tmp_path) == before


def test_message_names_file_field_rule_and_value(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump(small_spec(budget={"total_usd": -5})))
    result = CliRunner().invoke(cli, ["plan", str(spec)])
    assert f"{spec}: field 'budget.total_usd' must be > 0; got -5" in result.stderr


def test_real_process_bad_input_has_no_traceback(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text("name: x\n")
    proc = subprocess.run(
        [sys.executable, "-m", "paretrain.cli", "plan", str(spec)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "field 'workload' is required" in proc.stderr


def test_init_writes_the_example_and_refuses_to_overwrite(tmp_path):
    r = CliRunner().invoke(cli, ["init", str(tmp_path)])
    assert r.exit_code == 0
    assert (tmp_path / "mnist1d.yaml").read_text() == (ROOT / "examples" / "mnist1d.yaml").read_text()
    r = CliRunner().invoke(cli, ["init", str(tmp_path)])
    assert r.exit_code == 2 and "--force" in r.stderr


def test_spec_schema_is_json():
    import json

    r = CliRunner().invoke(cli, ["spec-schema"])
    assert r.exit_code == 0
    assert json.loads(r.stdout)["title"] == "paretrain spec"


def test_run_with_a_missing_or_edited_plan_exits_2(tmp_path):
    r = CliRunner().invoke(cli, ["run", str(tmp_path / "none.json")])
    assert r.exit_code == 2 and "no such plan file" in r.stderr
    bad = tmp_path / "plan.json"
    bad.write_text('{"schema": "paretrain.plan/0"}')
    r = CliRunner().invoke(cli, ["run", str(bad)])
    from paretrain.planner.plan.plan_file import PLAN_SCHEMA

    assert r.exit_code == 2 and f"field 'schema' must be {PLAN_SCHEMA}" in r.stderr


def test_candidate_above_approval_threshold_needs_approve(tmp_path, monkeypatch):
    from tests.planner.test_plan import plan_text

    monkeypatch.chdir(tmp_path)
    data = small_spec(budget={"total_usd": 0.01, "envelopes": {"train": 0.006}, "approval_above_usd": 0.0})
    (tmp_path / "plan.json").write_text(plan_text(data))
    r = CliRunner().invoke(cli, ["run", "plan.json", "--candidate", "cheapest", "--no-track"])
    assert r.exit_code == 3
    assert "above budget.approval_above_usd $0" in r.stderr and "--approve" in r.stderr
    assert not (tmp_path / ".paretrain").exists()


@pytest.mark.parametrize(
    "args, env",
    [
        (["worker", "--rdzv-endpoint", "nonsense"], {}),
        (["run", "plan.json"], {"PARETRAIN_NNODES": "abc"}),
        (["run", "plan.json"], {"PARETRAIN_RDZV_ENDPOINT": "no-port"}),
        (["run", "plan.json"], {"PARETRAIN_MAX_RESTARTS": "-1"}),
    ],
)
def test_bad_rendezvous_settings_are_one_line_and_exit_2_before_anything_runs(tmp_path, args, env):
    (tmp_path / "plan.json").write_text("{}")  # never read: the settings are checked first
    proc = subprocess.run(
        [sys.executable, "-m", "paretrain.cli", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "To fix" in lines[0] and "Traceback" not in proc.stderr
    assert files(tmp_path) == {"plan.json"}


@pytest.mark.parametrize(
    "command", [["plan", "spec.yaml"], ["profile", "spec.yaml"], ["search", "spec.yaml"]]
)
def test_a_cache_folder_that_cannot_be_one_is_one_line_and_exit_2_before_anything_runs(tmp_path, command):
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(small_spec()))
    (tmp_path / "a-file").write_text("")
    proc = subprocess.run(
        [sys.executable, "-m", "paretrain.cli", *command],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "PARETRAIN_CACHE_DIR": str(tmp_path / "a-file" / "data")},
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "PARETRAIN_CACHE_DIR" in lines[0] and "To fix" in lines[0], proc.stderr
    assert files(tmp_path) == {"spec.yaml", "a-file"}  # no store, no ledger, no data
