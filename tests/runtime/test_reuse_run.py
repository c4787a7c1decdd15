"""A run starts from the profile's checkpoint of its config (``paretrain.runtime.run.reuse``):
it goes on from the checkpoint's samples, the ledger marks the start, and a missing or changed
file falls back to training from scratch, saying so; ``--resume`` keeps the start."""

from __future__ import annotations

from dataclasses import replace
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from paretrain.planner.inputs.catalog import local_offers
from paretrain.planner.inputs.spec_parse import parse_spec
from paretrain.planner.measure.measurements import TruncatedCheckpoint
from paretrain.planner.measure.profile import build_profile
from paretrain.planner.plan.make import make_plan
from paretrain.planner.plan.plan import Plan
from paretrain.planner.program.build import build_problem
from paretrain.planner.program.milp import pareto_front
from paretrain.planner.program.reuse import StartFrom
from paretrain.runtime.money.ledger import read_charges
from paretrain.runtime.run.executor import Executor, RunStopped
from paretrain.runtime.train.checkpoint import CheckpointError, save_state
from paretrain.runtime.train.devices import claim
from paretrain.runtime.train.trainer import Trainer
from paretrain.runtime.train.workloads import WORKLOADS, load_workload
from tests.planner.synthetic_lab import SyntheticLab
from tests.runtime.plans import tiny_spec, with_spec

HW = "local/cpu-1"
B0 = 32
S = 640  # samples the profile's run trained: 20 steps at 32
EVERY = 400  # runtime.eval_every_samples of tiny_spec
REL = "k.checkpoints/mlp-16-b32.pt"  # the checkpoint, relative to the profile folder
CURVE = ((160, 0.11), (320, 0.14), (480, 0.16), (S, 0.19))  # the truncated run's evaluations it keeps


def _spec():
    data = tiny_spec(
        hardware={"allow": [HW]},
        target={"goal": 0.25, "levels": [0.25], "max_samples": 8000},
        planner={**tiny_spec()["planner"], "batch_sizes": [B0]},
    )
    return parse_spec(data, "spec.yaml", WORKLOADS)


def _plan(spec, checkpoints=()) -> Plan:
    lab = SyntheticLab(e_min={"mlp-16": 3000.0}, best={"mlp-16": 1.0})
    profile = replace(build_profile(spec, lab, list(spec.configs)), checkpoints=tuple(checkpoints))
    offers = local_offers(lab.devices(), spec.hardware)
    problem, ctx = build_problem(spec, offers, profile, list(spec.configs))
    front = pareto_front(problem)
    return make_plan(
        spec=spec,
        profile_key="k",
        problem=problem,
        ctx=ctx,
        front=front,
        configs=list(spec.configs),
        offers=offers,
        solver="highs",
    )


def _checkpoint(spec, workdir: Path) -> TruncatedCheckpoint:
    """Train the config S samples as the profile's truncated run does, and keep its state."""
    cfg = spec.configs[0]
    trainer = Trainer(
        load_workload(spec.workload, workdir / ".paretrain" / "cache"),
        cfg,
        batch_size=B0,
        device=claim(HW),
        seed=spec.workload.seed,
        metric=spec.target.metric_obj,
    )
    while trainer.samples_seen < S:
        trainer.step()
    what = {
        "config_id": cfg.id,
        "batch_size": B0,
        "samples": S,
        "device": HW,
        "seed": spec.workload.seed,
        "curve": [list(p) for p in CURVE],
    }
    sha, size = save_state(
        workdir / ".paretrain" / "profiles" / REL, {"trainer": trainer.state_dict(), "profile": what}
    )
    return TruncatedCheckpoint(cfg.id, B0, "fp32", HW, spec.workload.seed, S, REL, sha, size)


class Recorder:
    """A tracker that keeps what the run logs."""

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}
        self.tags: dict[str, Any] = {}
        self.metrics: list[dict[str, float]] = []

    def wait_ready(self, *a: Any, **k: Any) -> bool:
        return True

    def start_run(self, *a: Any, **k: Any) -> str:
        return "h"

    def log_params(self, _h: str, params: dict[str, Any]) -> None:
        self.params.update(params)

    def set_tags(self, _h: str, tags: dict[str, Any]) -> None:
        self.tags.update(tags)

    def log_metrics(self, _h: str, metrics: dict[str, float], step: int = 0) -> None:
        self.metrics.append(dict(metrics))

    def __getattr__(self, name: str) -> Any:  # artifacts, inputs, the end of the run
        return lambda *a, **k: None


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    """(workdir, spec, the plan starting from the checkpoint, the same plan from scratch)."""
    workdir = tmp_path_factory.mktemp("reuse")
    spec = _spec()
    ck = _checkpoint(spec, workdir)
    return workdir, spec, _plan(spec, [ck]), _plan(spec)


def _run(plan, workdir, run_id, **kw):
    lines: list[str] = []
    tracker = Recorder()
    ex = Executor(
        plan, plan.candidate("knee"), workdir=workdir, run_id=run_id, log=lines.append, tracker=tracker, **kw
    )
    try:
        result = ex.run()
    except RunStopped as err:
        result = err.result
    return ex, result, lines, tracker


def _ledger_events(workdir: Path, run_id: str, name: str) -> list[dict]:
    return [
        c
        for c in read_charges(workdir / ".paretrain" / "ledger" / f"{run_id}.jsonl")
        if c.get("event") == name
    ]


def test_the_plan_counts_only_the_samples_left_after_the_checkpoint(planned):
    _, _, plan, scratch = planned
    knee, bare = plan.candidate("knee"), scratch.candidate("knee")
    assert knee.start is not None and bare.start is None
    assert (knee.start.samples, knee.start.path, knee.start.batch_size) == (S, REL, B0)
    # the same batch throughout: the checkpoint's samples are exactly what the plan leaves out
    assert bare.samples - knee.samples == pytest.approx(S, abs=B0 * len(knee.stages))
    assert knee.cost_usd < bare.cost_usd


def test_a_run_starts_at_the_checkpoints_samples_and_the_ledger_marks_it(planned):
    workdir, _, plan, _ = planned
    ex, result, lines, tracker = _run(plan, workdir, "reused")
    assert result.reused_samples == S == ex.state.reused
    # it evaluates after its first step from S samples (a run from scratch evaluates first near EVERY)
    assert tracker.metrics[0]["samples"] == S + B0 <= result.samples
    (line,) = _ledger_events(workdir, "reused", "reused")
    assert (line["samples"], line["path"], line["usd"]) == (S, REL, 0.0)
    assert line["sha256"] == plan.candidate("knee").start.sha256
    assert tracker.params["reused_samples"] == S and tracker.params["reused_checkpoint"] == REL
    assert tracker.tags["paretrain.reused"] == "true"
    assert any("starts from the profile's checkpoint" in x for x in lines)
    # the run goes on the truncated run's curve: its points come first, then the run's own
    points = ex.state.curve_points
    assert points[: len(CURVE)] == CURVE and len(points) > len(CURVE)
    assert all(a[0] < b[0] for a, b in pairwise(points))


def test_a_checkpoint_trained_by_other_workload_code_is_not_loaded():
    from paretrain.runtime.run.reuse import _check

    start = StartFrom(REL, "sha", S, 0.5, "cfg", B0, "fp32", HW, 0)
    what = {"config_id": "cfg", "batch_size": B0, "samples": S}
    _check({"profile": {**what, "workload_code": "abc"}}, start, "abc")
    _check({"profile": what}, start, "abc")  # written before the code was recorded: taken as is
    with pytest.raises(CheckpointError, match="another version of the workload's code"):
        _check({"profile": {**what, "workload_code": "abc"}}, start, "def")


def test_a_checkpoints_curve_is_taken_only_whole_and_up_to_its_samples():
    from paretrain.runtime.run.reuse import _curve

    def saved(curve):
        return {"profile": {"curve": curve}}

    assert _curve(saved([[100, 0.1], [200, 0.2]]), 200) == ((100, 0.1), (200, 0.2))
    assert _curve({"profile": {}}, 200) == ()  # a checkpoint written before curves were kept
    assert _curve({}, 200) == ()
    assert _curve(saved([[100, 0.1], [300, 0.2]]), 200) == ()  # past the checkpoint's samples
    assert _curve(saved([[100, float("nan")]]), 200) == ()
    assert _curve(saved([[200, 0.1], [100, 0.2]]), 200) == ()  # out of order
    assert _curve(saved([["x", 0.1]]), 200) == ()
    assert _curve(saved([[100]]), 200) == ()


@pytest.mark.parametrize("damage", ["changed", "missing"])
def test_a_changed_or_missing_checkpoint_falls_back_to_training_from_scratch(planned, tmp_path, damage):
    _, spec, plan, _ = planned
    _checkpoint(spec, tmp_path)
    path = tmp_path / ".paretrain" / "profiles" / REL
    if damage == "changed":
        path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    else:
        path.unlink()
    ex, result, lines, tracker = _run(plan, tmp_path, "scratch")
    assert result.reused_samples == 0 == ex.state.reused
    assert tracker.metrics[0]["samples"] <= EVERY + B0 < S  # trained from the start
    warnings = [x for x in lines if x.startswith("warning:")]
    assert len(warnings) == 1 and "\n" not in warnings[0] and damage in warnings[0]
    assert "training from scratch" in warnings[0] and "more than predicted" in warnings[0]
    (line,) = _ledger_events(tmp_path, "scratch", "reuse_failed")
    assert line["samples"] == S and damage in line["reason"]
    assert not _ledger_events(tmp_path, "scratch", "reused")
    assert tracker.tags["paretrain.reused"].startswith("false") and tracker.params["reused_samples"] == 0
    # the first stage takes back the samples the plan counted from the checkpoint
    first = plan.candidate("knee").stages[0]
    assert ex.state.stages[0].samples == first.samples + S


def test_a_resumed_run_keeps_its_start_and_does_not_load_the_profiles_file_again(planned, tmp_path):
    _, spec, plan, _ = planned
    _checkpoint(spec, tmp_path)
    short = with_spec(plan, target__max_samples=S + EVERY)
    _, first, _, _ = _run(short, tmp_path, "again")
    assert first.status == "max_samples" and first.reused_samples == S
    (tmp_path / ".paretrain" / "profiles" / REL).unlink()  # a resume needs only the run's own checkpoints
    longer = with_spec(plan, target__max_samples=S + 3 * EVERY)
    ex, second, lines, _ = _run(longer, tmp_path, "again", resume=True)
    assert ex.state.reused == S
    assert any(e["event"] == "resume" for e in second.events)
    assert not any(e["event"] in ("reused", "reuse_failed") for e in second.events)
    assert second.reused_samples == S and second.samples > first.samples
    assert not any(x.startswith("warning:") for x in lines)
    assert len(_ledger_events(tmp_path, "again", "reused")) == 1
