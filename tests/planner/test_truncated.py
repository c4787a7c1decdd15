"""Convergence from one truncated run (``paretrain.planner.measure.truncated``)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from paretrain.planner.measure.curves import fit_curve
from paretrain.planner.measure.fits import B_NOISE_CAP, B_NOISE_FLOOR, fit_convergence
from paretrain.planner.measure.measurements import NoiseSample
from paretrain.planner.measure.truncated import FAR, Z90, level_from_curve, noise_scale, worth


def _curve(until: int):
    f = lambda n: 0.9 - 0.5 * math.exp(-n / 8000)  # noqa: E731 (the run's accuracy curve)
    noise = np.random.default_rng(0).normal(0.0, 0.003, size=until // 500)
    return fit_curve(
        [(n, f(n) + e) for n, e in zip(range(500, until + 1, 500), noise, strict=False)], "maximize"
    )


def _noise(b_at):
    return [NoiseSample("c", p, 0.5, 1.0, 1.0, b_at(p)) for p in (1000, 4000, 16000)]


def test_a_level_the_run_reached_is_measured_and_one_beyond_is_extrapolated():
    curve = _curve(16_000)
    reached = level_from_curve(curve, 0.8, 32, _noise(lambda p: 256.0), 256)
    beyond = level_from_curve(curve, 0.89, 32, _noise(lambda p: 256.0), 256)
    assert reached is not None and beyond is not None
    assert not reached.extrapolated and beyond.extrapolated
    truth = -8000 * math.log(0.1 / 0.5)  # where the curve reaches 0.8
    assert (
        reached.samples[0] * 0.999 <= truth <= reached.samples[2] * 1.001
    )  # an exact curve: a thin interval
    assert beyond.fit.crossing > reached.fit.crossing  # extrapolating is less sure


def test_e_min_and_b_noise_give_back_the_measured_samples_at_the_runs_batch():
    lv = level_from_curve(_curve(12_000), 0.8, 32, _noise(lambda p: 128.0), 256)
    assert lv is not None
    assert lv.fit.b_noise == pytest.approx(128.0)  # a flat noise scale is its own mean
    assert lv.fit.samples(32) == pytest.approx(lv.samples[1], rel=1e-6)
    assert lv.fit.samples(128) == pytest.approx(lv.fit.e_min * 2.0)  # McCandlish: E(B_noise) = 2 E_min


def test_a_growing_noise_scale_weighs_the_early_small_values_of_the_run_most():
    lv = level_from_curve(_curve(12_000), 0.8, 32, _noise(lambda p: 0.05 * p), 256)
    assert lv is not None
    curve, _geo = noise_scale(_noise(lambda p: 0.05 * p))
    assert curve is not None and curve.slope == pytest.approx(1.0)
    assert lv.fit.b_noise < curve.at(lv.samples[1])  # below the noise scale where the level is


def test_a_steep_noise_trend_is_integrated_over_the_samples_the_run_saw():
    """Two samples at 3,072 and 6,144 samples growing as p^2 (the slope's clip bound), as on
    MNIST-1D's example with the workload's seeds 1 and 3. Read against ideal progress in a fixed
    point, the trend and the level's E_min fed each other down to B_noise = 6e-7 (the plan's
    stages divided by zero) or 3.5 (E_min a twentieth of the samples' worth). Integrated over the
    samples seen at the run's batch, the noise scale weighs each part of the run as it was."""
    samples = [NoiseSample("c", p, 0.3, 1.0, 1.0, 8.0 * (p / 3072) ** 2) for p in (3072, 6144)]
    curve, _geo = noise_scale(samples)
    assert curve is not None and curve.slope == pytest.approx(2.0)
    lv = level_from_curve(_curve(12_000), 0.8, 64, samples, 256)
    assert lv is not None
    s = lv.samples[1]
    assert lv.fit.samples(64) == pytest.approx(s, rel=1e-9)  # E(B0) = S
    assert 8.0 < lv.fit.b_noise < curve.at(s)  # between the noise scale's first and last values
    # by hand: 3,072 samples at 1 / (1 + 64 / 8), then the trend, midpoint rule on a fine grid
    grid = np.linspace(3072, s, 100_001)
    worth = 3072 / 9 + np.trapezoid(1.0 / (1.0 + 64.0 / (8.0 * (grid / 3072) ** 2)), grid)
    assert lv.fit.e_min == pytest.approx(worth, rel=0.01)


def test_a_checkpoint_short_of_a_level_is_worth_less_than_the_level_by_the_same_measure():
    """The plan counts a run from the truncated run's checkpoint as ``worth`` its samples; a level
    the run had not reached by then is work still to do. Measured by the stages' noise model
    instead, MNIST-1D's checkpoint at 49,152 samples (seed 3) was worth 48,039 ideal samples and
    the level 0.98 (61,536 samples) 43,695: the run was planned 64 samples and trained 8,320."""
    samples = [NoiseSample("c", p, 0.3, 1.0, 1.0, 8.0 * (p / 3072) ** 2) for p in (3072, 6144)]
    lv = level_from_curve(_curve(12_000), 0.8, 64, samples, 256)
    assert lv is not None
    s = lv.samples[1]
    assert worth(samples, s, 64) == pytest.approx(lv.fit.e_min, rel=1e-9)
    assert worth(samples, 0.9 * s, 64) < lv.fit.e_min
    assert worth(samples, 1.1 * s, 64) > lv.fit.e_min


def test_b_noise_never_falls_below_one_sample():
    tiny = [NoiseSample("c", p, 0.3, 1.0, 1.0, 1e-6) for p in (1000, 4000, 16000)]
    lv = level_from_curve(_curve(12_000), 0.8, 32, tiny, 256)
    assert lv is not None and lv.fit.b_noise == pytest.approx(B_NOISE_FLOOR)
    assert fit_convergence([(16, 1000), (64, 4000), (256, 16000)]).b_noise == B_NOISE_FLOOR


def test_no_noise_sample_means_no_measurable_batch_penalty_and_an_unreachable_level_is_none():
    lv = level_from_curve(_curve(12_000), 0.8, 32, [], 256)
    assert lv is not None and lv.fit.b_noise == B_NOISE_CAP
    assert level_from_curve(_curve(12_000), 1.01, 32, [], 256) is None  # past what an accuracy can be


def test_a_p90_far_past_the_median_is_held_to_a_factor_far_in_the_level_spread():
    """The run reached the level, and its last evaluation fell far below it: the model's P90 of
    when the curve stays past it lies at 1e200 samples, and the level's spread takes a factor
    ``FAR`` from it, not an exp that overflows the plan's intervals."""
    pts = [(n * 1000, 0.9 - 0.6 * (n + 1) ** -0.8) for n in range(1, 21)]
    level = pts[10][1]
    pts[-1] = (pts[-1][0], pts[-1][1] - 0.2)
    curve = fit_curve(pts, "maximize")
    assert curve is not None
    lo, mid, hi = curve.samples_to(level)
    assert (lo, mid) == (10_000, 11_000) and hi > FAR * mid
    lv = level_from_curve(curve, level, 32, [], 256)
    assert lv is not None
    assert lv.fit.crossing == pytest.approx(math.log(FAR) / Z90)


def test_a_run_from_the_checkpoint_at_its_batch_plans_exactly_the_samples_the_curve_leaves():
    """The steep trend of MNIST-1D's seeds: the stage model reads the noise scale at ideal
    progress, the checkpoint is counted along the samples seen; the stages of a run from the
    checkpoint are scaled so that at the checkpoint's batch they cost what the level leaves."""
    from paretrain.planner.measure.fits import fit_noise_curve, stage_noise
    from paretrain.planner.program.build import _from_checkpoint

    b0, s, ck = 64, 30_000.0, 20_000.0
    samples = [NoiseSample("c", p, 0.3, 1.0, 1.0, 8.0 * (p / 3072) ** 2) for p in (3072, 6144)]
    e_min = worth(samples, s, b0)
    curve = fit_noise_curve([(n.progress_samples, n.b_simple) for n in samples])
    for k in (1, 3):
        noise = stage_noise(b0 / (s / e_min - 1.0), curve, e_min, k)
        done = worth(samples, ck, b0)
        work = (e_min - done) / k  # each stage's ideal work from the checkpoint on
        at = [noise.at(done + work * (j + 0.5)) for j in range(k)]
        unscaled = sum(work * (1.0 + b0 / b) for b in at)
        scaled = sum(work * (1.0 + b0 / b) for b in _from_checkpoint(at, work, s - ck, b0))
        assert scaled == pytest.approx(s - ck, rel=1e-9)
        assert abs(unscaled - (s - ck)) > 0.03 * (s - ck)  # what the scaling corrects
