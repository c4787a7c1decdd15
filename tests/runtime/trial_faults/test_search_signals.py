"""SIGTERM and SIGINT to ``paretrain search`` (``paretrain.runtime.trials.stopping``): the
workers stop at the next step, fail and settle their trials in flight, and the command exits
143 / 130 with one line; the same command run again continues the study."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from paretrain.runtime.spec_files import read_spec
from paretrain.runtime.trials.stored_envelope import LEASE_ENV, open_envelope
from tests.conftest import ROOT, as_from_a_terminal
from tests.runtime.trial_faults.workload import STUDY, write_search

pytestmark = pytest.mark.slow

FAIL, COMPLETE, RUNNING = (
    optuna.trial.TrialState.FAIL,
    optuna.trial.TrialState.COMPLETE,
    optuna.trial.TrialState.RUNNING,
)


def _start(folder: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), LEASE_ENV: "8"}
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [sys.executable, "-m", "paretrain.cli", "search", "spec.yaml", "--no-track", *args]
    return subprocess.Popen(
        cmd,
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=as_from_a_terminal,
    )


def _trials(folder: Path) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=STUDY, storage=f"sqlite:///{folder / 'study.db'}").trials


def _when_running(folder: Path, proc: subprocess.Popen[str], n: int, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.3)
        try:
            if sum(t.state == RUNNING for t in _trials(folder)) >= n:
                time.sleep(0.5)  # a few steps into the trials
                return
        except Exception:  # the study is not there yet
            continue
    raise AssertionError(f"no {n} trials running in {timeout_s} s")


def _held(folder: Path) -> float:
    spec = read_spec(folder / "spec.yaml")
    return open_envelope(f"sqlite:///{folder / 'study.db'}", STUDY, spec.budget.search_usd).state().held_usd


def test_sigterm_stops_two_workers_at_a_step_settles_their_trials_and_the_study_continues(tmp_path):
    write_search(tmp_path, "slow", trials=4, trial_samples=1024)
    proc = _start(tmp_path, "--workers", "2")
    _when_running(tmp_path, proc, 2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    lines = [line for line in err.splitlines() if line.startswith("paretrain:")]
    assert len(lines) == 1 and "stopped by SIGTERM" in lines[0]
    assert "run the same paretrain search command again" in lines[0]
    assert "Traceback" not in err
    stopped = [t for t in _trials(tmp_path) if t.state == FAIL]
    assert len(stopped) >= 2 and all(t.user_attrs["interrupted"] == "SIGTERM" for t in stopped)
    assert not [t for t in _trials(tmp_path) if t.state == RUNNING]
    assert _held(tmp_path) == 0  # no reservation left held once the workers are gone

    again = _start(tmp_path, "--workers", "2")
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    trials = _trials(tmp_path)
    assert sum(t.state == COMPLETE for t in trials) == 4
    assert [t.number for t in trials] == list(range(len(trials)))  # one study, continued
    assert _held(tmp_path) == 0


def test_sigint_stops_a_lone_worker_with_exit_130(tmp_path):
    write_search(tmp_path, "slow", trials=2, trial_samples=4096)
    proc = _start(tmp_path)
    _when_running(tmp_path, proc, 1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "stopped by SIGINT" in err and "Traceback" not in err
    (trial,) = _trials(tmp_path)
    assert trial.state == FAIL and trial.user_attrs["interrupted"] == "SIGINT"
    assert _held(tmp_path) == 0


def test_a_second_signal_exits_at_once(tmp_path):
    write_search(tmp_path, "stall", trials=1, trial_samples=4096)  # a step takes 2 s
    proc = _start(tmp_path)
    _when_running(tmp_path, proc, 1)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)  # the first one waits for the step to end
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "SIGTERM again: stopped at once" in err


def test_a_member_raising_in_one_worker_stops_the_pool_with_its_one_line_and_exit_2(tmp_path):
    write_search(tmp_path, "loader", trials=4)
    proc = _start(tmp_path, "--workers", "2")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, err
    lines = [line for line in err.splitlines() if line.startswith("paretrain:")]
    assert len(lines) == 1 and "train_dataset() (training 's" in lines[0], err
    # placed at the user's line that raised, when the traceback holds it (not through loader processes)
    assert re.search(
        r"raised KeyError: 'sample 7 is missing'(?: \(at \w+\.py:\d+, in __getitem__\))?\. To fix:", lines[0]
    )
    assert "Traceback" not in err
    trials = _trials(tmp_path)
    assert trials and all(t.state == FAIL for t in trials)  # the other worker's trial too
    assert any("error" in t.user_attrs for t in trials)
    assert _held(tmp_path) == 0
