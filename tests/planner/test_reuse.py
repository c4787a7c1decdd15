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


def _spec(batch_sizes=(16, 64), **over):
    """Convergence given as hints (E(B) known, nothing to fit), as a truncated profile would
    measure it at batch 16 on local/cpu-1."""
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
    """The profile with a checkpoint of each config's run at batch 16 (as the lab keeps them)."""
    cks = tuple(
        TruncatedCheckpoint(
            **{
                "config_id": cid,
                "batch_size": 16,
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


def test_a_matching_first_stage_starts_at_the_checkpoint_and_counts_only_the_samples_left():
    spec = _spec()
    bare = _profile(spec)
    _, p0, _ = _plan(spec, bare)
    plan, p1, ctx = _plan(spec, _with_checkpoints(bare))
    assert ctx.starts, "some first-stage option trains what a truncated run trained"
    for (m, o), start in ctx.starts.items():
        opt = p1.options[o]
        assert (opt.hardware, opt.batch_size, opt.precision, opt.workers) == (HW, 16, "fp32", 1)
        assert start.samples == S and start.config_id == p1.choices[m].config_id
        assert p0.samples[m, 0, o] > S
        assert p1.samples[m, 0, o] == pytest.approx(p0.samples[m, 0, o] - S)
        assert p1.time_s[m, 0, o] < p0.time_s[m, 0, o] and p1.cost_usd[m, 0, o] < p0.cost_usd[m, 0, o]
        # later stages are costed as before
        assert np.array_equal(p1.samples[m, 1:], p0.samples[m, 1:])
    # a candidate that starts from a checkpoint says so, and its samples exclude the checkpoint's
    started = [c for c in plan.candidates if c.start is not None]
    assert started, "the cheaper first stage is on the front"
    for c in started:
        first = c.stages[0]
        assert (first.hardware, first.batch_size, first.precision) == (c.start.hardware, 16, "fp32")
        assert c.reused_samples == c.start.samples > 0
        assert c.samples == sum(s.samples for s in c.stages)
        assert any("starts from the profile's checkpoint" in n for n in c.notes)
    # the plan file records where each run starts, and reads it back
    again = plan_from_json(plan_to_json(plan), "plan.json")
    assert [c.start for c in again.candidates] == [c.start for c in plan.candidates]
    d = json.loads(plan_to_json(plan))
    assert all("start" in c for c in d["pareto"])
    assert {c["start"]["samples"] for c in d["pareto"] if c["start"]} == {c.start.samples for c in started}


def test_reuse_makes_the_knee_no_dearer():
    spec = _spec()
    bare = _profile(spec)
    cheapest = min(c.cost_usd for c in _plan(spec, bare)[0].candidates)
    assert min(c.cost_usd for c in _plan(spec, _with_checkpoints(bare))[0].candidates) < cheapest


def test_a_first_stage_at_another_batch_size_does_not_reuse():
    spec = _spec(batch_sizes=(32, 128))  # the profile's runs trained at 16
    bare = _profile(spec)
    plan, p1, ctx = _plan(spec, _with_checkpoints(bare))
    _, p0, _ = _plan(spec, bare)
    assert not ctx.starts and all(c.start is None for c in plan.candidates)
    assert np.array_equal(p0.samples, p1.samples) and np.array_equal(p0.time_s, p1.time_s)


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


def test_a_checkpoint_past_the_first_stage_completes_it_and_credits_no_later_stage():
    spec = _spec()
    bare = _profile(spec)
    _, p0, _ = _plan(spec, bare)
    plan, p1, ctx = _plan(spec, _with_checkpoints(bare, samples=100_000))
    assert ctx.starts
    for m, o in ctx.starts:
        assert p0.samples[m, 0, o] < 100_000 and p1.samples[m, 0, o] == 0
        assert np.array_equal(p1.samples[m, 1:], p0.samples[m, 1:])
    for c in (c for c in plan.candidates if c.start is not None):
        assert c.stages[0].steps == 1  # one step is left to it
