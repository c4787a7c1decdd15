"""Tracking against a real `mlflow server`: plan and run logged to it and listed in its UI (in a
real browser), a server killed mid-run then replayed with `paretrain sync` (every metric exactly
once), and no hang when it is away."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, small_spec
from tests.e2e.servers import MlflowServer, free_port, mlflow_server

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def cli(cwd: Path, uri: str, *args: str, wait: bool = True):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLFLOW_TRACKING_URI": uri}
    cmd = [sys.executable, "-m", "paretrain.cli", *args]
    if not wait:
        return subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@dataclass(frozen=True)
class Served:
    folder: Path
    server: MlflowServer
    plan: subprocess.CompletedProcess
    run: subprocess.CompletedProcess


@pytest.fixture(scope="module")
def served(small_profiles: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One user session against a real server, which the tests below read from their own
    sides: ``small_spec()`` planned (its profile reused) and its fastest candidate run."""
    folder = tmp_path_factory.mktemp("served")
    (folder / "spec.yaml").write_text(yaml.safe_dump(small_spec()))
    shutil.copytree(small_profiles, folder / ".paretrain" / "profiles")
    with mlflow_server(folder / "server") as server:
        plan = cli(folder, server.url, "plan", "spec.yaml", "-o", "plan.json")
        run = (
            cli(folder, server.url, "run", "plan.json", "--candidate", "fastest")
            if plan.returncode == 0
            else plan
        )
        yield Served(folder, server, plan, run)


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


def test_plan_and_run_log_to_a_real_server(served):
    url = served.server.url
    assert served.plan.returncode == 0, served.plan.stderr
    assert url in served.plan.stdout
    assert served.run.returncode == 0, served.run.stderr
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=url)
    exp = client.get_experiment_by_name("mnist1d-test")
    run = client.search_runs([exp.experiment_id], "tags.`paretrain.kind` = 'run'")[0]
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"plan.json", "events.jsonl", "model.pt"} <= names
    assert any(n.endswith(".jsonl") and n.startswith("run-") for n in names)  # the ledger
    assert run.inputs.dataset_inputs and run.inputs.dataset_inputs[0].dataset.name == "mnist1d-3000"
    assert run.data.tags.get("mlflow.source.git.commit") is not None
    c = cli(served.folder, url, "compare", "--experiment", "mnist1d-test")
    assert c.returncode == 0 and "also an artifact of plan run" in c.stdout, c.stdout + c.stderr


def test_candidate_runs_and_metrics_are_listed_in_the_mlflow_ui(served):
    """Headless Debian Chromium (/usr/bin/chromium, installed by `make test` through `make
    system-deps`) driven by Playwright. The screenshots go to the session's folder; set
    PARETRAIN_SCREENSHOT_DIR (for example to benchmarks/results, where the docs' figures live)
    to keep them."""
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} is missing: run `make system-deps` (installs Debian's chromium) "
            "or `apt-get install chromium`",
            pytrace=False,
        )
    assert served.plan.returncode == 0 and served.run.returncode == 0, served.run.stderr
    from mlflow.tracking import MlflowClient
    from playwright.sync_api import sync_playwright

    url = served.server.url
    client = MlflowClient(tracking_uri=url)
    exp = client.get_experiment_by_name("mnist1d-test")
    candidates = client.search_runs([exp.experiment_id], "tags.`paretrain.kind` = 'candidate'")
    assert candidates
    name = candidates[0].info.run_name
    shots = Path(os.environ.get("PARETRAIN_SCREENSHOT_DIR", served.folder))
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            env={**os.environ, "HOME": str(served.folder)},
        )
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(f"{url}/#/experiments/{exp.experiment_id}/runs", wait_until="domcontentloaded")
        page.get_by_text("plan-", exact=False).first.wait_for(timeout=60000)
        assert page.get_by_text("run-", exact=False).count() >= 1  # the execution run
        # the candidates are nested under the plan's run: expand it
        page.locator("[role=row]").filter(has_text="plan-").first.locator("button").first.click()
        page.get_by_text(name, exact=True).first.wait_for(timeout=60000)
        for c in candidates:
            assert page.get_by_text(c.info.run_name, exact=True).count() >= 1
        shot = shots / "mlflow_ui.png"
        page.screenshot(path=str(shot), full_page=True)
        page.goto(
            f"{url}/#/experiments/{exp.experiment_id}/runs/{candidates[0].info.run_id}",
            wait_until="domcontentloaded",
        )  # the run page keeps polling: no network idle
        page.get_by_text("predicted_cost_usd", exact=False).first.wait_for(timeout=60000)
        assert page.get_by_text("predicted_cost_usd", exact=False).count() >= 1
        page.screenshot(path=str(shots / "mlflow_ui_run.png"), full_page=True)
        browser.close()
    assert shot.stat().st_size > 10000


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
    assert "records not written to" in p.stderr and "paretrain sync" in p.stderr
    [line] = [x for x in p.stderr.splitlines() if x.startswith("MLflow: records not written")]
    assert f"(MLflow unavailable at {dead}" in line  # why, in the same line
    r = cli(tmp_path, dead, "run", "plan.json", "--candidate", "fastest")
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - t0 < 300
    assert (tmp_path / ".paretrain" / "spool" / "tracking.jsonl").exists()
