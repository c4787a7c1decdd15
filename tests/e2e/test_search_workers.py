"""The search on several workers against a real PostgreSQL server (started by the ``postgres``
fixture): four workers racing on a tiny envelope never pass it; a worker killed mid-trial
gives its reservation back after its lease, its trial is failed, and the study goes on."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml

from paretrain.runtime.trials.stored_envelope import LEASE_ENV, open_envelope
from tests.conftest import ROOT
from tests.e2e.cli import ledger_total
from tests.e2e.test_search_e2e import search_spec

pytestmark = pytest.mark.slow

STUDY = "search-test"


def paretrain(cwd: Path, *args: str, lease_s: int = 60, wait: bool = True):
    env = {**os.environ, "PYTHONPATH": str(ROOT), LEASE_ENV: str(lease_s)}
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [sys.executable, "-m", "paretrain.cli", *args]
    if not wait:
        return subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def write_spec(folder: Path, envelope: float, trial_samples: int = 3000, eval_every: int = 500) -> None:
    data = search_spec(
        budget={
            "total_usd": max(0.01, 0.006 + envelope),
            "envelopes": {"profile": 0.003, "search": envelope, "train": 0.003},
        },
        runtime={"eval_every_samples": eval_every},
    )
    data["search"]["trial_samples"] = trial_samples
    (folder / "spec.yaml").write_text(yaml.safe_dump(data))


def test_four_workers_racing_on_postgres_never_pass_a_tiny_envelope(tmp_path, postgres):
    url = postgres.create_database("four_workers")
    # a few trials' worth (a worker's first trial, ~5 s of one core, and ~1 s trials after it):
    # the envelope, not --trials, ends the search
    envelope = 0.0003
    write_spec(tmp_path, envelope, trial_samples=30000, eval_every=3000)
    r = paretrain(tmp_path, "search", "spec.yaml", "--storage", url, "--workers", "4", "--trials", "40")
    assert r.returncode == 0, r.stderr
    assert "stopped at its envelope" in r.stdout
    spent = ledger_total(tmp_path, f"search-{STUDY}-")
    assert 0 < spent <= envelope
    assert (
        len(list((tmp_path / ".paretrain" / "ledger").glob(f"search-{STUDY}-*.jsonl"))) == 4
    )  # one per worker
    state = open_envelope(url, STUDY, envelope).state()
    assert state.held_usd == 0 and state.spent_usd <= envelope
    assert state.spent_usd == pytest.approx(
        spent, rel=1e-9
    )  # what the workers settled is what their ledgers say

    study = optuna.load_study(study_name=STUDY, storage=url)
    numbers = [t.number for t in study.trials]
    assert len(numbers) == len(set(numbers))
    complete = {t.number for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE}
    assert 4 <= len(complete) < 40

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name(STUDY).experiment_id])
    parent = [x for x in runs if x.data.tags.get("paretrain.kind") == "search"]
    assert len(parent) == 1
    trials = [x for x in runs if x.data.tags.get("paretrain.kind") == "trial"]
    assert {int(x.data.tags["paretrain.trial"]) for x in trials} == complete
    assert all(x.data.tags.get("mlflow.parentRunId") == parent[0].info.run_id for x in trials)


def _held(url: str, envelope: float) -> float:
    return open_envelope(url, STUDY, envelope).state().held_usd


def test_a_worker_killed_mid_trial_gives_its_reservation_back_and_the_study_goes_on(tmp_path, postgres):
    url = postgres.create_database("killed_worker")
    # trials of 60k samples: seconds long even on an idle machine, so the kill lands mid-trial;
    # an envelope of many such trials even on a busy one (the killed trial's hold counts as spent
    # in full), so that the trial after it completes however slow the machine is
    envelope, lease = 0.02, 4
    write_spec(tmp_path, envelope, trial_samples=60000, eval_every=5000)
    worker = paretrain(
        tmp_path,
        "search",
        "spec.yaml",
        "--storage",
        url,
        "--trials",
        "3",
        "--no-track",
        lease_s=lease,
        wait=False,
    )
    deadline = time.monotonic() + 120
    while _held(url, envelope) == 0:  # wait until its first trial holds money and trains
        assert worker.poll() is None and time.monotonic() < deadline, (
            worker.stderr.read() if worker.stderr else ""
        )
        time.sleep(0.2)
    time.sleep(0.5)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    held = _held(url, envelope)
    time.sleep(lease + 1.0)
    state = open_envelope(url, STUDY, envelope).state()
    assert state.lost == (0,) and state.held_usd == 0
    assert state.spent_usd == pytest.approx(held)  # counted as spent in full: it may have spent it all

    again = paretrain(  # the study goes on: one more trial, which completes
        tmp_path, "search", "spec.yaml", "--storage", url, "--trials", "1", "--no-track", lease_s=lease
    )
    assert again.returncode == 0, again.stderr
    study = optuna.load_study(study_name=STUDY, storage=url)
    states = {t.number: t.state for t in study.trials}
    assert states[0] == optuna.trial.TrialState.FAIL
    assert sum(s == optuna.trial.TrialState.COMPLETE for s in states.values()) == 1, again.stdout
    assert math.isclose(open_envelope(url, STUDY, envelope).state().held_usd, 0.0)
    assert ledger_total(tmp_path, f"search-{STUDY}-") <= envelope


def test_two_workers_on_the_default_sqlite_storage(tmp_path):
    """sqlite (the one-machine default) takes several worker processes too."""
    envelope = 0.003
    write_spec(tmp_path, envelope)
    r = paretrain(tmp_path, "search", "spec.yaml", "--workers", "2", "--trials", "4", "--no-track")
    assert r.returncode == 0, r.stderr
    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{tmp_path / 'paretrain-optuna.db'}")
    complete = [t.number for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert 4 <= len(complete) <= 5 and len({t.number for t in study.trials}) == len(study.trials)
    assert 0 < ledger_total(tmp_path, f"search-{STUDY}-") <= envelope
