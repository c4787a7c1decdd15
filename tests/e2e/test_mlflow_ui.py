"""The MLflow UI in a real browser: the plan's candidate runs and their metrics are listed.

Headless Debian Chromium (/usr/bin/chromium, installed by `make test` through `make system-deps`)
driven by Playwright. The screenshots go to the test's temp dir; set PARETRAIN_SCREENSHOT_DIR
(for example to benchmarks/results, where the docs' figures live) to keep them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.e2e.servers import mlflow_server

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def test_candidate_runs_and_metrics_are_listed_in_the_mlflow_ui(profiled):
    tmp_path = profiled
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} is missing: run `make system-deps` (installs Debian's chromium) "
            "or `apt-get install chromium`",
            pytrace=False,
        )
    from playwright.sync_api import sync_playwright

    with mlflow_server(tmp_path / "server") as server:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "MLFLOW_TRACKING_URI": server.url}
        for args in (
            ["plan", "spec.yaml", "-o", "plan.json"],
            ["run", "plan.json", "--candidate", "fastest"],
        ):
            r = subprocess.run(
                [sys.executable, "-m", "paretrain.cli", *args],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert r.returncode == 0, r.stderr
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=server.url)
        exp = client.get_experiment_by_name("mnist1d-test")
        candidates = client.search_runs([exp.experiment_id], "tags.`paretrain.kind` = 'candidate'")
        assert candidates
        name = candidates[0].info.run_name
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=ARGS, env={**os.environ, "HOME": str(tmp_path)}
            )
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(f"{server.url}/#/experiments/{exp.experiment_id}/runs", wait_until="domcontentloaded")
            page.get_by_text("plan-", exact=False).first.wait_for(timeout=60000)
            assert page.get_by_text("run-", exact=False).count() >= 1  # the execution run
            # the candidates are nested under the plan's run: expand it
            page.locator("[role=row]").filter(has_text="plan-").first.locator("button").first.click()
            page.get_by_text(name, exact=True).first.wait_for(timeout=60000)
            for c in candidates:
                assert page.get_by_text(c.info.run_name, exact=True).count() >= 1
            shots = Path(os.environ.get("PARETRAIN_SCREENSHOT_DIR", tmp_path))
            shot = shots / "mlflow_ui.png"
            page.screenshot(path=str(shot), full_page=True)
            page.goto(
                f"{server.url}/#/experiments/{exp.experiment_id}/runs/{candidates[0].info.run_id}",
                wait_until="domcontentloaded",
            )  # the run page keeps polling: no network idle
            page.get_by_text("predicted_cost_usd", exact=False).first.wait_for(timeout=60000)
            assert page.get_by_text("predicted_cost_usd", exact=False).count() >= 1
            page.screenshot(path=str(shots / "mlflow_ui_run.png"), full_page=True)
            browser.close()
        assert shot.stat().st_size > 10000
