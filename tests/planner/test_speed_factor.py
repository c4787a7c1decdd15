"""The profile's convergence runs set the level of a local device's step time; its timed passes
keep the shape over batch sizes (paretrain/planner/measure/throughput.py ``speed_factors``)."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from paretrain.planner.inputs.catalog import Offer
from paretrain.planner.measure.measurements import ConvergenceRun, StepProfile, StepSample
from paretrain.planner.measure.profile import Profile
from paretrain.planner.measure.throughput import speed_factors, step_models
from paretrain.planner.plan.fitted import StepModelRecord

CPU1 = Offer("local/cpu-1", "local", "cpu", 0.0425, memory_gib=8.0, local=True, vcpus=1, threads=1)
CPU2 = Offer("local/cpu-2", "local", "cpu", 0.085, memory_gib=8.0, local=True, vcpus=2, threads=2)
GPU = Offer("local/cuda:0", "local", "gpu", 1.0, memory_gib=8.0, local=True)


def _steps(hw: str, per_sample_s: float) -> StepProfile:
    return StepProfile(
        hw,
        "m",
        "fp32",
        tuple(
            StepSample(b, 1, 1e-3 + per_sample_s * b, b / (1e-3 + per_sample_s * b), 1) for b in (32, 64, 128)
        ),
        eval_s=0.02,
    )


def _run(hw: str, b: int, step_s: float, steps: int) -> ConvergenceRun:
    return ConvergenceRun("m", b, ((0.9, steps * b),), 0.91, device=hw, step_s=step_s, steps=steps)


def _profile(*runs: ConvergenceRun) -> Profile:
    return Profile(
        "k",
        "here",
        steps=(_steps("local/cpu-1", 2e-5), _steps("local/cpu-2", 1e-5), _steps("local/cuda:0", 1e-7)),
        convergence=runs,
    )


def test_each_device_takes_its_runs_speed_and_the_others_cpus_take_the_machines():
    at32, at128 = 1e-3 + 2e-5 * 32, 1e-3 + 2e-5 * 128
    profile = _profile(_run("local/cpu-1", 32, at32 * 1.2, 100), _run("local/cpu-1", 128, at128 * 1.1, 300))
    f = speed_factors(profile)
    assert f["local/cpu-1"] == f["*"]
    # weighted by the seconds each run trained: the longer run counts for more
    assert 1.1 < f["local/cpu-1"] < 1.15
    models = step_models(profile, [CPU1, CPU2, GPU], ["m"], ["fp32"], [1])
    one, two, gpu = (models[(o.id, "m", "fp32", 1)] for o in (CPU1, CPU2, GPU))
    assert one.predict(64) == pytest.approx((1e-3 + 2e-5 * 64) * f["*"])
    assert one.eval_s == pytest.approx(0.02 * f["*"])
    assert two.predict(64) == pytest.approx((1e-3 + 1e-5 * 64) * f["*"])  # no run of its own: the machine's
    assert gpu.predict(64) == pytest.approx(1e-3 + 1e-7 * 64) and gpu.speed_factor == 1.0  # not a CPU
    # the plan file keeps the factor, and its model prices the same step
    rec = StepModelRecord.of(("local/cpu-1", "m", "fp32", 1), one, 1, 0.0)
    again = StepModelRecord.from_dict(json.loads(json.dumps(asdict(rec)))).model()
    assert again.speed_factor == pytest.approx(f["*"]) and again.predict(64) == pytest.approx(one.predict(64))


def test_a_device_with_runs_of_its_own_is_not_given_anothers():
    b = 64
    profile = _profile(
        _run("local/cpu-1", b, (1e-3 + 2e-5 * b) * 1.3, 100),
        _run("local/cpu-2", b, (1e-3 + 1e-5 * b) * 0.8, 100),
    )
    f = speed_factors(profile)
    assert f["local/cpu-1"] == pytest.approx(1.3) and f["local/cpu-2"] == pytest.approx(0.8)
    models = step_models(profile, [CPU1, CPU2], ["m"], ["fp32"], [1])
    assert models[("local/cpu-2", "m", "fp32", 1)].predict(b) == pytest.approx((1e-3 + 1e-5 * b) * 0.8)


def test_without_timed_convergence_runs_the_passes_stand_as_measured():
    old = ConvergenceRun("m", 64, ((0.9, 6400),), 0.91)  # a profile written before runs were timed
    profile = _profile(old)
    assert speed_factors(profile) == {}
    models = step_models(profile, [CPU1], ["m"], ["fp32"], [1])
    assert models[("local/cpu-1", "m", "fp32", 1)].predict(64) == pytest.approx(1e-3 + 2e-5 * 64)
