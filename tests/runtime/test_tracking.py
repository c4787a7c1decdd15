"""Unit tests of the tracking client: batched logging into a real sqlite MLflow store, the spool
when MLflow is unreachable, and replaying the spool exactly once."""

from __future__ import annotations

import json
import time

from paretrain.runtime.tracking.client import Tracker, sync_spool


def _client(uri):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _runs(uri, experiment):
    c = _client(uri)
    exp = c.get_experiment_by_name(experiment)
    return [] if exp is None else c.search_runs([exp.experiment_id])


def test_a_run_with_metrics_params_and_a_child_lands_in_the_store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tr = Tracker(uri, "unit", tmp_path / "spool.jsonl")
    parent = tr.start_run("plan", tags={"paretrain.kind": "plan"}, params={"a": 1})
    child = tr.start_run("p01", parent=parent)
    for step in range(50):
        tr.log_metrics(parent, {"loss": 1.0 / (step + 1)}, step=step)
    tr.log_metrics(child, {"predicted_cost_usd": 0.25})
    tr.end_run(child)
    tr.end_run(parent)
    assert tr.close() is True
    runs = {r.info.run_name: r for r in _runs(uri, "unit")}
    assert set(runs) == {"plan", "p01"}
    assert runs["plan"].data.params == {"a": "1"}
    assert runs["p01"].data.tags["mlflow.parentRunId"] == runs["plan"].info.run_id
    history = _client(uri).get_metric_history(runs["plan"].info.run_id, "loss")
    assert sorted(m.step for m in history) == list(range(50))
    assert not (tmp_path / "spool.jsonl").exists() or not (tmp_path / "spool.jsonl").read_text().strip()


def test_an_unreachable_store_spools_everything_without_blocking_then_sync_replays_it_once(tmp_path):
    spool = tmp_path / "spool.jsonl"
    tr = Tracker("http://127.0.0.1:9", "unit", spool, timeout_s=5.0)  # nothing listens on port 9
    h = tr.start_run("run-p01")
    t0 = time.perf_counter()
    for step in range(20):
        tr.log_metrics(h, {"val_accuracy": step / 20}, step=step)
    assert time.perf_counter() - t0 < 0.5  # the caller never waits on MLflow
    tr.end_run(h)
    assert tr.close() is False
    assert time.perf_counter() - t0 < 30.0
    ops = [json.loads(line) for line in spool.read_text().splitlines()]
    assert {op["op"] for op in ops} >= {"create", "metrics", "end"}
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done, left = sync_spool(spool, uri)
    assert left == 0 and done > 0
    (run,) = _runs(uri, "unit")
    history = _client(uri).get_metric_history(run.info.run_id, "val_accuracy")
    assert sorted(m.step for m in history) == list(range(20))
    sync_spool(spool, uri)  # a second sync changes nothing
    assert len(_runs(uri, "unit")) == 1
    assert len(_client(uri).get_metric_history(run.info.run_id, "val_accuracy")) == 20


def test_a_store_slow_to_open_is_waited_for_before_the_close_timeout_starts(tmp_path, monkeypatch):
    """Importing MLflow and opening a store took over 15 s on a loaded machine: a process that
    closed its tracker meanwhile spooled what it had logged. The close timeout guards sending,
    not the client's start-up."""
    from paretrain.runtime.tracking import client as tracking

    real = tracking._client

    def slow(uri):
        time.sleep(3.0)  # longer than the close timeout below
        return real(uri)

    monkeypatch.setattr(tracking, "_client", slow)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tr = Tracker(uri, "unit", tmp_path / "spool.jsonl", timeout_s=2.0)
    h = tr.start_run("trial-0")
    tr.log_metrics(h, {"val_accuracy": 0.5})
    tr.end_run(h)
    assert tr.close() is True
    assert [r.info.run_name for r in _runs(uri, "unit")] == ["trial-0"]
    assert not (tmp_path / "spool.jsonl").exists() or not (tmp_path / "spool.jsonl").read_text().strip()


def test_a_new_attempt_marks_the_attempts_a_kill_left_running_killed(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tr = Tracker(uri, "unit", tmp_path / "spool.jsonl")
    killed = tr.start_run("attempt 1", tags={"paretrain.run_id": "run-x"})  # its process died
    other = tr.start_run("another run", tags={"paretrain.run_id": "run-y"})  # still training
    now = tr.start_run("attempt 2", tags={"paretrain.run_id": "run-x"})
    tr.end_stale(now, "run-x")
    assert tr.close() is True
    status = {r.info.run_name: r.info.status for r in _runs(uri, "unit")}
    assert status == {"attempt 1": "KILLED", "another run": "RUNNING", "attempt 2": "RUNNING"}
    assert killed and other
