"""Early cuts of recorded learning curves: how far the curve model's samples-to-a-level can be
trusted when a truncated profile stops early.

A truncated profile fits one run's first evaluations and extrapolates the samples each level
needs (``paretrain.planner.measure.curves.Curve.samples_to``). The curves recorded from the
built-in workloads (``tests/planner/data/curves.json``, 20 evaluations each, by
``benchmarks/record_curves.py``) are cut after their first 4 to 12 evaluations and fitted. Each
cut is judged against the samples at which the recorded run first reached two of its own later
levels (those of its 15th and 20th evaluation): the P50's relative error, (predicted - true) /
true (``inf`` when the fit's asymptote falls short of the level; the table shows the median of
its absolute value per cut), whether the truth lies inside
P10-P90, and whether that interval is bounded (a P90 of ``inf`` holds anything).

    .venv/bin/python benchmarks/early_cuts.py

Prints a table and writes ``benchmarks/results/early_cuts.json``.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from paretrain.planner.measure.curves import fit_curve

ROOT = Path(__file__).resolve().parent.parent
CURVES = ROOT / "tests" / "planner" / "data" / "curves.json"
RESULTS = ROOT / "benchmarks" / "results" / "early_cuts.json"
CUTS = (4, 5, 6, 8, 10, 12)
LEVELS_AT = (14, 19)  # the levels of the 15th and the 20th evaluation


def cut_row(workload: str, rec: dict, level_at: int, cut: int) -> dict:
    """One cut of one recorded curve, judged at the level its ``level_at``-th point reached."""
    pts = [(int(n), float(v)) for n, v in rec["points"]]
    maximize = rec["direction"] == "maximize"
    level = pts[level_at][1]
    true_n = next(n for n, v in pts if (v >= level if maximize else v <= level))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        curve = fit_curve(pts[:cut], rec["direction"])
    row = {"workload": workload, "level": round(level, 4), "true_samples": true_n, "cut": cut}
    row["seen_share"] = round(pts[cut - 1][0] / true_n, 3)  # of the samples the level took
    if curve is None:
        return {**row, "p50_err": None, "inside": None, "bounded": None}
    # the truth is the first recorded evaluation at or past the level, so the prediction is where
    # a run evaluating as often stops (``every``: its evaluations' own noise and grid)
    every = pts[1][0] - pts[0][0]
    lo, mid, hi = curve.samples_to(level, going_on=True, every=every)
    return {
        **row,
        "p50_err": round((mid - true_n) / true_n, 3) if math.isfinite(mid) else math.inf,
        "inside": bool(lo <= true_n <= hi),
        "bounded": bool(math.isfinite(hi)),
    }


def summary(rows: list[dict]) -> list[dict]:
    """Per cut, over workloads and levels: how many P50s were finite, within 25%, inside
    and bounded."""
    out = []
    for cut in CUTS:
        at = [r for r in rows if r["cut"] == cut and r["p50_err"] is not None]
        finite = [r for r in at if math.isfinite(r["p50_err"])]
        errs = sorted(abs(r["p50_err"]) for r in at)
        out.append(
            {
                "cut": cut,
                "cases": len(at),
                "p50_abs_err_median": round(statistics.median(errs), 3) if errs else None,
                "p50_finite": len(finite),
                "p50_within_25pct": sum(abs(r["p50_err"]) <= 0.25 for r in finite),
                "inside_and_bounded": sum(bool(r["inside"] and r["bounded"]) for r in at),
            }
        )
    return out


def main() -> None:
    recorded = json.loads(CURVES.read_text())
    rows = [
        cut_row(name, rec, level_at, cut)
        for name, rec in recorded.items()
        for level_at in LEVELS_AT
        for cut in CUTS
    ]
    table = summary(rows)
    print(
        f"{'cut':>4} {'cases':>6} {'|P50 err| median':>17} {'P50 finite':>11} {'within 25%':>11} "
        f"{'inside, bounded':>16}"
    )
    for s in table:
        print(
            f"{s['cut']:>4} {s['cases']:>6} {s['p50_abs_err_median']:>17} {s['p50_finite']:>11} "
            f"{s['p50_within_25pct']:>11} {s['inside_and_bounded']:>16}"
        )
    RESULTS.write_text(
        json.dumps({"summary": table, "rows": rows}, indent=1, allow_nan=True).replace("Infinity", '"inf"')
        + "\n"
    )
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
