"""No work paid twice (``paretrain.planner.program.reuse``): a first stage that trains what the
profile's truncated run trained starts from its checkpoint, and the plan counts only the rest."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from paretrain.planner.inputs.catalog import local_offers
from paretrain.planner.inputs.spec_parse import parse_spec
from paretrain.planner.measure.measurements import TruncatedCheckpoint
from paretrain.planner.measure.profile import Profile, build_profile
from paretrain.planner.measure.profile_file import profile_from_json, profile_to_json
from paretrain.planner.plan.make import make_plan
from paretrain.planner.plan.plan import Plan
from paretrain.planner.plan.plan_file import plan_from_json, plan_to_json
from paretrain.planner.program.build import build_problem
from paretrain.planner.program.milp import pareto_front
from paretrain.runtime.train.workloads import WORKLOADS
from tests.conftest import small_spec
from tests.planner.synthetic_lab import SyntheticLab

HW = "local/cpu-1"
S = 6000  # samples the profile's run of a config trained
B0 = 64  # at this batch size


def _spec(batch_sizes=(16, 64), **over):
    """Convergence given as hints (E(B) known, nothing to fit), as a truncated profile would
    measure it at batch 64 on local/cpu-1."""
    planner = {**small_spec()["planner"], "batch_sizes": list(batch_sizes), "stages": 2}
    data = small_spec(
        planner=planner,
        target={"goal": 0.8, "levels": [0.8], "max_samples": 400_000},
        convergence={
            "mlp-64x2": {"e_min": 20000, "b_noise": 400, "level": 0.8},
            "cnn-8x2": {"e_min": 15000, "b_noise": 400, "level": 0.8},
        },
        hardware={"allow": [HW]},
        **over,
    )
    return parse_spec(data, "spec.yaml", WORKLOADS)


def _with_checkpoints(profile: Profile, seed: int = 0, **over) -> Profile:
    """The profile with a checkpoint of each config's run at batch 64 (as the lab keeps them)."""
    cks = tuple(
        TruncatedCheckpoint(
            **{
                "config_id": cid,
                "batch_size": B0,
                "precision": "fp32",
                "device": HW,
                "seed": seed,
                "samples": S,
                "path": f"k.checkpoints/{cid}.pt",
                "sha256": "0" * 64,
                **over,
            }
        )
        for cid in ("mlp-64x2", "cnn-8x2")
    )
    return replace(profile, checkpoints=cks)


def _plan(spec, profile) -> tuple[Plan, object, object]:
    """The plan, and its problem (not pruned: every option's arrays) and context."""
    offers = local_offers(SyntheticLab().devices(), spec.hardware)
    configs = list(spec.configs)
    problem, ctx = build_problem(spec, offers, profile, configs)
    plan = make_plan(
        spec=spec,
        profile_key="k",
        problem=problem,
        ctx=ctx,
        front=pareto_front(problem),
        configs=configs,
        offers=offers,
        solver="highs",
    )
    return plan, build_problem(spec, offers, profile, configs, prune=False)[0], ctx


def _profile(spec):
    return build_profile(spec, SyntheticLab(), list(spec.configs))


def _twins(problem):
    """(twin m, its choice from scratch m0, the option o that trained the checkpoint)."""
    for m, ch in enumerate(problem.choices):
        if ch.reused:
            m0 = next(
                i
                for i, c in enumerate(problem.choices)
                if (c.config_id, c.score, c.reused) == (ch.config_id, ch.score, False)
            )
            o = next(i for i, opt in enumerate(problem.options) if np.isfinite(problem.time_s[m, 0, i]))
            yield m, m0, o


def test_a_choice_that_starts_from_the_checkpoint_counts_only_the_work_left():
    spec = _spec()
    bare = _profile(spec)
    _, p0, _ = _plan(spec, bare)
    plan, p1, ctx = _plan(spec, _with_checkpoints(bare))
    assert not any(c.reused for c in p0.choices)
    assert len(p1.choices) == 2 * len(p0.choices)  # a twin of each (config, level)
    assert np.array_equal(p1.samples[: len(p0.choices)], p0.samples)  # the choices from scratch as before
    for m, m0, o in _twins(p1):
        opt, start = p1.options[o], ctx.starts[m]
        # its first stage only where the checkpoint was trained; later stages anywhere
        assert (opt.hardware, opt.batch_size, opt.precision, opt.workers) == (HW, B0, "fp32", 1)
        assert np.isfinite(p1.time_s[m, 0]).sum() == 1 and np.isfinite(p1.time_s[m, 1]).sum() > 1
        assert start.samples == S and start.config_id == p1.choices[m].config_id
        # hints give a flat B_noise of 400: the checkpoint's samples at batch 64 are worth S / 1.16
        assert start.progress == pytest.approx(S / (1 + B0 / 400))
        ideal = [
            p1.samples[i, k, o] / (1 + B0 / ctx.b_noise_stage[(i, k)]) for i in (m, m0) for k in range(2)
        ]
        assert sum(ideal[2:]) - sum(ideal[:2]) == pytest.approx(start.progress)
        assert all(p1.time_s[m, k, o] < p1.time_s[m0, k, o] for k in range(2))
    # a candidate that starts from the checkpoint says so, and its samples exclude the checkpoint's
    started = [c for c in plan.candidates if c.start is not None]
    assert started, "the cheaper start is on the front"
    for c in started:
        first = c.stages[0]
        assert (first.hardware, first.batch_size, first.precision) == (c.start.hardware, B0, "fp32")
        assert c.reused_samples == c.start.samples == S
        assert c.samples == sum(s.samples for s in c.stages)
        assert c.samples_interval.p50 < c.samples + S  # the interval counts the samples left too
        assert any("starts from the profile's checkpoint" in n for n in c.notes)
    # the plan file records where each run starts, and reads it back
    again = plan_from_json(plan_to_json(plan), "plan.json")
    assert [c.start for c in again.candidates] == [c.start for c in plan.candidates]
    d = json.loads(plan_to_json(plan))
    assert all("start" in c for c in d["pareto"])
    assert {c["start"]["samples"] for c in d["pareto"] if c["start"]} == {S}


def test_reuse_makes_the_knee_no_dearer():
    spec = _spec()
    bare = _profile(spec)
    cheapest = min(c.cost_usd for c in _plan(spec, bare)[0].candidates)
    assert min(c.cost_usd for c in _plan(spec, _with_checkpoints(bare))[0].candidates) < cheapest


def test_a_first_stage_at_another_batch_size_does_not_reuse():
    spec = _spec(batch_sizes=(32, 128))  # the profile's runs trained at 64
    bare = _profile(spec)
    plan, p1, ctx = _plan(spec, _with_checkpoints(bare))
    _, p0, _ = _plan(spec, bare)
    assert not ctx.starts and all(c.start is None for c in plan.candidates)
    assert p0.choices == p1.choices and np.array_equal(p0.time_s, p1.time_s)


@pytest.mark.parametrize(
    "over",
    [{"seed": 7}, {"precision": "bf16"}, {"device": "local/cpu-2"}, {"samples": 400_000}],
    ids=["seed", "precision", "device", "past-max-samples"],
)
def test_a_checkpoint_of_another_seed_precision_or_device_is_not_reused(over):
    spec = _spec()
    bare = _profile(spec)
    plan, _, ctx = _plan(spec, _with_checkpoints(bare, **over))
    assert not ctx.starts and all(c.start is None for c in plan.candidates)


def test_the_profile_file_keeps_its_checkpoints_and_reads_files_without_them():
    profile = _with_checkpoints(_profile(_spec()))
    assert profile_from_json(profile_to_json(profile), "p.json").checkpoints == profile.checkpoints
    d = json.loads(profile_to_json(profile))
    del d["checkpoints"]
    assert profile_from_json(json.dumps(d), "p.json").checkpoints == ()


def test_a_checkpoint_already_past_the_level_leaves_one_step_per_stage():
    spec = _spec()
    plan, p1, ctx = _plan(spec, _with_checkpoints(_profile(spec), samples=100_000))
    assert ctx.starts
    for m, _, o in _twins(p1):
        assert ctx.starts[m].progress > 20000 and p1.samples[m, 0, o] == p1.samples[m, 1, o] == 0
    for c in (c for c in plan.candidates if c.start is not None):
        assert [s.steps for s in c.stages] == [1, 1]
