"""`mlflow run mlflow -e plan|run` (the MLproject entry points) and mlflow/server.sh."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.e2e.servers import free_port

pytestmark = pytest.mark.slow


def test_mlproject_entry_points_plan_and_run(profiled):
    tmp_path = profiled
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
    }
    mlflow = [sys.executable, "-m", "mlflow", "run", str(ROOT / "mlflow"), "--env-manager", "local"]
    p = subprocess.run(
        [
            *mlflow,
            "-e",
            "plan",
            "-P",
            f"spec={tmp_path / 'spec.yaml'}",
            "-P",
            f"output={tmp_path / 'plan.json'}",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    plan = json.loads((tmp_path / "plan.json").read_text())
    r = subprocess.run(
        [*mlflow, "-e", "run", "-P", f"plan={tmp_path / 'plan.json'}", "-P", "candidate=fastest"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("mnist1d-test")
    runs = client.search_runs([exp.experiment_id], "tags.`paretrain.kind` = 'plan'")
    assert runs and runs[0].data.tags["paretrain.plan_fingerprint"] == plan["fingerprint"]
    assert runs[0].data.tags.get("paretrain.project_run")  # linked to the `mlflow run` run


def test_server_script_binds_loopback_and_answers_health(tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "STORE": f"sqlite:///{tmp_path / 'm.db'}",
        "ARTIFACTS": str(tmp_path / "art"),
    }
    proc = subprocess.Popen(
        ["bash", str(ROOT / "mlflow" / "server.sh")],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        ok = False
        while time.monotonic() < deadline and not ok:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    ok = r.status == 200
            except OSError:
                time.sleep(0.5)
        assert ok
        listening = subprocess.run(["ss", "-ltn"], capture_output=True, text=True).stdout
        lines = [ln for ln in listening.splitlines() if f":{port} " in ln]
        assert lines and all("127.0.0.1" in ln for ln in lines), lines
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
