"""The dry check through the command line: before ``plan``, ``profile``, ``search`` or ``run``
spends anything, a user's workload is tried on a tiny batch; a fault exits 2 with one line naming
the member and the config, no traceback, and nothing written (no ledger, no profile, no plan)."""

from __future__ import annotations

import pytest

from tests.runtime.faults.workload import make_plan_in, one_line, paretrain, run_plan, write_workload

EMPTY_TRAIN = "W.train_dataset = lambda self: self._data(0, 0)"

BUILD_RAISES = """
_base_build = W.build
def _build(self, config):
    if config.param("width") == 16:
        raise ValueError("no width 16")
    return _base_build(self, config)
W.build = _build
"""

NO_TARGET_METRIC = """
_base_eval = W.evaluate
W.evaluate = lambda self, model, batches: {"val_loss": _base_eval(self, model, batches)["val_loss"]}
"""

FAULTS = [
    (EMPTY_TRAIN, "train_dataset() returned an empty dataset"),
    (BUILD_RAISES, "build('mlp-16') raised ValueError: no width 16"),
    (NO_TARGET_METRIC, "evaluate(model 'mlp-16', 16 validation samples) returned ['val_loss'], without"),
]
IDS = ["empty-train", "build-raises", "no-target-metric"]


def files(folder) -> set[str]:
    return {
        str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    }


@pytest.mark.parametrize(("fault", "said"), FAULTS, ids=IDS)
def test_run_of_a_broken_workload_exits_2_before_the_ledger_opens(tmp_path, fault, said):
    make_plan_in(tmp_path)
    write_workload(tmp_path, fault)  # broken after the plan was made
    before = files(tmp_path)
    done = run_plan(tmp_path)
    assert done.returncode == 2, done.stderr
    line = one_line(done.stderr)
    assert said in line and "workload file:" in line and "To fix:" in line, line
    assert files(tmp_path) == before  # no ledger, no run folder


@pytest.mark.parametrize(
    ("command", "fault", "said"),
    [(command, *fault) for command, fault in zip(("plan", "profile", "search"), FAULTS, strict=True)],
    ids=[f"{c}-{i}" for c, i in zip(("plan", "profile", "search"), IDS, strict=True)],
)
def test_planning_a_broken_workload_exits_2_and_writes_nothing(tmp_path, command, fault, said):
    make_plan_in(tmp_path, fault)
    (tmp_path / "plan.json").unlink()
    before = files(tmp_path)
    extra = {
        "plan": ["-o", "out.json", "--no-track"],
        "profile": ["-o", "out.json"],
        "search": ["--no-track"],
    }
    done = paretrain(tmp_path, command, "spec.yaml", *extra[command])
    assert done.returncode == 2, done.stderr
    assert said in one_line(done.stderr)
    assert files(tmp_path) == before


SMALL_TRAIN = "W.train_dataset = lambda self: self._data(10, 0)"  # the spec's batch size is 32

NO_PARAMETERS = "W.build = lambda self, config: nn.Sequential(nn.Flatten(), nn.Identity())"


@pytest.mark.parametrize(
    ("fault", "said"),
    [
        (SMALL_TRAIN, "train_dataset() returned 10 samples, fewer than the smallest batch size 32"),
        (NO_PARAMETERS, "build('mlp-16') returned a model with no trainable parameters"),
    ],
    ids=["train-smaller-than-a-batch", "no-parameters"],
)
def test_a_workload_that_cannot_take_a_step_exits_2_before_planning_spends(tmp_path, fault, said):
    make_plan_in(tmp_path, fault)
    (tmp_path / "plan.json").unlink()
    before = files(tmp_path)
    done = paretrain(tmp_path, "plan", "spec.yaml", "-o", "out.json", "--no-track")
    assert done.returncode == 2, done.stderr
    line = one_line(done.stderr)
    assert said in line and "To fix:" in line, line
    assert files(tmp_path) == before
