"""What renting a machine really costs: a run that starts on a cloud offer pays its provisioning,
and every predicted cost rounds the time held on an offer the way its provider bills."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from paretrain.planner.errors import InfeasiblePlan
from paretrain.planner.inputs.catalog import Offer, builtin_catalog_text, local_offers, parse_catalog
from paretrain.planner.inputs.spec_parse import parse_spec
from paretrain.planner.measure.profile import build_profile
from paretrain.planner.plan.make import make_plan
from paretrain.planner.plan.plan_file import plan_from_json, plan_to_json
from paretrain.planner.plan.replan import ReplanRequest, replan
from paretrain.planner.program.build import build_problem
from paretrain.planner.program.milp import pareto_front
from paretrain.planner.program.problem import Choice, Option, Problem
from paretrain.planner.program.stagecost import Held, bill_front, billing_usd
from paretrain.runtime.train.workloads import WORKLOADS
from tests.conftest import small_spec
from tests.planner.synthetic_lab import SyntheticLab

G4DN = "aws/g4dn.xlarge"
CATALOG = {o.id: o for o in parse_catalog(builtin_catalog_text())}


def _plan(allow, *, change=lambda o: o, stages=2, train_usd=0.5):
    """A short MNIST-1D job (about 3,000 samples) planned on the allowed offers."""
    data = small_spec(
        configs=[{"id": "mlp-16", "family": "mlp", "width": 16, "depth": 1, "lr": 0.01}],
        target={"goal": 0.3, "levels": [0.3], "max_samples": 8000},
        budget={"total_usd": 1.0, "envelopes": {"profile": 0.1, "search": 0.1, "train": train_usd}},
        deadline_s=100000,
        hardware={"allow": list(allow), "catalog": "builtin", "spot": True},
        planner={
            "convergence": "full",
            "stages": stages,
            "batch_sizes": [32, 64],
            "convergence_batch_sizes": [16, 64, 256],
            "profile_steps": 5,
            "noise": False,
        },
    )
    spec = parse_spec(data, "spec.yaml", WORKLOADS)
    lab = SyntheticLab(e_min={"mlp-16": 3000.0}, best={"mlp-16": 1.0})
    configs = list(spec.configs)
    profile = build_profile(spec, lab, configs)
    offers = [o for o in local_offers(lab.devices(), spec.hardware) if o.id in allow]
    offers = [change(o) for o in offers + [CATALOG[i] for i in allow if i in CATALOG]]
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
    return plan_from_json(plan_to_json(plan), "plan.json"), problem


def test_a_one_second_job_on_g4dn_costs_its_minute_and_takes_its_provisioning():
    plan, _problem = _plan([G4DN])
    offer = plan.offer(G4DN)
    assert offer.switch_s >= 60 and offer.billing_minimum_s == 60 and offer.billing_increment_s == 1
    for cand in plan.candidates:
        assert all(s.hardware == G4DN for s in cand.stages)
        compute_s = cand.wall_s - offer.switch_s
        assert 0 < compute_s < 5  # the training itself is a matter of seconds
        assert cand.wall_s >= offer.switch_s
        assert cand.cost_usd >= offer.billing_minimum_s * offer.price_usd_per_h / 3600.0
        assert cand.cost_usd >= cand.wall_s * offer.price_usd_per_h / 3600.0
        assert cand.stages[0].wall_s >= offer.switch_s  # the first stage pays the entry


def test_a_hold_shorter_than_the_minimum_is_billed_the_minimum():
    quick = replace(CATALOG[G4DN], switch_s=2.0)  # provisioned in 2 s: held far below a minute
    plan, _problem = _plan([G4DN], change=lambda o: quick if o.id == G4DN else o)
    minute_usd = 60.0 * quick.price_usd_per_h / 3600.0
    for cand in plan.candidates:
        assert 2.0 < cand.wall_s < 10.0
        assert minute_usd <= cand.cost_usd < minute_usd + 1e-6  # the minute, and storage
        assert cand.cost_usd == pytest.approx(sum(s.cost_usd for s in cand.stages), rel=1e-9)
        assert cand.stages[-1].cost_usd > cand.stages[0].cost_usd  # the hold's billing with its last stage


def test_local_offers_are_neither_provisioned_nor_rounded():
    plan, problem = _plan(["local/cpu-1", "local/cpu-2"], stages=3)
    for cand in plan.candidates:
        m = problem.choices.index(Choice(cand.config_id, cand.level))
        opts = [
            problem.options.index(Option(s.hardware, s.precision, s.batch_size, s.workers))
            for s in cand.stages
        ]
        linear = problem.evaluate(m, opts)
        assert cand.cost_usd == pytest.approx(linear.cost_usd, rel=1e-11)
        assert cand.wall_s == pytest.approx(linear.wall_s, rel=1e-11)
        assert cand.wall_s < 5.0
        for k, (s, o) in enumerate(zip(cand.stages, opts, strict=False)):
            assert s.cost_usd == pytest.approx(problem.cost_usd[m, k, o], rel=1e-11)


def test_each_hold_rounds_up_to_its_increment_and_minimum():
    aws, lam = CATALOG[G4DN], CATALOG["lambda/gpu_1x_a100_sxm4"]
    local = Offer("local/cpu-1", "local", "cpu", 0.0425, 8.0, local=True, billing_increment_s=1.0)
    held = [Held(aws, 4.0), Held(aws, 6.0), Held(lam, 61.0), Held(aws, 70.4), Held(local, 0.3)]
    got = billing_usd(held)
    per_s = [aws.price_usd_per_h / 3600.0, lam.price_usd_per_h / 3600.0]
    want = [0.0, 50.0 * per_s[0], 59.0 * per_s[1], 0.6 * per_s[0], 0.0]
    assert got == pytest.approx(want, rel=1e-9, abs=1e-15)
    # a hold that goes on from 55 s already held: 5 s more are billed up to the next second only
    assert billing_usd([Held(aws, 5.5)], held_before_s=55.0) == pytest.approx([0.5 * per_s[0]])
    # several instances and the price of the moment
    assert billing_usd([Held(aws, 30.0, instances=2, price_usd_per_h=7.2)]) == pytest.approx(
        [30.0 * 2 * 7.2 / 3600]
    )


def _two_offer_problem(budget: float) -> tuple[Problem, dict[str, Offer]]:
    """One stage, two options: a minute-billed cloud offer (cheap for its 2 s) and a local one."""
    offers = {
        "aws/x": Offer("aws/x", "aws", "gpu", 3.6, 16.0, billing_increment_s=1.0, billing_minimum_s=60.0),
        "local/y": Offer("local/y", "local", "cpu", 7.2, 8.0, local=True, billing_increment_s=1.0),
    }
    time = np.array([[[2.0, 1.0]]])
    cost = np.array([[[0.002, 0.0021]]])  # 2 s at $3.6/h; 1 s at $7.2/h and a little storage
    problem = Problem(
        (Choice("c", 0.9),),
        (Option("aws/x", "fp32", 32), Option("local/y", "fp32", 32)),
        ("aws/x", "local/y"),
        time,
        cost,
        np.ones_like(time),
        np.array([0, 1]),
        np.zeros(2),
        np.zeros(2),
        budget_usd=budget,
    )
    return problem, offers


def test_a_schedule_dominated_once_billed_is_dropped_and_one_past_the_budget_too():
    problem, offers = _two_offer_problem(budget=1.0)
    front = [problem.evaluate(0, [0]), problem.evaluate(0, [1])]  # cheap-but-slow cloud, dear-but-fast local
    kept, notes = bill_front(problem, front, offers, {("aws/x", 1): 1, ("local/y", 1): 1})
    assert [s.options for s, _ in kept] == [(1,)]  # the cloud one is billed a minute: $0.06 for 2 s
    assert any("dominated once billed" in n for n in notes)
    problem, _ = _two_offer_problem(budget=0.01)
    kept, notes = bill_front(problem, front, offers, {("aws/x", 1): 1, ("local/y", 1): 1})
    assert [s.options for s, _ in kept] == [(1,)] and kept[0][0].cost_usd == pytest.approx(0.0021)
    assert any("pass the budget" in n for n in notes)


def test_every_schedule_past_the_budget_once_billed_is_infeasible_with_the_budget_that_fits():
    problem, offers = _two_offer_problem(budget=0.01)
    with pytest.raises(InfeasiblePlan) as info:
        bill_front(problem, [problem.evaluate(0, [0])], offers, {("aws/x", 1): 1})
    assert info.value.binding == "budget"
    assert info.value.min_budget_usd == pytest.approx(0.06)


def test_a_replan_bills_the_hold_it_continues_as_the_plan_did():
    quick = replace(CATALOG[G4DN], switch_s=2.0)
    plan, problem = _plan([G4DN], change=lambda o: quick if o.id == G4DN else o)
    cand = plan.candidate("cheapest")
    m = problem.choices.index(Choice(cand.config_id, cand.level))
    k0 = cand.stages[0]
    o0 = problem.options.index(Option(k0.hardware, k0.precision, k0.batch_size, k0.workers))
    progress = problem.samples[m, 0, o0] / (1 + k0.batch_size * k0.workers / k0.b_noise)

    def at_boundary_1(held_s: float):
        return replan(
            plan,
            cand,
            ReplanRequest(
                current_hardware=G4DN,
                stage_index=1,
                stages_left=1,
                progress_done=progress,
                convergence_factor=1.0,
                step_factor={},
                prices_usd_per_h={},
                budget_left_usd=1.0,
                time_left_s=cand.wall_s - k0.wall_s,
                held_s=held_s,
            ),
        )

    same = at_boundary_1(held_s=k0.wall_s)  # the run has held the offer since it began
    assert same.cost_usd == pytest.approx(cand.cost_usd - k0.cost_usd, rel=1e-9)
    assert same.stages[0].cost_usd == pytest.approx(cand.stages[1].cost_usd, rel=1e-9)
    # as if the hold began now: the whole minute is billed again, the seconds held before too
    fresh = at_boundary_1(held_s=0.0)
    assert fresh.cost_usd == pytest.approx(
        same.cost_usd + k0.wall_s * quick.price_usd_per_h / 3600.0, rel=1e-9
    )
