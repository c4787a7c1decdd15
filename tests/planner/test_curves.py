"""The learning-curve model (``paretrain.planner.measure.curves``): any metric, either direction,
extrapolated with an interval that holds a held-back tail."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from paretrain.planner.measure.curves import concave_part, fit_curve, tail_cut

CURVES = Path(__file__).parent / "data" / "curves.json"


def _noisy(f, ns, sd, seed=0):
    rng = np.random.default_rng(seed)
    return [(n, f(n) + float(rng.normal(0, sd))) for n in ns]


def test_a_power_law_is_recovered_and_extrapolated_for_a_maximized_metric():
    f = lambda n: 0.95 - 0.6 * (n / 1e4 + 0.05) ** -0.7 / 10  # noqa: E731 (a curve in one line)
    curve = fit_curve(_noisy(f, range(2000, 40_001, 2000), 0.002), "maximize")
    assert curve is not None
    lo, mid, hi = curve.predict(120_000)
    assert lo <= f(120_000) <= hi and lo < mid < hi
    assert curve.extrapolates(120_000) and not curve.extrapolates(20_000)


def test_a_minimized_loss_extrapolates_like_accuracy_does():
    f = lambda n: 1.2 + 6.0 * (n / 1e4 + 0.1) ** -0.5  # noqa: E731 (bits per byte falling to 1.2)
    curve = fit_curve(_noisy(f, range(1000, 20_001, 1000), 0.02), "minimize")
    assert curve is not None
    lo, mid, hi = curve.predict(40_000)
    assert hi < mid < lo  # P10 is the worse (higher) value for a minimized metric
    # twice the samples fitted: the P50 within 3% of the curve (how often P10-P90 holds the
    # curve is a benchmark figure: ``benchmarks/curve_fits.py``)
    assert abs(mid - f(40_000)) / f(40_000) < 0.03
    assert mid < curve.points[-1][1]  # it keeps falling beyond the last point


def test_samples_to_a_level_bracket_the_truth_and_an_unreachable_level_is_infinite():
    f = lambda n: 0.9 - 0.5 * math.exp(-n / 8000)  # noqa: E731 (a curve in one line)
    curve = fit_curve(_noisy(f, range(1000, 16_001, 1000), 0.003, seed=1), "maximize")
    assert curve is not None
    truth = -8000 * math.log((0.9 - 0.85) / 0.5)  # where f reaches 0.85
    lo, _mid, hi = curve.samples_to(0.85)
    grid = 1000  # evaluations 1,000 samples apart: no crossing is located finer than that
    assert lo - grid / 2 <= truth <= hi + grid / 2 and hi - lo < 4 * grid
    assert curve.samples_to(0.99)[1] == math.inf


def test_the_same_points_give_the_same_prediction():
    pts = [(n, 1 - 1 / math.sqrt(n)) for n in range(100, 2001, 100)]
    assert fit_curve(pts, "maximize").predict(5000) == fit_curve(pts, "maximize").predict(5000)


def test_too_few_points_or_a_bad_direction_are_refused():
    assert fit_curve([(1, 0.1), (2, 0.2), (3, 0.3)], "maximize") is None
    with pytest.raises(ValueError, match="direction"):
        fit_curve([(1, 0.1)] * 5, "up")


@pytest.mark.parametrize("workload", ["mnist1d", "stdlib_lm", "digits"])
def test_a_recorded_runs_held_back_tail_falls_inside_the_interval(workload):
    """Fitted on the first half of a real run (``benchmarks/record_curves.py``), the curve's
    P10-P90 holds what the run measured on the held-back half, in the metric's own units: at
    least 8 of its 10 evaluations (an 80% interval of a noisy evaluation may miss some)."""
    rec = json.loads(CURVES.read_text())[workload]
    pts = [(n, v) for n, v in rec["points"]]
    cut = len(pts) // 2
    curve = fit_curve(pts[:cut], rec["direction"])
    assert curve is not None
    seen = [(v, curve.predict(n)) for n, v in pts[cut:]]
    inside = [min(lo, hi) <= v <= max(lo, hi) for v, (lo, _mid, hi) in seen]
    assert len(inside) == 10 and sum(inside) >= 8, (workload, seen)


def test_the_families_are_weighed_on_one_held_back_tail():
    """Every family is scored on the same tail, so that none is weighed by a tail another could
    not be fitted before. Cut after 5 evaluations, the recorded digits run left pow4 and mmf4
    (4 parameters) no tail while exp3 (3) was scored on one point; that one point gave exp3 13
    times their weight, its asymptote fell short of a level the run reached at 14,112 samples,
    and the P50 was infinite."""
    assert [tail_cut(n) for n in (5, 6, 7, 10, 20)] == [5, 5, 5, 7, 14]
    rec = json.loads(CURVES.read_text())["digits"]
    curve = fit_curve([(n, v) for n, v in rec["points"]][:5], rec["direction"])
    assert curve is not None
    lo, mid, _hi = curve.samples_to(0.9749)
    assert lo <= 14_112 and math.isfinite(mid), (lo, mid)


def test_inflation_widens_the_interval_and_leaves_the_p50_where_the_fit_put_it():
    """The held-back tails scale the bootstrap curves' spread; that must widen P10-P90, not move
    the P50. Cut after 6 evaluations, the recorded MNIST-1D run's tails asked for an inflation of
    about 40, and the inflated curves' median put a level it reached at 78,208 samples at 10^15."""
    from dataclasses import replace

    rec = json.loads(CURVES.read_text())["mnist1d"]
    curve = fit_curve([(n, v) for n, v in rec["points"]][:6], rec["direction"])
    assert curve is not None and curve.inflation > 1.0
    as_fitted = replace(curve, inflation=1.0)
    for wider in (curve, replace(curve, inflation=3 * curve.inflation)):
        for level in (0.9, 0.9537):
            lo, mid, hi = wider.samples_to(level)
            flo, fmid, fhi = as_fitted.samples_to(level)
            assert mid == fmid and lo <= flo and hi >= fhi, (level, (lo, mid, hi), (flo, fmid, fhi))
        lo, mid, hi = wider.predict(100_000)
        flo, fmid, fhi = as_fitted.predict(100_000)
        assert mid == fmid and lo <= flo and hi >= fhi
    assert curve.samples_to(0.9537)[1] < 10 * 78_208


def test_a_level_the_points_reached_is_read_off_the_points():
    pts = [(1000, 0.5), (2000, 0.7), (3000, 0.82), (4000, 0.79), (5000, 0.86), (6000, 0.87), (7000, 0.88)]
    curve = fit_curve(pts, "maximize")
    assert curve is not None
    lo, mid, hi = curve.samples_to(0.8)
    assert (lo, mid) == (2000, 3000)  # first reached at 3000, so between 2000 and 3000
    assert 3000 <= hi <= 5000  # it dipped back below 0.8 at 4000
    # a level the points did not reach is never predicted before the last of them
    assert curve.samples_to(0.89)[0] >= 7000


def test_points_that_reached_a_level_and_fell_back_below_it_give_the_first_crossing_and_a_modeled_p90():
    """The last evaluations sit below the level by more than their noise: the first crossing is
    still read off the points, and when the curve stays past it comes from the model."""
    pts = [(1000, 0.5), (2000, 0.7), (3000, 0.8), (4000, 0.81), (5000, 0.79), (6000, 0.795), (7000, 0.8)]
    pts += [(8000, 0.799), (9000, 0.802), (10_000, 0.801), (11_000, 0.79)]
    curve = fit_curve(pts, "maximize")
    assert curve is not None
    lo, mid, hi = curve.samples_to(0.81)
    assert (lo, mid) == (3000, 4000)
    assert hi >= 11_000  # not before the last point, which fell back: the model's P90 (may be inf)
    assert curve.reached(0.81)[2] == math.inf
    # a run going on from the last point has the level still ahead: the model's P50, never the
    # first crossing behind it (here the model puts the curve at 0.80 by the last point, and never
    # back at 0.81: that level is not planned for a run from the checkpoint)
    assert curve.samples_to(0.80)[1] == 3000
    assert curve.samples_to(0.80, going_on=True)[1] == 11_000
    assert curve.samples_to(0.81, going_on=True) == (3000, math.inf, math.inf)


def test_a_plateau_then_a_climb_is_fitted_from_the_climb():
    """A sigmoid in samples (flat, then a climb that slows): the saturating families describe it
    from its steepest rise on, and a level beyond the points is predicted near the truth."""
    f = lambda n: 0.2 + 0.75 / (1 + math.exp(-(n - 40_000) / 5000))  # noqa: E731 (a curve in one line)
    pts = _noisy(f, range(2000, 50_001, 2000), 0.004, seed=2)
    part = concave_part(pts)
    assert 30_000 <= part[0][0] <= 46_000 and part[-1] == pts[-1]
    assert concave_part(pts[:12]) == pts[:12]  # on the plateau alone: nothing to cut
    curve = fit_curve(pts, "maximize")
    assert curve is not None
    truth = 40_000 - 5000 * math.log(0.75 / (0.9 - 0.2) - 1)  # where f reaches 0.9, past the points
    lo, _mid, hi = curve.samples_to(0.9)
    grid = 2000  # evaluations 2,000 samples apart
    assert lo - grid / 2 <= truth <= hi + grid / 2 and hi < 1.2 * truth  # the whole run: P90 never


@pytest.mark.parametrize("name", ["pow4", "mmf4", "exp3"])
def test_each_familys_derivatives_match_finite_differences(name):
    from paretrain.planner.measure.curve_families import FAMILIES, start_and_bounds

    fam = FAMILIES[name]
    x = np.linspace(0.05, 1.0, 12)
    _p0, lo, hi = start_and_bounds(name, np.linspace(0.3, 0.8, 12))
    rng = np.random.default_rng(1)
    for _ in range(5):
        p = lo + (hi - lo) * rng.uniform(0.1, 0.9, size=len(lo))
        numeric = np.column_stack(
            [
                (fam.model(x, p + h) - fam.model(x, p - h)) / (2 * h[i])
                for i, h in enumerate(np.eye(len(p)) * 1e-6 * np.maximum(np.abs(p), 1.0))
            ]
        )
        assert np.allclose(fam.jac(x, p), numeric, rtol=1e-4, atol=1e-6)
