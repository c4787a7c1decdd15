"""``paretrain compare``: fields named by the target metric, errors as numbers with one sign."""

from __future__ import annotations

import io
import json
from types import SimpleNamespace

import pytest

from paretrain.console import Output
from paretrain.run_output import show_compare
from paretrain.runtime.tracking.compare import compare_rows, relative_error


def _run(run_id: str, metrics: dict[str, float], metric: str, direction: str) -> SimpleNamespace:
    tags = {
        "paretrain.kind": "run",
        "paretrain.candidate": f"c-{run_id}",
        "paretrain.plan_fingerprint": "f" * 16,
        "paretrain.status": "reached",
        "paretrain.metric": metric,
        "paretrain.direction": direction,
    }
    return SimpleNamespace(
        info=SimpleNamespace(run_id=run_id), data=SimpleNamespace(metrics=metrics, tags=tags)
    )


class _Client:
    def __init__(self, runs: list[SimpleNamespace]) -> None:
        self.runs = runs

    def get_experiment_by_name(self, name: str) -> SimpleNamespace:
        return SimpleNamespace(name=name, experiment_id="1")

    def search_runs(self, *args, **kwargs) -> list[SimpleNamespace]:
        return self.runs


@pytest.fixture
def mse_runs(monkeypatch):
    runs = [
        _run(
            "r1",
            {
                "cost_usd": 1.1,
                "predicted_cost_usd": 1.0,
                "wall_s": 8.0,
                "predicted_wall_s": 10.0,
                "val_mse": 0.55,
                "predicted_val_mse": 0.5,
            },
            "val_mse",
            "minimize",
        ),
        _run("r2", {"cost_usd": 2.0, "wall_s": 5.0, "val_mse": 0.4}, "val_mse", "minimize"),
        _run("r3", {"wall_s": 1.0}, "val_mse", "minimize"),  # still running: no row
    ]
    monkeypatch.setattr("paretrain.runtime.tracking.client._client", lambda uri: _Client(runs))
    return runs


def test_relative_error_is_realized_minus_predicted_over_predicted():
    assert relative_error(1.0, 1.1) == pytest.approx(0.1)
    assert relative_error(10.0, 8.0) == pytest.approx(-0.2)
    assert relative_error(0.0, 3.0) is None


def test_rows_name_the_metric_and_give_errors_as_numbers(mse_runs):
    name, rows = compare_rows("sqlite:///x.db", "exp")
    assert name == "exp" and [r["run"] for r in rows] == ["r1", "r2"]
    first = rows[0]
    assert first["metric"] == "val_mse" and first["direction"] == "minimize"
    assert first["predicted_val_mse"] == 0.5 and first["val_mse"] == 0.55
    assert "val_accuracy" not in first and "predicted_accuracy" not in first
    assert first["cost_err"] == pytest.approx(0.1) and first["wall_err"] == pytest.approx(-0.2)
    assert first["metric_err"] == pytest.approx(0.1)
    # nothing predicted (a run logged without predictions): no error, not a string
    assert rows[1]["cost_err"] is None and rows[1]["metric_err"] is None
    # r2 is cheaper in wall time and lower (better) in val_mse: both on the front
    assert [r["on_front"] for r in rows] == [True, True]


def test_runs_logged_with_predicted_accuracy_still_compare(monkeypatch):
    old = _run(
        "r0",
        {"cost_usd": 1.0, "wall_s": 1.0, "val_accuracy": 0.8, "predicted_accuracy": 0.75},
        "val_accuracy",
        "maximize",
    )
    monkeypatch.setattr("paretrain.runtime.tracking.client._client", lambda uri: _Client([old]))
    _, rows = compare_rows("sqlite:///x.db", "exp")
    assert rows[0]["predicted_val_accuracy"] == 0.75 and rows[0]["val_accuracy"] == 0.8


def test_json_record_and_table_show_the_same_errors(mse_runs):
    name, rows = compare_rows("sqlite:///x.db", "exp")
    out = io.StringIO()
    with Output("json", out=out, err=io.StringIO()) as ui:
        show_compare(ui, name, rows)
    record = json.loads(out.getvalue())
    assert record["runs"][0]["cost_err"] == pytest.approx(0.1)
    assert isinstance(record["runs"][0]["wall_err"], float)
    table = io.StringIO()
    with Output("table", out=table) as ui:
        show_compare(ui, name, rows)
    text = table.getvalue()
    assert "(realized-predicted)/predicted" in text
    head = next(line for line in text.splitlines() if line.startswith("candidate"))
    assert "pred_val_mse" in head.split() and "val_mse" in head.split()
    row = next(line for line in text.splitlines() if line.startswith("c-r1"))
    assert "+10.0%" in row and "-20.0%" in row


def test_a_resumed_run_is_one_row_and_a_stopped_one_is_not_judged(monkeypatch):
    def attempt(mlflow_id: str, run_id: str, status: str, cost: float) -> SimpleNamespace:
        r = _run(mlflow_id, {"cost_usd": cost, "wall_s": cost * 10, "val_mse": 0.4}, "val_mse", "minimize")
        r.data.tags.update({"paretrain.run_id": run_id, "paretrain.status": status})
        return r

    runs = [  # oldest first, as the store returns them
        attempt("a1", "run-a", "SIGTERM", 0.5),  # stopped, then resumed as a2
        attempt("b1", "run-b", "SIGINT", 0.1),  # stopped, never resumed: partial figures
        attempt("a2", "run-a", "target", 1.2),
    ]
    monkeypatch.setattr("paretrain.runtime.tracking.client._client", lambda uri: _Client(runs))
    _, rows = compare_rows("sqlite:///x.db", "exp")
    assert [(r["run"], r["attempts"], r["status"]) for r in rows] == [
        ("b1", 1, "SIGINT"),
        ("a2", 2, "target"),
    ]
    # b1 is cheaper and as good, but its figures are the run so far: only a2 is judged
    assert [r["on_front"] for r in rows] == [None, True]
    table = io.StringIO()
    with Output("table", out=table) as ui:
        show_compare(ui, "exp", rows)
    assert "target (2 attempts)" in table.getvalue()


def test_an_error_that_is_not_finite_is_not_shown_as_a_percentage():
    from paretrain.run_output import _error, _shown_error

    assert _error(0.5, float("inf")) == "-" and _shown_error(float("nan")) == "-"
    assert _error(0.5, 0.55) == "+10.0%" and _shown_error(None) == "-"


def test_runs_aiming_at_different_metrics_get_a_table_and_a_front_each(monkeypatch):
    runs = [
        _run("m1", {"cost_usd": 1.0, "wall_s": 1.0, "val_mse": 0.5}, "val_mse", "minimize"),
        _run("r1", {"cost_usd": 2.0, "wall_s": 2.0, "val_r2": 0.6}, "val_r2", "maximize"),
        _run("r2", {"cost_usd": 3.0, "wall_s": 3.0, "val_r2": 0.5}, "val_r2", "maximize"),
    ]
    monkeypatch.setattr("paretrain.runtime.tracking.client._client", lambda uri: _Client(runs))
    name, rows = compare_rows("sqlite:///x.db", "exp")
    # m1 is not compared with the val_r2 runs; r2 is dominated by r1 (dearer, slower, lower r2)
    assert {r["run"]: r["on_front"] for r in rows} == {"m1": True, "r1": True, "r2": False}
    out = io.StringIO()
    with Output("table", out=out, err=io.StringIO()) as ui:
        show_compare(ui, name, rows)
    text = out.getvalue()
    mse_table, r2_table = text.split("pred_val_r2")[0], "pred_val_r2" + text.split("pred_val_r2")[1]
    assert "pred_val_mse" in mse_table and "m1" in mse_table and "r1" not in mse_table
    assert "r1" in r2_table and "r2" in r2_table and "m1" not in r2_table
