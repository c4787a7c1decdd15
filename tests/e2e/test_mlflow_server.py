"""Tracking against a real `mlflow server`: plan and run, a server killed mid-run then
replayed with `paretrain sync` (every metric exactly once), and no hang when it is away."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, small_spec
from tests.e2e.servers import MlflowServer, free_port, mlflow_server

pytestmark = pytest.mark.slow


def cli(cwd: Path, uri: str, *args: str, wait: bool = True):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLFLOW_TRACKING_URI": uri}
    cmd = [sys.executable, "-m", "paretrain.cli", *args]
    if not wait:
        return subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def long_spec() -> dict:
    """Known convergence (no measuring), an accuracy no tiny MLP reaches: the run trains to
    target.max_samples, evaluating (and logging) every 400 samples."""
    return small_spec(
        configs=[{"id": "mlp-64x2", "family": "mlp", "width": 64, "depth": 2, "lr": 0.003}],
        convergence={"mlp-64x2": {"e_min": 10000, "b_noise": 500, "level": 0.99}},
        target={"goal": 0.99, "max_samples": 16000},
        hardware={"allow": ["local/cpu-1"]},
        planner={
            "convergence": "full",
            "stages": 2,
            "batch_sizes": [32],
            "profile_steps": 10,
            "noise": False,
        },
        runtime={"eval_every_samples": 400, "checkpoint_every_s": 5},
    )


def test_plan_and_run_log_to_a_real_server(profiled):
    tmp_path = profiled
    with mlflow_server(tmp_path / "server") as server:
        p = cli(tmp_path, server.url, "plan", "spec.yaml", "-o", "plan.json")
        assert p.returncode == 0, p.stderr
        assert server.url in p.stdout
        r = cli(tmp_path, server.url, "run", "plan.json", "--candidate", "fastest")
        assert r.returncode == 0, r.stderr
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=server.url)
        exp = client.get_experiment_by_name("mnist1d-test")
        run = client.search_runs([exp.experiment_id], "tags.`paretrain.kind` = 'run'")[0]
        names = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"plan.json", "events.jsonl", "model.pt"} <= names
        assert any(n.endswith(".jsonl") and n.startswith("run-") for n in names)  # the ledger
        assert run.inputs.dataset_inputs and run.inputs.dataset_inputs[0].dataset.name == "mnist1d-3000"
        assert run.data.tags.get("mlflow.source.git.commit") is not None
        c = cli(tmp_path, server.url, "compare", "--experiment", "mnist1d-test")
        assert c.returncode == 0 and "also an artifact of plan run" in c.stdout, c.stdout + c.stderr


def test_a_server_killed_mid_run_loses_nothing_and_sync_replays_each_metric_once(tmp_path):
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(long_spec()))
    server = MlflowServer(tmp_path / "server")
    server.start()
    try:
        p = cli(tmp_path, server.url, "plan", "spec.yaml", "-o", "plan.json")
        assert p.returncode == 0, p.stderr
        run = cli(tmp_path, server.url, "run", "plan.json", wait=False)
        ledger_dir = tmp_path / ".paretrain" / "ledger"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # some evaluations logged, then the server dies
            files = list(ledger_dir.glob("run-*.jsonl"))
            if files and files[0].read_text().count('"what":"eval"') >= 8:
                break
            time.sleep(0.1)
        server.stop()
        t0 = time.monotonic()
        _out, err = run.communicate(timeout=300)
        assert run.returncode == 3, err  # stops at max_samples (an unreachable level), as planned
        assert time.monotonic() - t0 < 120  # finished without hanging on the dead server
        spool = tmp_path / ".paretrain" / "spool" / "tracking.jsonl"
        assert spool.exists() and spool.read_text().strip()
        server.start()
        s1 = cli(tmp_path, server.url, "sync")
        assert s1.returncode == 0, s1.stdout + s1.stderr
        s2 = cli(tmp_path, server.url, "sync")  # again: nothing left, nothing doubled
        assert s2.returncode == 0 and "replayed 0 records" in s2.stdout
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=server.url)
        exp = client.get_experiment_by_name("mnist1d-test")
        runs = client.search_runs([exp.experiment_id], "tags.`paretrain.kind` = 'run'")
        assert len(runs) == 1
        evals = [
            c for c in (json.loads(x) for x in files[0].read_text().splitlines()) if c.get("what") == "eval"
        ]
        history = client.get_metric_history(runs[0].info.run_id, "val_accuracy")
        # every evaluation exactly once, and the run's final record
        assert len(history) == len(evals) + 1
        assert len({(m.step, m.timestamp) for m in history}) == len(history)
        assert "cost_usd" in runs[0].data.metrics  # the final record came through the spool
    finally:
        server.stop()


def test_an_unreachable_server_never_blocks_a_run(profiled):
    tmp_path = profiled
    dead = f"http://127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    p = cli(tmp_path, dead, "plan", "spec.yaml", "-o", "plan.json")
    assert p.returncode == 0, p.stderr
    assert "not reachable" in p.stderr and "paretrain sync" in p.stderr
    r = cli(tmp_path, dead, "run", "plan.json", "--candidate", "fastest")
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - t0 < 300
    assert (tmp_path / ".paretrain" / "spool" / "tracking.jsonl").exists()
