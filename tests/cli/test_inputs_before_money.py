"""Every input a command needs is checked before the first charge; ``run --resume`` is idempotent."""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from paretrain.cli import cli
from paretrain.planner.plan.plan_file import plan_from_json, plan_to_json
from paretrain.run_inputs import choose_resume
from paretrain.runtime.run.runs import find_resumable, last_run
from tests.conftest import small_spec
from tests.planner.test_plan import plan_text


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def one_error_line(result) -> str:
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def planned(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "plan.json").write_text(plan_text(small_spec()))
    return tmp_path, plan_from_json((tmp_path / "plan.json").read_text(), "plan.json")


def write_status(root: Path, run_id: str, plan, candidate: str, status: str) -> None:
    folder = root / ".paretrain" / "runs" / run_id
    folder.mkdir(parents=True)
    (folder / "status.json").write_text(
        json.dumps(
            {"run_id": run_id, "fingerprint": plan.fingerprint, "candidate": candidate, "status": status}
        )
    )


@pytest.mark.parametrize("command", ["profile", "plan"])
def test_missing_profiles_file_exits_2_before_any_profiling_charge(command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(small_spec(profiles=["from-the-cloud.json"])))
    result = CliRunner().invoke(cli, [command, "spec.yaml"])
    assert result.exit_code == 2, result.output
    line = one_error_line(result)
    assert "field 'profiles[0]' must name an existing profile file; got 'from-the-cloud.json'" in line
    assert not (tmp_path / ".paretrain" / "ledger").exists()  # the profile ledger holds no charge
    assert not (tmp_path / "mlflow.db").exists()


def test_spec_without_a_workload_section_exits_2_instead_of_training_mnist1d(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = small_spec()
    del data["workload"]
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(data))
    for command in (["profile", "spec.yaml"], ["search", "spec.yaml"], ["plan", "spec.yaml"]):
        result = CliRunner().invoke(cli, command)
        assert result.exit_code == 2, result.output
        assert "field 'workload' is required" in one_error_line(result)
    assert files(tmp_path).keys() == {"spec.yaml"}


def test_python_workload_is_imported_before_the_search_spends(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "spec.yaml").write_text(
        yaml.safe_dump(small_spec(workload={"name": "python:json:make_it"}, search={"trials": 2}))
    )
    result = CliRunner().invoke(cli, ["search", "spec.yaml", "--storage", "sqlite:///optuna.db"])
    assert result.exit_code == 2, result.output
    assert "workload.python' must name a function of json" in one_error_line(result)
    assert files(tmp_path).keys() == {"spec.yaml"}


def test_run_checks_the_plans_workload_before_it_starts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    plan = plan_from_json(plan_text(small_spec()), "plan.json")
    spec = replace(plan.spec, workload=replace(plan.spec.workload, name="python:no_such_module_zz:make"))
    (tmp_path / "plan.json").write_text(plan_to_json(replace(plan, spec=spec)))
    before = files(tmp_path)
    result = CliRunner().invoke(cli, ["run", "plan.json", "--no-track"])
    assert result.exit_code == 2, result.output
    assert "must name an importable module" in one_error_line(result)
    assert files(tmp_path) == before


@pytest.mark.parametrize("trace", [None, "t_s,hardware,price_usd_per_h,available\n0,aws/none,1.0,1\n"])
def test_bad_or_missing_price_trace_exits_2_and_writes_nothing(trace, planned):
    tmp_path, _ = planned
    if trace is not None:
        (tmp_path / "prices.csv").write_text(trace)
    before = files(tmp_path)
    result = CliRunner().invoke(cli, ["run", "plan.json", "--prices", "prices.csv"])
    assert result.exit_code == 2, result.output
    assert "prices.csv" in one_error_line(result)
    assert files(tmp_path) == before


def test_resume_of_a_finished_run_says_so_and_exits_0_charging_nothing(planned):
    tmp_path, plan = planned
    cand = plan.candidate("cheapest")
    write_status(tmp_path, "run-old", plan, cand.id, "target")
    ledger = tmp_path / ".paretrain" / "ledger" / "run-old.jsonl"
    ledger.parent.mkdir(parents=True)
    ledger.write_text('{"t": 1, "run_id": "run-old", "kind": "compute", "usd": 0.001}\n')
    before = files(tmp_path)
    for _ in range(2):  # a crash-restart loop runs the same command again and again
        result = CliRunner().invoke(cli, ["run", "plan.json", "--candidate", "cheapest", "--resume"])
        assert result.exit_code == 0, result.output
        assert result.stdout.strip() == (
            f"run run-old of candidate {cand.id} already finished (reached its target); nothing to resume"
        )
        assert files(tmp_path) == before


def test_resume_of_a_finished_run_in_json_prints_one_document(planned):
    tmp_path, plan = planned
    cand = plan.candidate("knee")
    write_status(tmp_path, "run-old", plan, cand.id, "target")
    result = CliRunner().invoke(cli, ["run", "plan.json", "--resume", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["run"] == {
        "run_id": "run-old",
        "candidate": cand.id,
        "status": "target",
        "already_finished": True,
    }


def test_resume_chooses_the_newest_run_of_the_candidate(planned):
    tmp_path, plan = planned
    cand = plan.candidate("cheapest")
    assert last_run(tmp_path, plan.fingerprint, cand.id) is None
    choice = choose_resume(tmp_path, plan, cand)
    assert choice.run_id is None and not choice.finished and "starting one" in choice.message
    write_status(tmp_path, "run-a", plan, cand.id, "budget")
    write_status(tmp_path, "run-other", plan, "some-other-candidate", "running")
    assert last_run(tmp_path, plan.fingerprint, cand.id) == ("run-a", "budget")
    assert choose_resume(tmp_path, plan, cand).run_id == "run-a"
    write_status(tmp_path, "run-b", plan, cand.id, "target")
    later = time.time() + 5
    os.utime(tmp_path / ".paretrain" / "runs" / "run-b" / "status.json", (later, later))
    assert last_run(tmp_path, plan.fingerprint, cand.id) == ("run-b", "target")
    assert choose_resume(tmp_path, plan, cand).finished
    assert find_resumable(tmp_path, plan.fingerprint, cand.id) == "run-a"  # its other callers' answer


@pytest.mark.slow
def test_resume_with_no_run_starts_one_then_a_second_resume_charges_nothing(tmp_path, monkeypatch):
    from tests.runtime.plans import make_test_plan

    monkeypatch.chdir(tmp_path)
    plan = make_test_plan()
    (tmp_path / "plan.json").write_text(plan_to_json(plan))
    cand = plan.candidate("cheapest")
    args = ["run", "plan.json", "--candidate", "cheapest", "--resume", "--no-track"]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert f"no run of candidate {cand.id} of plan {plan.fingerprint} yet; starting one" in first.stderr
    run_id, status = last_run(tmp_path, plan.fingerprint, cand.id)
    assert status == "target"
    ledger = tmp_path / ".paretrain" / "ledger" / f"{run_id}.jsonl"
    charged = ledger.read_bytes()
    assert charged
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0, again.output
    assert "already finished" in again.stdout
    assert ledger.read_bytes() == charged
    assert [p.name for p in (tmp_path / ".paretrain" / "runs").iterdir()] == [run_id]


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["plan", "spec.yaml", "-o", "afile/plan.json"], "-o afile/plan.json: afile is a file"),
        (["plan", "spec.yaml", "-o", "/proc/plan.json"], "no file can be made in the folder /proc"),
        (["profile", "spec.yaml", "-o", "/proc/p.json"], "no file can be made in the folder /proc"),
        (["--workdir", "/proc/wd", "plan", "spec.yaml"], "--workdir /proc/wd: no file can be made"),
        (["init", "/proc/x"], "DIRECTORY /proc/x: no file can be made"),
        (["compare", "-o", "/proc/c.png"], "-o /proc/c.png: no file can be made"),
        (["compare"], "no MLflow store at sqlite:///mlflow.db"),
    ],
    ids=[
        "plan-under-a-file",
        "plan-in-proc",
        "profile-in-proc",
        "workdir",
        "init",
        "compare-o",
        "compare-no-store",
    ],
)
def test_a_path_that_cannot_be_written_exits_2_before_anything_is_measured_or_written(
    args, said, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(small_spec()))
    (tmp_path / "afile").write_text("")
    before = files(tmp_path)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    line = one_error_line(result)
    assert said in line and "To fix:" in line, line
    assert files(tmp_path) == before
