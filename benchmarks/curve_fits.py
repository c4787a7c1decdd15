"""Learning-curve fits: the time of one ``fit_curve`` and the quality of what it extrapolates, by
the solver paretrain uses (MINPACK's Levenberg-Marquardt on the parameter box mapped by a sine,
``paretrain.planner.measure.curve_families.fit_family``) and by the bounded trust-region solver it
replaced (``trf``, kept here as the reference), side by side on the same curves in one run; and
the time of a run's whole refit (the fit and the samples to its level) on the built-in
workloads' recorded curves.

The curves are drawn from three shapes (a power law, a saturating exponential, a sigmoid in
samples), 8 to 70 evaluations with noise of 0.003, 0.01 or 0.03, maximized and minimized
alike, from a fixed seed. Each is fitted on its first half and judged on the value at its end:
the P50's absolute error and whether the truth lies inside P10-P90. A run refits its curve at
its evaluations (``paretrain.runtime.adapt.learning``) and a truncated profile and a search fit
theirs at every round, so the time of a fit is time a user waits for.

    .venv/bin/python benchmarks/curve_fits.py [--curves N] [--seed S]

Prints a table and writes ``benchmarks/results/curve_fits.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from paretrain.planner.measure import curve_families, curves

RESULTS = Path(__file__).resolve().parent / "results" / "curve_fits.json"
RECORDED = Path(__file__).resolve().parent.parent / "tests" / "planner" / "data" / "curves.json"

SHAPES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "power": lambda x: 0.95 - 0.7 * (x / 3000 + 0.3) ** -0.7,
    "exponential": lambda x: 0.2 + 0.7 * (1 - np.exp(-x / 15000)),
    "sigmoid": lambda x: 0.3 + 0.6 / (1 + (8000 / x) ** 1.5),
}


def trf_fit_family(
    name: str,
    x: np.ndarray,
    u: np.ndarray,
    bounds_u: np.ndarray | None = None,
    warm: np.ndarray | None = None,
    ceiling: float | None = None,
) -> tuple[np.ndarray, float] | None:
    """The reference: ``fit_family`` as bounded trust-region least squares (``method="trf"``)."""
    from scipy.optimize import least_squares

    fam = curve_families.FAMILIES[name]
    if len(x) < fam.n_params + 1:
        return None
    p0, lo, hi = curve_families.start_and_bounds(name, u if bounds_u is None else bounds_u, ceiling)
    w = np.sqrt(x / x.max())
    best = None
    starts = (
        [warm]
        if warm is not None
        else [p0 * np.where(np.arange(len(p0)) == 2, f, 1.0) for f in (1.0, 0.3, 3.0)]
    )
    for start in starts:
        start = np.clip(start, lo + 1e-12, hi - 1e-12)
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            try:
                res = least_squares(
                    lambda p: (fam.model(x, p) - u) * w,
                    start,
                    jac=lambda p: fam.jac(x, p) * w[:, None],
                    bounds=(lo, hi),
                    max_nfev=400,
                    ftol=1e-6,
                    xtol=1e-6,
                )
            except (ValueError, FloatingPointError):
                continue
        if (
            np.all(np.isfinite(res.x))
            and np.all(np.isfinite(res.fun))
            and (best is None or res.cost < best.cost)
        ):
            best = res
    if best is None:
        return None
    resid = fam.model(x, best.x) - u
    return best.x, float(math.sqrt(float(resid @ resid) / max(len(x) - fam.n_params, 1)))


def draw_curves(n: int, seed: int) -> list[dict]:
    """``n`` curves: the points fitted, the direction, the truth at the end of the whole run."""
    rng = np.random.default_rng(seed)
    out = []
    names = list(SHAPES)
    for i in range(n):
        points = int(rng.integers(8, 71))
        noise = float(rng.choice([0.003, 0.01, 0.03]))
        shape = SHAPES[names[i % len(names)]]
        xs = np.arange(1, 2 * points + 1) * 1000.0
        ys = shape(xs) + rng.normal(0.0, noise, len(xs))
        direction = "maximize" if i % 2 == 0 else "minimize"
        sign, shift = (1.0, 0.0) if direction == "maximize" else (-1.0, 2.0)  # a loss falls toward 1
        fitted = [(float(x), sign * float(y) + shift) for x, y in zip(xs[:points], ys[:points], strict=True)]
        truth = sign * float(shape(xs[-1:])[0]) + shift
        out.append({"points": fitted, "direction": direction, "at": float(xs[-1]), "truth": truth})
    return out


def judge(fit: Callable, cases: list[dict]) -> dict:
    """Each case fitted with ``fit`` as the family fit: seconds, P50 error, truth inside P10-P90."""
    curve_families.fit_family, curves.fit_family = fit, fit
    rows = []
    for c in cases:
        t0 = time.perf_counter()
        curve = curves.fit_curve(c["points"], c["direction"])
        seconds = time.perf_counter() - t0
        assert curve is not None
        lo, mid, hi = curve.predict(c["at"])
        lo, hi = min(lo, hi), max(lo, hi)
        rows.append(
            {"s": seconds, "err": abs(mid - c["truth"]), "inside": lo <= c["truth"] <= hi, "width": hi - lo}
        )
    return {
        "fit_s_median": statistics.median(r["s"] for r in rows),
        "fit_s_mean": statistics.fmean(r["s"] for r in rows),
        "p50_abs_err_median": statistics.median(r["err"] for r in rows),
        "p50_abs_err_mean": statistics.fmean(r["err"] for r in rows),
        "inside_p10_p90": sum(r["inside"] for r in rows) / len(rows),
        "width_median": statistics.median(r["width"] for r in rows),
        "per_curve_s": [round(r["s"], 4) for r in rows],
    }


def refits() -> dict:
    """A run's whole refit (``fit_curve`` and ``samples_to`` where a run evaluating at the curve's
    spacing stops), timed on the built-in workloads' recorded curves (``tests/planner/data``)
    cut at 8, 11, 14, 17 and 20 points, aiming at the level of their last point."""
    data = json.loads(RECORDED.read_text())
    rows = []
    for name, c in data.items():
        pts = [(float(n), float(y)) for n, y in c["points"]]
        for n in range(8, len(pts) + 1, 3):
            t0 = time.perf_counter()
            curve = curves.fit_curve(pts[:n], c["direction"])
            assert curve is not None
            curve.samples_to(pts[-1][1], going_on=True, every=pts[1][0] - pts[0][0], cap=4 * pts[-1][0])
            rows.append({"workload": name, "points": n, "s": round(time.perf_counter() - t0, 4)})
    secs = [r["s"] for r in rows]
    return {
        "refit_s_median": statistics.median(secs),
        "refit_s_min": min(secs),
        "refit_s_max": max(secs),
        "refits": rows,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--curves", type=int, default=60)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    cases = draw_curves(args.curves, args.seed)
    product = curve_families.fit_family
    results = {"lm (paretrain)": judge(product, cases), "trf (reference)": judge(trf_fit_family, cases)}
    ratios = [
        t / s
        for s, t in zip(
            results["lm (paretrain)"]["per_curve_s"], results["trf (reference)"]["per_curve_s"], strict=True
        )
    ]
    print(f"{args.curves} curves, seed {args.seed}; each fitted on its first half, judged at its end")
    print(
        f"{'solver':<16} {'fit s (median)':>14} {'P50 |err| (median)':>18} {'inside P10-P90':>14} {'width (median)':>14}"
    )
    for name, r in results.items():
        print(
            f"{name:<16} {r['fit_s_median']:>14.3f} {r['p50_abs_err_median']:>18.4f} "
            f"{r['inside_p10_p90']:>14.0%} {r['width_median']:>14.4f}"
        )
    print(f"trf / lm time per curve: median {statistics.median(ratios):.2f}x")
    refit = refits()
    print(
        f"a whole refit on the recorded curves: median {refit['refit_s_median']:.3f} s "
        f"({refit['refit_s_min']:.3f}-{refit['refit_s_max']:.3f} s, {len(refit['refits'])} refits)"
    )
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "code": commit,
                "curves": args.curves,
                "seed": args.seed,
                "speedup_median": statistics.median(ratios),
                "results": results,
                "refit": refit,
            },
            indent=1,
        )
        + "\n"
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
