"""Throughput and convergence fits recover known parameters."""

from __future__ import annotations

import numpy as np
import pytest

from paretrain.planner.measure.fits import B_NOISE_CAP, fit_convergence, fit_step_time


def test_step_time_fit_recovers_alpha_beta_from_noisy_samples():
    rng = np.random.default_rng(0)
    alpha, beta = 2e-3, 3e-5
    pts = [(b, (alpha + beta * b) * rng.lognormal(0, 0.02)) for b in (16, 32, 64, 128, 256) for _ in range(3)]
    m = fit_step_time(pts)
    assert m.alpha == pytest.approx(alpha, rel=0.1)
    assert m.beta == pytest.approx(beta, rel=0.1)
    assert m.extrapolated(512) and not m.extrapolated(100)


def test_step_time_uses_measured_points_as_they_are():
    m = fit_step_time([(16, 0.002), (64, 0.004), (256, 0.02)])
    assert m.predict(64) == 0.004
    assert m.predict(128) == pytest.approx(m.alpha + 128 * m.beta)


def test_convergence_fit_recovers_e_min_and_b_noise():
    e_min, b_noise = 40000.0, 300.0
    pts = [(b, int(e_min * (1 + b / b_noise))) for b in (16, 64, 256)]
    fit = fit_convergence(pts)
    assert fit.e_min == pytest.approx(e_min, rel=1e-3)
    assert fit.b_noise == pytest.approx(b_noise, rel=1e-3)
    assert fit.max_batch == 256
    assert fit.samples(128) == pytest.approx(e_min * (1 + 128 / b_noise), rel=1e-3)


def test_convergence_without_batch_penalty_caps_b_noise():
    fit = fit_convergence([(16, 50000), (64, 50000), (256, 49000)])
    assert fit.b_noise == B_NOISE_CAP
    assert fit.samples(256) == pytest.approx(fit.e_min, rel=1e-5)


def test_fits_reject_bad_input():
    with pytest.raises(ValueError):
        fit_convergence([(16, 100)])
    with pytest.raises(ValueError):
        fit_step_time([(16, -1.0)])
