"""A user's training going wrong inside a search (``paretrain.planner.search.faults``): a
diverging trial is failed and never scored, a config ``build`` rejects is an infeasible point,
any other member raising stops the search with one line naming the member and the config; in
every case the trial's spend is settled and the envelope stays consistent."""

from __future__ import annotations

import os
import subprocess
import sys

import optuna
import pytest

from paretrain.planner.search.faults import MAX_UNBUILDABLE, UnbuildableSpace
from paretrain.runtime.spec_files import read_spec
from paretrain.runtime.train.dry_check import WorkloadError
from paretrain.runtime.trials.stored_envelope import open_envelope
from paretrain.runtime.trials.trial_worker import search_worker
from paretrain.runtime.workspace import Workspace
from tests.conftest import ROOT
from tests.runtime.trial_faults.workload import STUDY, write_search

FAIL, COMPLETE = optuna.trial.TrialState.FAIL, optuna.trial.TrialState.COMPLETE


def _search(tmp_path, mode: str, trials: int = 3):
    spec = read_spec(write_search(tmp_path, mode, trials=trials))
    return spec, search_worker(spec, Workspace(tmp_path))


def _study(tmp_path):
    return optuna.load_study(study_name=STUDY, storage=f"sqlite:///{tmp_path / 'study.db'}")


def _envelope_is_settled(tmp_path, spec) -> None:
    state = open_envelope(f"sqlite:///{tmp_path / 'study.db'}", STUDY, spec.budget.search_usd).state()
    assert state.held_usd == 0
    assert 0 < state.spent_usd + state.held_usd <= spec.budget.search_usd
    spent = sum(float(t.user_attrs.get("spend_usd", 0.0)) for t in _study(tmp_path).trials)
    assert state.spent_usd == pytest.approx(spent, rel=1e-9)  # what each trial's ledger said


@pytest.mark.parametrize("mode", ["nan", "nan_metric"])
def test_a_diverging_trial_is_failed_with_its_reason_never_scored_and_the_search_goes_on(tmp_path, mode):
    spec, result = _search(tmp_path, mode)
    trials = _study(tmp_path).trials
    diverged = [t for t in trials if t.state == FAIL]
    assert diverged and all(t.params["mlp.width"] > 32 for t in diverged)
    reason = "loss nan at step 6" if mode == "nan" else "val_accuracy nan at sample"
    assert all(t.user_attrs["divergence"].startswith(reason) for t in diverged)
    assert all(t.values is None for t in diverged)
    complete = [t for t in trials if t.state == COMPLETE]
    assert len(complete) == 3 == result.trials  # the search completed its target
    assert all(t.params["mlp.width"] <= 32 for t in complete)
    assert {c.param("width") for c, _ in result.front} <= {t.params["mlp.width"] for t in complete}
    _envelope_is_settled(tmp_path, spec)


def test_a_config_build_rejects_is_an_infeasible_point_and_the_search_goes_on(tmp_path):
    spec, result = _search(tmp_path, "build")
    failed = [t for t in _study(tmp_path).trials if t.state == FAIL]
    assert failed and all(t.params["mlp.width"] > 32 for t in failed)
    message = failed[0].user_attrs["infeasible"]
    assert message.startswith(f"workload {spec.workload.name}: build('s{failed[0].number}-mlp'")
    assert "raised ValueError: width" in message and "To fix:" in message
    assert result.trials == 3 and result.front
    _envelope_is_settled(tmp_path, spec)


def test_build_raising_for_every_config_drawn_stops_the_search_as_a_bug(tmp_path):
    with pytest.raises(
        UnbuildableSpace, match=r"build\('s4-mlp' .*raised ValueError.* Hint: build\(\) raised"
    ):
        _search(tmp_path, "build_all")
    assert [t.state for t in _study(tmp_path).trials] == [FAIL] * MAX_UNBUILDABLE


@pytest.mark.parametrize(
    ("mode", "what"),
    [
        (
            "loader",
            r"train_dataset\(\) \(training 's0-mlp' .*\) raised KeyError: 'sample 7 is missing' "
            r"\(at tiny_workload\.py:\d+, in __getitem__\)",
        ),
        (
            "evaluate",
            r"evaluate\(model 's0-mlp' .*\) raised RuntimeError: the validation set is gone "
            r"\(at tiny_workload\.py:\d+, in evaluate\)",
        ),
    ],
)
def test_a_member_raising_stops_the_search_naming_it_with_the_trial_failed_and_settled(tmp_path, mode, what):
    with pytest.raises(WorkloadError, match=f"^workload file:.*: {what}. To fix: make"):
        _search(tmp_path, mode)
    (trial,) = _study(tmp_path).trials
    assert trial.state == FAIL and "raised" in trial.user_attrs["error"]
    _envelope_is_settled(tmp_path, read_spec(tmp_path / "spec.yaml"))


def test_the_command_says_it_in_one_line_and_exits_2_without_a_traceback(tmp_path):
    write_search(tmp_path, "evaluate")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)
    r = subprocess.run(
        [sys.executable, "-m", "paretrain.cli", "search", "spec.yaml", "--no-track"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 2, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.startswith("paretrain:")]
    assert len(lines) == 1 and "evaluate(model 's0-mlp'" in lines[0]
    assert "Traceback" not in r.stderr
