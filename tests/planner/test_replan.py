"""A replan optimises the same cost model as the plan: with nothing changed it returns the plan's
remaining schedule, cost and time, for plans with several workers, spot offers and storage.

A replan is of a run that has started: at boundary 0 the run is on its first offer and has paid
its provisioning there, so what remains is the plan less that entry."""

from __future__ import annotations

from dataclasses import fields, replace

import pytest

from paretrain.planner.inputs.catalog import Offer, local_offers
from paretrain.planner.inputs.spec_parse import parse_spec
from paretrain.planner.measure.profile import build_profile
from paretrain.planner.plan.make import make_plan
from paretrain.planner.plan.plan import Candidate
from paretrain.planner.plan.plan_file import plan_from_json, plan_to_json
from paretrain.planner.plan.replan import ReplanRequest, replan
from paretrain.planner.program.build import build_problem
from paretrain.planner.program.milp import pareto_front
from paretrain.planner.program.problem import Choice, Option
from paretrain.runtime.train.workloads import WORKLOADS
from tests.conftest import small_spec
from tests.planner.synthetic_lab import SyntheticLab

REL = 1e-9


def _offers(spec, lab):
    """Two local CPUs, a cloud GPU with paid storage and egress, and its spot twin (provisioned
    in 0.03 s: a run starting there pays it, and the GPU still wins some of these 0.3 s jobs)."""
    gpu = Offer(
        "test/gpu",
        "test",
        "gpu",
        2.0,
        memory_gib=16,
        vcpus=4,
        accelerator="X",
        accelerator_count=1,
        peak_tflops_fp32=0.05,
        peak_tflops_bf16=0.1,
        storage_usd_per_gb_month=200.0,
        egress_usd_per_gb=0.09,
        switch_s=0.03,
        rendezvous_s=0.001,
    )
    spot = replace(gpu, id="test/gpu:spot", price_usd_per_h=0.6, spot=True, interruption_per_h=30.0)
    return [*local_offers(lab.devices(), spec.hardware), gpu, spot]


@pytest.fixture(scope="module")
def planned():
    data = small_spec(
        budget={"total_usd": 2.0, "envelopes": {"profile": 0.1, "search": 0.1, "train": 1.0}},
        target={"goal": 0.4, "levels": [0.4, 0.5], "max_samples": 10**6},
        planner={
            "convergence": "full",
            "stages": 3,
            "batch_sizes": [32, 128, 512],
            "convergence_batch_sizes": [16, 64, 256, 1024],
            "profile_steps": 5,
            "max_workers": 4,
            "exact_front": True,
        },
        runtime={"eval_every_samples": 2000, "checkpoint_every_s": 2.0, "keep_checkpoints": 2},
        deadline_s=600,
    )
    spec = parse_spec(data, "spec.yaml", WORKLOADS)
    lab = SyntheticLab(noise_slope=0.75)
    configs = list(spec.configs)
    profile = build_profile(spec, lab, configs)
    offers = _offers(spec, lab)
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
    # the runtime replans from the plan file, so the plan goes through it
    return plan_from_json(plan_to_json(plan), "plan.json"), problem, ctx, spec


def _picked(plan) -> list[Candidate]:
    """The cheapest, the fastest, the knee, and the first candidate using each costly feature."""
    cands = plan.candidates
    picks = [
        plan.candidate("cheapest"),
        plan.candidate("fastest"),
        plan.candidate("knee"),
        next(c for c in cands if any(s.workers > 1 for s in c.stages)),
        next(c for c in cands if any(s.spot for s in c.stages)),
        next(c for c in cands if len(c.hardware) > 1 and any(not h.startswith("local/") for h in c.hardware)),
    ]
    return list({c.id: c for c in picks}.values())


def _approx_stage(got, want, index):
    for f in fields(want):
        a, b = getattr(got, f.name), getattr(want, f.name)
        if f.name == "index":
            assert a == index
        elif isinstance(b, float):
            assert a == pytest.approx(b, rel=REL, abs=1e-15), f.name
        else:
            assert a == b, f.name


def _entry(plan, stage) -> tuple[float, float]:
    """Seconds and dollars a run starting on ``stage`` pays to provision its offer."""
    offer = plan.offer(stage.hardware)
    if offer.local:
        return 0.0, 0.0
    return offer.switch_s, offer.switch_s * offer.price_usd_per_h / 3600.0 * stage.instances


def _replan_at_boundary(planned, cand, j, prefer, budget, deadline):
    """Replan ``cand`` at the start of its stage ``j`` with nothing changed; return what the
    replan gave and the plan's own remaining (cost, time) from the exact problem: after the
    stages before j, and at j = 0 after the first offer's provisioning."""
    plan, problem, ctx, _ = planned
    m = problem.choices.index(Choice(cand.config_id, cand.level))
    opts = [
        problem.options.index(Option(s.hardware, s.precision, s.batch_size, s.workers)) for s in cand.stages
    ]
    full, head = problem.evaluate(m, opts), problem.evaluate(m, opts[:j])
    if j == 0:
        entry_s, entry_usd = _entry(plan, cand.stages[0])
        head = replace(head, cost_usd=entry_usd, wall_s=entry_s)
    progress = sum(
        problem.samples[m, k, o] / (1 + problem.options[o].global_batch / ctx.b_noise_stage[(m, k)])
        for k, o in enumerate(opts[:j])
    )
    req = ReplanRequest(
        current_hardware=cand.stages[max(j - 1, 0)].hardware,
        stage_index=j,
        stages_left=len(opts) - j,
        progress_done=progress,
        convergence_factor=1.0,
        step_factor={o.id: 1.0 for o in plan.offers},
        prices_usd_per_h={o.id: o.price_usd_per_h for o in plan.offers},
        budget_left_usd=budget(full) - head.cost_usd,
        time_left_s=deadline(full) - head.wall_s,
        prefer=prefer,
    )
    return replan(plan, cand, req), full.cost_usd - head.cost_usd, full.wall_s - head.wall_s


def test_the_test_plan_has_workers_spot_offers_storage_and_moves(planned):
    plan = planned[0]
    stages = [s for c in _picked(plan) for s in c.stages]
    assert any(s.workers > 1 for s in stages)
    assert any(s.spot and plan.offer(s.hardware).interruption_per_h > 0 for s in stages)
    assert any(plan.offer(s.hardware).storage_usd_per_gb_month > 0 for s in stages)


@pytest.mark.parametrize("j", [0, 1, 2])
@pytest.mark.parametrize("prefer", ["cost", "time"])
def test_replan_with_nothing_changed_returns_the_remaining_plan(planned, j, prefer):
    plan, _, _, spec = planned
    for cand in _picked(plan):
        # each candidate is the cheapest schedule within its own time (and the fastest within
        # its own cost), so a spec whose deadline (budget) it meets exactly picks it
        if prefer == "cost":
            budget, deadline = (lambda s: spec.budget.train_usd), (lambda s: s.wall_s)
        else:
            budget, deadline = (lambda s: s.cost_usd), (lambda s: spec.deadline_s)
        new, cost_left, time_left = _replan_at_boundary(planned, cand, j, prefer, budget, deadline)
        assert new.feasible, (cand.id, new.reason)
        got = [(s.hardware, s.precision, s.batch_size, s.workers) for s in new.stages]
        assert got == [(s.hardware, s.precision, s.batch_size, s.workers) for s in cand.stages[j:]], cand.id
        assert new.cost_usd == pytest.approx(cost_left, rel=REL), cand.id
        assert new.wall_s == pytest.approx(time_left, rel=REL), cand.id
        want = list(cand.stages[j:])
        if j == 0:  # the replan's first stage: the plan's less the provisioning already paid
            entry_s, entry_usd = _entry(plan, want[0])
            want[0] = replace(want[0], wall_s=want[0].wall_s - entry_s, cost_usd=want[0].cost_usd - entry_usd)
        for i, (a, b) in enumerate(zip(new.stages, want, strict=False)):
            _approx_stage(a, b, j + i)


def test_replan_of_the_cheapest_under_the_spec_deadline_keeps_it(planned):
    plan, _, _, spec = planned
    cand = plan.candidate("cheapest")
    for j in range(len(cand.stages)):
        new, cost_left, time_left = _replan_at_boundary(
            planned, cand, j, "cost", lambda s: spec.budget.train_usd, lambda s: spec.deadline_s
        )
        assert [s.hardware for s in new.stages] == [s.hardware for s in cand.stages[j:]]
        assert new.cost_usd == pytest.approx(cost_left, rel=REL)
        assert new.wall_s == pytest.approx(time_left, rel=REL)


def test_a_replan_within_a_memory_cap_plans_the_cap_where_no_spec_batch_fits(planned):
    """Out of memory above per-worker batch 16 everywhere (the spec's smallest is 32): the rest
    runs at 16, the cap itself, rather than at a batch that does not fit or at none."""
    plan, _, _, spec = planned
    cand = plan.candidate("cheapest")
    req = ReplanRequest(
        current_hardware=cand.stages[0].hardware,
        stage_index=0,
        stages_left=len(cand.stages),
        progress_done=0.0,
        convergence_factor=1.0,
        step_factor={},
        prices_usd_per_h={o.id: o.price_usd_per_h for o in plan.offers},
        budget_left_usd=spec.budget.train_usd,
        time_left_s=spec.deadline_s,
    )
    free = replan(plan, cand, req)
    assert min(s.batch_size for s in free.stages) >= 32
    capped = replan(plan, cand, replace(req, batch_cap={o.id: 16 for o in plan.offers}))
    assert capped.stages and [s.batch_size for s in capped.stages] == [16] * len(capped.stages)
