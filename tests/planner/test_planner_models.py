"""The planner's deeper models: pruning, per-stage B_noise, memory, modeled offers, spot, status."""

from __future__ import annotations

import math

import numpy as np
import pulp
import pytest

from paretrain.planner.errors import SolverError, SolverTimeout
from paretrain.planner.inputs.catalog import Offer, builtin_catalog_text, local_offers, parse_catalog
from paretrain.planner.inputs.spec_parse import parse_spec
from paretrain.planner.measure.fits import fit_noise_curve, stage_b_noise
from paretrain.planner.measure.profile import build_profile, merge_profiles
from paretrain.planner.plan.make import make_plan
from paretrain.planner.program.build import build_problem
from paretrain.planner.program.milp import pareto_front, solve_outcome
from paretrain.planner.program.problem import prune_dominated
from paretrain.runtime.train.workloads import WORKLOADS
from tests.conftest import small_spec
from tests.planner.synthetic import brute_force_front, random_problem
from tests.planner.synthetic_lab import SyntheticLab


def _key(front):
    return [(round(s.cost_usd, 12), round(s.wall_s, 9), s.score) for s in front]


@pytest.mark.parametrize("seed", range(12))
def test_pruning_dominated_options_keeps_the_exact_front(seed):
    p = random_problem(300 + seed, choices=2, stages=2, hardware=2, batches=3)
    pruned, dropped = prune_dominated(p)
    assert _key(pareto_front(pruned).schedules) == _key(brute_force_front(p))
    assert dropped >= 0 and np.isfinite(pruned.time_s).sum() == np.isfinite(p.time_s).sum() - dropped


def test_stage_b_noise_has_the_fitted_harmonic_mean_and_grows():
    curve = fit_noise_curve([(1000, 40.0), (4000, 90.0), (16000, 150.0), (64000, 400.0)])
    assert curve is not None and curve.slope > 0
    bn = stage_b_noise(200.0, curve, 64000, 4)
    assert bn == sorted(bn) and bn[0] < bn[-1]
    assert 4 / sum(1 / b for b in bn) == pytest.approx(200.0)
    assert stage_b_noise(200.0, None, 64000, 4) == [200.0] * 4


def test_noise_curve_ignores_unusable_estimates():
    assert fit_noise_curve([(1000, 0.0), (2000, math.inf)]) is None


def test_a_noise_trend_the_points_do_not_support_is_not_planned_on():
    # Two-batch estimates as a shared CPU gives them: one wild point, no trend in the rest.
    wild = [(14016, 69.4), (24384, 743.0), (42464, 68.9), (73920, 105.0), (128672, 9797.0)]
    assert fit_noise_curve(wild) is None
    rng = np.random.default_rng(0)
    steady = [(p, 300.0 * float(np.exp(rng.normal(0, 0.3)))) for p in (1000, 2000, 4000, 8000, 16000, 32000)]
    assert fit_noise_curve(steady) is None
    growing = [
        (p, 0.5 * p**0.6 * float(np.exp(rng.normal(0, 0.3)))) for p in (1000, 2000, 4000, 8000, 16000, 32000)
    ]
    curve = fit_noise_curve(growing)
    assert curve is not None and 0.3 < curve.slope < 0.9


def _plan(lab, **over):
    spec = parse_spec(small_spec(**over), "spec.yaml", WORKLOADS)
    configs = list(spec.configs)
    profile = build_profile(spec, lab, configs)
    offers = local_offers(lab.devices(), spec.hardware)
    problem, ctx = build_problem(spec, offers, profile, configs)
    front = pareto_front(problem)
    return make_plan(
        spec=spec,
        profile_key="k",
        problem=problem,
        ctx=ctx,
        front=front,
        configs=configs,
        offers=offers,
        solver="highs",
    ), problem


def test_growing_noise_scale_makes_batches_grow_across_stages():
    lab = SyntheticLab(b_noise=120.0, noise_slope=1.5)
    plan, _ = _plan(
        lab,
        planner={
            "convergence": "full",
            "stages": 4,
            "batch_sizes": [16, 32, 64, 128, 256, 512],
            "convergence_batch_sizes": [16, 64, 256, 512],
        },
        target={"goal": 0.4, "levels": [0.4], "max_samples": 10**7},
    )
    growing = [
        c
        for c in plan.candidates
        if [s.batch_size for s in c.stages] == sorted(s.batch_size for s in c.stages)
        and c.stages[0].batch_size < c.stages[-1].batch_size
    ]
    assert growing, [[s.batch_size for s in c.stages] for c in plan.candidates]
    assert all(c.stages[0].b_noise < c.stages[-1].b_noise for c in plan.candidates)


def test_flat_noise_scale_gives_constant_batches_per_hardware():
    lab = SyntheticLab(b_noise=120.0, noise_slope=0.0)
    plan, _ = _plan(
        lab,
        planner={"convergence": "full", "stages": 3, "batch_sizes": [16, 64, 256]},
        target={"goal": 0.4, "levels": [0.4], "max_samples": 10**7},
    )
    cheapest = plan.candidate("cheapest")
    assert len({(s.hardware, s.batch_size) for s in cheapest.stages}) == 1


def test_an_option_that_does_not_fit_memory_is_never_chosen():
    lab = SyntheticLab()
    spec = parse_spec(
        small_spec(planner={"convergence": "full", "stages": 2, "batch_sizes": [32, 128]}), "s", WORKLOADS
    )
    profile = build_profile(spec, lab, list(spec.configs))
    # SyntheticLab reports 1000 bytes per sample: 64 KiB of device memory fits batch 32 only
    tiny = [
        Offer(
            d.id,
            "local",
            "cpu",
            d.threads * 0.0425,
            memory_gib=64 * 1024 / 2**30,
            vcpus=d.threads,
            local=True,
            threads=d.threads,
        )
        for d in lab.devices()
    ]
    problem, _ = build_problem(spec, tiny, profile, list(spec.configs))
    for s in pareto_front(problem).schedules:
        assert all(problem.options[o].batch_size == 32 for o in s.options)


def test_catalog_offers_are_modeled_and_a_measured_profile_wins():
    lab = SyntheticLab()
    data = small_spec(hardware={"allow": ["local/cpu-1", "aws/g4dn.xlarge"], "catalog": "builtin"})
    spec = parse_spec(data, "s", WORKLOADS)
    configs = list(spec.configs)
    profile = build_profile(spec, lab, configs)
    catalog = {o.id: o for o in parse_catalog(builtin_catalog_text())}
    offers = [*local_offers(lab.devices()[:1], spec.hardware), catalog["aws/g4dn.xlarge"]]
    _problem, ctx = build_problem(spec, offers, profile, configs)
    key = ("aws/g4dn.xlarge", configs[0].id, "fp32", 1)
    assert ctx.step_models[key].modeled
    # a profile measured on that offer elsewhere replaces the model
    from paretrain.planner.measure.profile import Profile, StepProfile, StepSample

    elsewhere = Profile(
        "x",
        "t4-box",
        steps=(
            StepProfile(
                "aws/g4dn.xlarge",
                configs[0].id,
                "fp32",
                (StepSample(32, 1, 0.5, 64, 10), StepSample(128, 1, 0.6, 213, 10)),
                eval_s=0.01,
                param_count=1000,
            ),
        ),
    )
    merged = merge_profiles(profile, [elsewhere])
    _, ctx2 = build_problem(spec, offers, merged, configs)
    model = ctx2.step_models[key]
    assert not model.modeled and model.predict(32) == 0.5


def test_spot_rework_adds_interruption_rate_times_half_a_checkpoint_interval():
    lab = SyntheticLab()
    spec = parse_spec(small_spec(runtime={"checkpoint_every_s": 600}), "s", WORKLOADS)
    profile = build_profile(spec, lab, list(spec.configs))
    base = local_offers(lab.devices()[:1], spec.hardware)[0]
    from dataclasses import replace

    spot = replace(base, id="local/cpu-1", interruption_per_h=0.5, switch_s=60.0)
    p0, _ = build_problem(spec, [base], profile, list(spec.configs), prune=False)
    p1, _ = build_problem(spec, [spot], profile, list(spec.configs), prune=False)
    ratio = p1.time_s[np.isfinite(p1.time_s)] / p0.time_s[np.isfinite(p0.time_s)]
    assert np.allclose(ratio, 1 + 0.5 / 3600 * (600 / 2 + 60))


def test_solver_status_maps_to_named_outcomes():
    assert solve_outcome(pulp.LpStatusOptimal, pulp.LpSolutionOptimal, "highs", 1) == "optimal"
    # PuLP says Optimal when HiGHS stops at its time limit with a schedule: not proven optimal
    assert solve_outcome(pulp.LpStatusOptimal, pulp.LpSolutionIntegerFeasible, "highs", 1) == "feasible"
    assert solve_outcome(pulp.LpStatusInfeasible, pulp.LpSolutionInfeasible, "highs", 1) == "infeasible"
    with pytest.raises(SolverTimeout, match="time limit"):
        solve_outcome(pulp.LpStatusNotSolved, pulp.LpSolutionNoSolutionFound, "highs", 1)
    with pytest.raises(SolverError, match="unbounded"):
        solve_outcome(pulp.LpStatusUnbounded, pulp.LpSolutionUnbounded, "cbc", 1)


def test_builtin_catalog_has_the_required_offers_with_sources():
    offers = parse_catalog(builtin_catalog_text())
    providers = {o.provider for o in offers}
    assert {"aws", "gcp", "lambda"} <= providers
    accels = " ".join(o.accelerator for o in offers)
    for gpu in ("T4", "A10G", "L4", "V100", "A100", "H100"):
        assert gpu in accels
    assert any(o.kind == "cpu" for o in offers)
    on_demand = [o for o in offers if not o.spot]
    assert len(on_demand) >= 12
    assert all(o.source and o.as_of for o in offers)
    assert any(o.spot and o.interruption_per_h > 0 for o in offers)


def test_convergence_runs_train_on_the_cpu_where_a_sample_costs_least():
    from paretrain.planner.measure.measurements import StepProfile, StepSample
    from paretrain.planner.measure.profile import convergence_cpu

    def prof(hw, step_s):
        return StepProfile(
            hw, "gru", "fp32", tuple(StepSample(b, 1, step_s * b / 64, 1.0, 0) for b in (64, 256))
        )

    prices = {"local/cpu-1": 0.04, "local/cpu-2": 0.08}
    # a GRU whose steps are slower on two (contended) threads than on one
    steps = [prof("local/cpu-1", 0.010), prof("local/cpu-2", 0.030)]
    assert convergence_cpu(steps, "gru", 128) == "local/cpu-1"
    assert convergence_cpu(list(reversed(steps)), "gru", 128, prices) == "local/cpu-1"
    # faster on two threads but not twice as fast: one thread is cheaper per sample
    faster = [prof("local/cpu-1", 0.010), prof("local/cpu-2", 0.006)]
    assert convergence_cpu(faster, "gru", 128, prices) == "local/cpu-1"
    # prices unknown (or equal): the faster device
    assert convergence_cpu(faster, "gru", 128) == "local/cpu-2"
    assert convergence_cpu(faster, "gru", 128, {"local/cpu-1": 0.04, "local/cpu-2": 0.04}) == "local/cpu-2"
    # more than twice as fast on two threads: two threads are the cheaper per sample
    assert convergence_cpu([prof("local/cpu-1", 0.010), prof("local/cpu-2", 0.004)], "gru", 128, prices) == (
        "local/cpu-2"
    )
    # a device without a price: costs are not comparable, so speed alone
    assert convergence_cpu(steps, "gru", 128, {"local/cpu-1": 0.04}) == "local/cpu-1"
    assert convergence_cpu(steps, "cnn", 128, prices) is None
