"""Where a run stops (``paretrain.planner.measure.stopping``): at its first evaluation whose
measured value reaches the target, not where the learning curve crosses it."""

from __future__ import annotations

import math

import numpy as np

from paretrain.planner.measure.curve_families import FAMILIES
from paretrain.planner.measure.curves import fit_curve
from paretrain.planner.measure.stopping import evaluation_noise, first_passage

EXP3 = FAMILIES["exp3"]
P = np.array([0.99, 0.9, 3.0])  # u = 0.99 - 0.9 exp(-3 x): crosses 0.98 at x = 1.49987


def _stops(sd: float, level: float = 0.98, every: float = 0.1) -> list[float]:
    return [first_passage(EXP3, P, sd, level, start=0.0, every=every, r=r) for r in (0.1, 0.5, 0.9)]


def test_without_noise_the_run_stops_at_the_first_evaluation_past_the_crossing():
    assert _stops(0.0) == [1.5, 1.5, 1.5]
    assert _stops(0.0, every=0.4) == [1.6, 1.6, 1.6]  # a crossing between evaluations: the next one


def test_noise_near_the_level_stops_a_run_earlier_than_the_mean_crossing():
    lo, mid, hi = _stops(0.02)
    assert lo < mid < 1.5 and lo <= 1.2
    # and an evaluation at the crossing reaches the level only half the time: the P90 comes later
    assert hi > 1.5


def test_a_level_past_the_asymptote_is_reached_by_noise_only_within_its_reach():
    assert math.isfinite(_stops(0.005, level=0.995)[1])  # one spread above the asymptote
    assert _stops(0.005, level=1.02) == [math.inf] * 3  # six spreads above: never


def _simulated(fam, p, sd, u, every, runs=4000, evals=3000):
    """P10 / P50 / P90 of the first of ``evals`` noisy evaluations to reach ``u``, by brute force."""
    rng = np.random.default_rng(1)
    x = every * np.arange(1, evals + 1)
    hit = fam.model(x, p)[None, :] + rng.normal(0, sd, (runs, evals)) >= u
    first = np.where(hit.any(axis=1), hit.argmax(axis=1) + 1, 10**9) * every
    return np.quantile(first, [0.1, 0.5, 0.9])


def test_the_drawn_stops_agree_with_a_brute_force_simulation_of_the_evaluations():
    cases = [
        (EXP3, P, 0.02, 0.98, 0.1),  # a crossing, noise pulls the stop earlier
        (EXP3, np.array([0.98, 0.9, 3.0]), 0.01, 0.99, 0.1),  # one spread past the asymptote
        (EXP3, np.array([0.98, 0.9, 3.0]), 0.005, 0.995, 0.1),  # three: hundreds of evaluations
        (FAMILIES["pow4"], np.array([0.99, 0.8, 0.5, 0.05]), 0.01, 0.97, 0.5),  # a slow approach
    ]
    rs = (np.arange(2000) + 0.5) / 2000
    for fam, p, sd, u, every in cases:
        drawn = [first_passage(fam, p, sd, u, start=0.0, every=every, r=float(r)) for r in rs]
        got, want = np.quantile(drawn, [0.1, 0.5, 0.9]), _simulated(fam, p, sd, u, every)
        assert np.all(np.abs(got - want) <= np.maximum(0.08 * want, 2 * every)), (got, want)


def test_the_evaluation_noise_is_measured_about_a_steep_trend():
    rng = np.random.default_rng(3)
    x = np.arange(1, 21) * 1000.0
    u = 0.02 * x / 1000.0 + rng.normal(0, 0.005, len(x))  # a climb four times the noise a step
    noise = evaluation_noise(x, u)
    assert 0.0025 < noise < 0.01
    # the successive differences' spread would be the climb itself
    assert math.sqrt(float(np.mean(np.diff(u) ** 2)) / 2) > 0.012


def test_a_curve_predicts_the_stop_on_the_run_s_evaluation_grid():
    f = lambda n: 0.97 - 0.5 * np.exp(-n / 8000.0)  # noqa: E731 (a curve in one line)
    curve = fit_curve([(n, float(f(n))) for n in range(1000, 12_001, 1000)], "maximize")
    assert curve is not None
    lo, mid, hi = curve.samples_to(0.95, going_on=True, every=5000)
    assert all((v - 12_000) % 5000 == 0 for v in (lo, mid, hi) if math.isfinite(v))
    plain = curve.samples_to(0.95)
    assert plain[1] <= mid < plain[1] + 5000


def test_a_run_that_would_stop_past_its_cap_never_reaches_the_level():
    f = lambda n: 0.97 - 0.5 * np.exp(-n / 8000.0)  # noqa: E731 (a curve in one line)
    curve = fit_curve([(n, float(f(n))) for n in range(1000, 12_001, 1000)], "maximize")
    assert curve is not None
    _lo, mid, hi = curve.samples_to(0.95, going_on=True, every=5000)
    assert math.isfinite(hi)
    assert curve.samples_to(0.95, going_on=True, every=5000, cap=mid - 1)[1:] == (math.inf, math.inf)


def test_a_level_the_fitted_curves_never_reach_stays_out_of_reach_whatever_the_noise():
    rng = np.random.default_rng(0)
    f = lambda n: 0.95 - 0.5 * np.exp(-n / 3000.0)  # noqa: E731 (flat at 0.95 from 15k samples on)
    curve = fit_curve([(n, float(f(n) + rng.normal(0, 0.01))) for n in range(1000, 30_001, 1000)], "maximize")
    assert curve is not None and curve.noise > 0.005
    assert curve.samples_to(0.965)[1] == math.inf  # the curves as fitted stay below it
    # one or two noise spreads past them, evaluations would reach it by chance; the plan does
    # not count on it
    assert curve.samples_to(0.965, going_on=True, every=1000)[1] == math.inf
