"""What the command line delegates: approval, tracking session, plan logging, terminal output."""

from __future__ import annotations

import io
import json

import pytest
from click.testing import CliRunner

from paretrain.cli import cli
from paretrain.console import Output
from paretrain.output import show_plan
from paretrain.planner.errors import ApprovalRequired
from paretrain.planner.inputs.spec import spec_to_dict
from paretrain.planner.inputs.spec_parse import parse_spec
from paretrain.planner.plan.approval import check_approval, needs_approval
from paretrain.planner.plan.plan_file import plan_from_json
from paretrain.runtime.tracking.client import Tracker
from paretrain.runtime.tracking.plan_log import log_plan
from paretrain.runtime.tracking.session import open_session, parent_run
from paretrain.runtime.train.workloads import WORKLOADS
from tests.conftest import small_spec
from tests.planner.test_plan import plan_text


@pytest.fixture(scope="module")
def plan():
    return plan_from_json(plan_text(small_spec()), "plan.json")


# -- approval ----------------------------------------------------------------------------------


def test_approval_is_needed_only_above_the_threshold_and_names_amount_and_flag(plan):
    cand = plan.candidate("cheapest")
    check_approval(None, cand, False)  # no threshold: never needed
    check_approval(cand.cost_usd, cand, False)  # at the threshold: not above it
    check_approval(0.0, cand, True)  # approved
    with pytest.raises(ApprovalRequired) as err:
        check_approval({"budget": {"approval_above_usd": 0.0}}, cand, False)
    assert err.value.amount_usd == cand.cost_usd and err.value.threshold_usd == 0.0
    assert err.value.flag == "--approve" and "--approve" in str(err.value)


def test_approval_reads_a_spec_a_budget_a_plan_spec_or_a_number(plan):
    spec = parse_spec(small_spec(budget={"total_usd": 0.01, "approval_above_usd": 0.0}), "s", WORKLOADS)
    for budget in (spec, spec.budget, spec_to_dict(spec), 0.0):
        assert needs_approval(budget, 0.001)
        assert not needs_approval(budget, 0.0)
    assert not needs_approval(plan.spec, 1e9)  # the small spec sets no threshold


# -- tracking ----------------------------------------------------------------------------------


class FakeTracker:
    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.n = 0
        self.errors: list[str] = []  # as the real tracker's: what went wrong, first first
        self.spool_path = "spool.jsonl"

    def start_run(self, name, *, tags=None, parent=None, params=None, parent_run_id=None):
        self.n += 1
        self.calls.append(("start", name, parent, dict(tags or {}), dict(params or {})))
        return f"h{self.n}"

    def __getattr__(self, op):
        return lambda *a, **kw: self.calls.append((op, *a))


def test_log_plan_logs_one_child_per_candidate_with_predictions_and_the_artifacts(plan):
    spec = plan.spec
    tr = FakeTracker()
    children = log_plan(tr, "parent", spec, plan, artifacts=("spec.yaml", "plan.json", "pareto.png"))
    assert len(children) == len(plan.candidates)
    starts = [c for c in tr.calls if c[0] == "start"]
    assert [s[2] for s in starts] == ["parent"] * len(plan.candidates)
    assert {s[3]["paretrain.candidate"] for s in starts} == {c.id for c in plan.candidates}
    metrics = [c for c in tr.calls if c[0] == "log_metrics"]
    intervals = {f"predicted_{n}_p{q}" for n in ("cost_usd", "wall_s") for q in (10, 50, 90)} | {
        "predicted_p_reach"
    }
    assert all(
        set(m[2]) == {"predicted_cost_usd", "predicted_wall_s", "predicted_val_accuracy"} | intervals
        for m in metrics
    )
    assert all(m[2]["predicted_cost_usd_p10"] <= m[2]["predicted_cost_usd_p90"] for m in metrics)
    assert [c[2] for c in tr.calls if c[0] == "log_artifact"] == ["spec.yaml", "plan.json", "pareto.png"]
    params = next(c for c in tr.calls if c[0] == "log_params" and c[1] == "parent")[2]
    assert params["fingerprint"] == plan.fingerprint
    assert log_plan(None, None, spec, plan) == []


def test_a_tracker_that_logs_nothing_touches_no_store(tmp_path):
    tr = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "x", tmp_path / "spool.jsonl")
    assert tr.close()
    assert list(tmp_path.iterdir()) == []


def test_a_session_ends_its_parent_failed_when_the_command_fails(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_RUN_ID", "abc")
    session = open_session(None, None, "exp", tmp_path / "spool.jsonl")
    fake = FakeTracker()
    fake.close = lambda: True  # type: ignore[method-assign]  (a tracker that cannot reach MLflow)
    fake.run_id = lambda handle: "run-1"  # type: ignore[method-assign]  (the same fake)
    session.tracker = fake  # type: ignore[assignment]  (the fake in the session's place)
    with pytest.raises(RuntimeError), parent_run(session, "plan", kind="plan"):
        raise RuntimeError("boom")
    start = fake.calls[0]
    assert start[3]["paretrain.kind"] == "plan" and start[3]["paretrain.project_run"] == "abc"
    assert "mlflow.source.git.commit" in start[3]
    assert ("end_run", "h1", "FAILED") in fake.calls
    assert session.close().run_id == "run-1"
    off = open_session("sqlite:///x.db", None, "exp", tmp_path / "spool.jsonl", enabled=False)
    assert off.tracker is None and off.start_parent("p", kind="plan") is None and not off.close().enabled


# -- terminal output ---------------------------------------------------------------------------


def test_piped_output_is_plain_one_row_a_line_with_no_colour_or_trailing_spaces(plan):
    out = io.StringIO()
    with Output("table", out=out) as ui:
        show_plan(ui, plan)
    text = out.getvalue()
    assert "\x1b[" not in text
    lines = text.splitlines()
    assert lines[0].split() == [
        "id",
        "config",
        "val_accuracy",  # the target metric's name
        "cost_usd",
        "cost",
        "P10-P90",
        "wall_s",
        "wall",
        "P10-P90",
        "stages",
    ]
    assert all(ln == ln.rstrip() for ln in lines)
    rows = [ln for ln in lines if ln.split() and ln.split()[0] in {c.id for c in plan.candidates}]
    assert len(rows) == len(plan.candidates)
    assert any("knee" in r for r in rows)


def test_levels_that_differ_in_the_third_decimal_are_shown_apart():
    plan = plan_from_json(plan_text(small_spec(target__levels=[0.4, 0.405, 0.5])), "plan.json")
    out = io.StringIO()
    with Output("table", out=out) as ui:
        show_plan(ui, plan)
    ids = {c.id: c.level for c in plan.candidates}
    shown = {
        ln.split()[0]: ln.split()[2].rstrip("~")
        for ln in out.getvalue().splitlines()
        if ln.split()[:1] and ln.split()[0] in ids
    }
    assert 0.405 in ids.values()
    assert all(float(shown[i]) == level for i, level in ids.items())  # 0.405 is not "0.41" or "0.40"
    assert "0.40" in shown.values() or "0.50" in shown.values()  # two decimals where they suffice


def test_json_format_puts_one_document_on_stdout(tmp_path):
    ledger = tmp_path / ".paretrain" / "ledger"
    ledger.mkdir(parents=True)
    (ledger / "run-a.jsonl").write_text(
        json.dumps(
            {
                "t": 1.0,
                "run_id": "run-a",
                "stage": "stage0",
                "kind": "compute",
                "hardware": "local/cpu-1",
                "usd": 0.25,
                "seconds": 2.0,
            }
        )
        + "\n"
    )
    r = CliRunner().invoke(cli, ["--workdir", str(tmp_path), "ledger", "--format", "json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["total_usd"] == pytest.approx(0.25)
    assert doc["rows"][0]["run"] == "run-a"
    table = CliRunner().invoke(cli, ["--workdir", str(tmp_path), "ledger"])
    assert "total $0.250000 (all)" in table.stdout


def test_progress_when_piped_is_a_few_plain_lines_with_rate_and_time_left():
    err = io.StringIO()
    with Output("table", out=io.StringIO(), err=err) as ui, ui.progress("profiling") as bar:
        for i in range(101):
            bar(f"step {i}", i, 100)
    lines = err.getvalue().splitlines()
    assert 2 <= len(lines) <= 11 and "\r" not in err.getvalue()
    assert lines[-1].startswith("profiling: 100/100 (100%)") and "/s" in lines[-1] and "left" in lines[-1]
