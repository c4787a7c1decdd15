"""Planner scaling: build time, solve time and front size from 1k to 100k binaries,
HiGHS against CBC, with and without pruning dominated options.

Goal: the reference instance (6 configs x 12 offers x 6 batch sizes x 2 precisions x 4 worker
counts x 8 stages = 27,648 binaries) gives its front (>= 10 points, from the cheapest to the
fastest schedule: ``planner.pareto_points: 20``) in <= 10 s. Exact fronts (every
non-dominated point) are measured on the smaller instances, where they hold dozens of points.

    .venv/bin/python benchmarks/planner_scaling.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from benchmarks._instances import instance  # noqa: E402
from planner.milp import Formulation, pareto_front  # noqa: E402
from planner.problem import prune_dominated  # noqa: E402

SIZES = {  # name: (configs, offers, batches, precisions, workers, stages)
    "1k": (2, 4, 4, 2, 2, 8),
    "5k": (4, 8, 6, 2, 2, 6),
    "20k": (5, 10, 6, 2, 4, 8),
    "reference": (6, 12, 6, 2, 4, 8),
    "100k": (8, 16, 6, 2, 4, 16),
}


def run(name: str, dims: tuple[int, ...], solver: str, prune: bool, limit_s: float,
        points: int | None) -> dict:
    p = instance(0, configs=dims[0], offers=dims[1], batches=dims[2], precisions=dims[3],
                 workers=dims[4], stages=dims[5])
    binaries = int(np.isfinite(p.time_s).sum()) + len(p.choices)
    t0 = time.perf_counter()
    dropped = 0
    if prune:
        p, dropped = prune_dominated(p)
    f = Formulation(p, solver, time_limit_s=limit_s)
    build = time.perf_counter() - t0
    t1 = time.perf_counter()
    front = pareto_front(p, solver, limit_s, points=points, formulation=f)
    solve = time.perf_counter() - t1
    return {"instance": name, "solver": solver, "pruned": prune, "mode": "exact" if points is None else f"grid{points}",
            "binaries": binaries,
            "binaries_after_pruning": binaries - dropped, "build_s": round(build, 3),
            "solve_s": round(solve, 3), "total_s": round(build + solve, 3), "front": len(front.schedules),
            "solves": front.solves, "proven_optimal": front.proven_optimal}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="only the pruned HiGHS runs")
    args = ap.parse_args()
    rows = []
    for name, dims in SIZES.items():
        for points in (None, 20):
            for solver in ("highs", "cbc"):
                for prune in (True, False):
                    if args.quick and (solver == "cbc" or not prune):
                        continue
                    if points is None and name not in ("1k", "5k"):
                        continue  # exact fronts of hundreds of points: see the 5k row for the cost
                    if not prune and (name in ("reference", "100k") or points is None and name != "1k"):
                        continue  # unpruned large instances take minutes; the pruned rows say why
                    r = run(name, dims, solver, prune, 120.0, points)
                    rows.append(r)
                    print(f"{r['instance']:>9} {r['mode']:>6} {r['solver']:>5} prune={str(r['pruned']):5} "
                          f"binaries={r['binaries']:>6} kept={r['binaries_after_pruning']:>6} "
                          f"build={r['build_s']:>6.2f}s solve={r['solve_s']:>7.2f}s front={r['front']:>3} "
                          f"solves={r['solves']:>4}", flush=True)
    ref = [r for r in rows if r["instance"] == "reference" and r["solver"] == "highs" and r["pruned"]
           and r["mode"] == "grid20"][0]
    goal = {"reference_total_s": ref["total_s"], "reference_front": ref["front"],
            "met": ref["total_s"] <= 10.0 and ref["front"] >= 10}
    print(f"goal: reference front of {ref['front']} points in {ref['total_s']:.2f} s "
          f"({'met' if goal['met'] else 'NOT met'}: <= 10 s and >= 10 points)")
    out = Path(__file__).resolve().parent / "results" / "planner_scaling.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows, "goal": goal}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
