"""Each refit of a run's curve lands in MLflow (a real sqlite store) at step = the samples seen,
and ``paretrain compare`` shows the first and the last refit: the prediction tightening."""

from __future__ import annotations

import io
import json
from types import SimpleNamespace

import pytest

from paretrain.console import Output
from paretrain.planner.inputs.metric import Metric
from paretrain.run_output import show_compare
from paretrain.runtime.adapt.learning import RunCurve
from paretrain.runtime.run.account import EventLog
from paretrain.runtime.run.reporting import Reporting
from paretrain.runtime.tracking.client import Tracker
from paretrain.runtime.tracking.compare import compare_rows
from tests.runtime.test_learning import candidate, points, power


@pytest.mark.slow  # ~11 s, most of it creating the MLflow store
def test_each_refit_is_logged_to_mlflow_and_compare_shows_the_first_and_the_last(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, "learn", tmp_path / "spool.jsonl")
    setup = SimpleNamespace(
        spec=SimpleNamespace(target=SimpleNamespace(metric_obj=Metric("val_accuracy", "maximize"))),
        run_dir=tmp_path,
    )
    reporting = Reporting(setup, tracker, EventLog(setup, SimpleNamespace(t=0.0)))
    tags = {"paretrain.kind": "run", "paretrain.metric": "val_accuracy", "paretrain.direction": "maximize"}
    handle = reporting.handle = tracker.start_run("run-p01", tags=tags)
    curve, pts = RunCurve(candidate(power(10000)), "maximize", 40000), points(power)
    refits = [curve.refit(pts[:n]) for n in (6, 16)]  # at 3,000 and 8,000 samples
    for refit in refits:
        reporting.refit(refit, curve.expected)
    tracker.log_metrics(handle, {"cost_usd": 0.01, "wall_s": 10.0, "val_accuracy": 0.8})
    tracker.end_run(handle)
    assert tracker.close() is True

    run_id = tracker.run_id(handle)
    history = MlflowClient(uri).get_metric_history(run_id, "curve_samples_to_target_p50")
    assert sorted(m.step for m in history) == [3000, 8000]
    _, [row] = compare_rows(uri, "learn")
    first, last = row["samples_to_target_first"], row["samples_to_target_last"]
    assert row["refits"] == 2 and first["samples"] == 3000 and last["samples"] == 8000
    lo, mid, hi = refits[-1].to_target
    assert (last["p10"], last["p50"], last["p90"]) == (lo, mid, hi)
    assert 9000 < last["p10"] <= last["p90"] < 11000  # on the plan's 10,000, and narrow
    assert first["p90"] is None or first["p90"] - first["p10"] > hi - lo  # wider early on

    out = io.StringIO()
    with Output("json", out=out) as ui:
        show_compare(ui, "learn", [row])
    assert json.loads(out.getvalue())["runs"][0]["samples_to_target_last"]["samples"] == 8000
    events = [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [e["samples"] for e in events if e["event"] == "curve"] == [3000, 8000]
