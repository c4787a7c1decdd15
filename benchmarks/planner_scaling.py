"""Planner scaling: the exact Pareto front (every non-dominated schedule) from 1k to 100k
binaries, by the label DP of ``paretrain.planner.program.paths`` and by the MILP epsilon-constraint sweep (HiGHS
and CBC), side by side in one run.

Goal: the exact front of the reference instance (6 configs x 12 offers x 6 batch sizes x 2
precisions x 4 worker counts x 8 stages = 27,648 binaries) in <= 10 s, proven optimal.

Each MILP sweep runs on the pruned problem (``prune_dominated``) in a child process stopped
after ``--milp-limit`` seconds (120 by default); once HiGHS misses that on an instance, the
larger instances are not tried. CBC runs where HiGHS finished. The DP's own time is the median
of 5 runs of ``pareto_front`` on the raw (unpruned) problem (``paths_s``: DP, exact evaluation
of each schedule and the 3-D filter); ``dp_s`` and ``dp_no_cut_s`` time the DP alone, with and
without its cut by schedules already found. The grid sweep of 20 deadlines, the old way to a front of the
reference instance, is timed beside it.

    .venv/bin/python benchmarks/planner_scaling.py [--quick] [--milp-limit S]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import signal
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from benchmarks._instances import instance
from paretrain.planner.program.milp import Formulation, pareto_front
from paretrain.planner.program.paths import path_front
from paretrain.planner.program.problem import Problem, prune_dominated

SIZES = {  # name: (configs, offers, batches, precisions, workers, stages)
    "1k": (2, 4, 4, 2, 2, 8),
    "5k": (4, 8, 6, 2, 2, 6),
    "20k": (5, 10, 6, 2, 4, 8),
    "reference": (6, 12, 6, 2, 4, 8),
    "100k": (8, 16, 6, 2, 4, 16),
}


def make(name: str) -> Problem:
    d = SIZES[name]
    return instance(0, configs=d[0], offers=d[1], batches=d[2], precisions=d[3], workers=d[4], stages=d[5])


def _key(schedules) -> list[tuple[float, float, float]]:
    return [(round(s.cost_usd, 12), round(s.wall_s, 9), s.score) for s in schedules]


def _median_s(fn, repeats: int = 5) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def run_paths(name: str) -> dict:
    p = make(name)
    solve, front = _median_s(lambda: pareto_front(p, method="paths"))
    dp, found = _median_s(lambda: path_front(p))
    no_cut, found_no_cut = _median_s(lambda: path_front(p, bound=False))
    return {
        "instance": name,
        "binaries": int(np.isfinite(p.time_s).sum()) + len(p.choices),
        "paths_s": round(solve, 4),
        "front": len(front.schedules),
        "proven_optimal": front.proven_optimal,
        "dp_s": round(dp, 4),
        "dp_candidates": len(found),
        "dp_no_cut_s": round(no_cut, 4),
        "dp_no_cut_candidates": len(found_no_cut),
        "_key": _key(front.schedules),
    }


def _milp_child(name: str, solver: str, points: int | None, conn) -> None:
    os.setsid()  # its own process group: a stop also ends CBC's solver process
    t0 = time.perf_counter()
    p, dropped = prune_dominated(make(name))
    f = Formulation(p, solver, time_limit_s=120.0)
    build = time.perf_counter() - t0
    front = pareto_front(p, solver, 120.0, points=points, formulation=f, method="milp")
    conn.send(
        {
            "build_s": build,
            "total_s": time.perf_counter() - t0,
            "front": len(front.schedules),
            "solves": front.solves,
            "proven_optimal": front.proven_optimal,
            "pruned": dropped,
            "_key": _key(front.schedules),
        }
    )


def run_milp(name: str, solver: str, limit_s: float, points: int | None = None) -> dict | None:
    """The MILP sweep in a child process; None when it did not finish within ``limit_s``."""
    ctx = mp.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_milp_child, args=(name, solver, points, send))
    child.start()
    out = recv.recv() if recv.poll(limit_s) else None
    child.join(1.0)
    if child.is_alive():
        os.killpg(child.pid, signal.SIGKILL)
        child.join()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="the DP everywhere, the MILP sweep on 1k only")
    ap.add_argument("--milp-limit", type=float, default=120.0, help="seconds a MILP sweep may take")
    args = ap.parse_args()
    rows = []
    highs_ok = True
    print(
        f"{'instance':>9} {'binaries':>8} {'front':>5} {'paths':>9} {'dp':>8} {'no cut':>8} "
        f"{'milp highs':>10} {'milp cbc':>9} {'highs/paths':>11} same"
    )
    for name in SIZES:
        r = run_paths(name)
        for solver in ("highs", "cbc"):
            tried = highs_ok and (solver == "highs" or r.get("milp_highs_s") is not None)
            if args.quick and name != "1k":
                tried = False
            m = run_milp(name, solver, args.milp_limit) if tried else None
            r[f"milp_{solver}_s"] = None if m is None else round(m["total_s"], 3)
            r[f"milp_{solver}_solves"] = None if m is None else m["solves"]
            r[f"milp_{solver}"] = "finished" if m else f"over {args.milp_limit:g} s" if tried else "not run"
            if m is not None:
                r[f"milp_{solver}_same_front"] = m["_key"] == r["_key"]
                r["binaries_after_pruning"] = r["binaries"] - m["pruned"]
            if solver == "highs" and tried and m is None:
                highs_ok = False  # the larger instances would miss the limit too
        r["ratio_highs_over_paths"] = (
            None if r["milp_highs_s"] is None else round(r["milp_highs_s"] / r["paths_s"], 1)
        )
        del r["_key"]
        rows.append(r)

        def fmt(x: float | None) -> str:
            return "-" if x is None else f"{x:.3f}s"

        same = all(v for k, v in r.items() if k.endswith("same_front"))
        print(
            f"{name:>9} {r['binaries']:>8} {r['front']:>5} {r['paths_s']:>8.4f}s {r['dp_s']:>7.4f}s {r['dp_no_cut_s']:>7.4f}s "
            f"{fmt(r['milp_highs_s']):>10} {fmt(r['milp_cbc_s']):>9} "
            f"{'-' if r['ratio_highs_over_paths'] is None else r['ratio_highs_over_paths']:>11} {same}",
            flush=True,
        )
    grid = run_milp("reference", "highs", args.milp_limit, points=20) if not args.quick else None
    ref = next(r for r in rows if r["instance"] == "reference")
    goal = {
        "reference_exact_s": ref["paths_s"],
        "reference_front": ref["front"],
        "proven_optimal": ref["proven_optimal"],
        "reference_grid20_milp_highs_s": None if grid is None else round(grid["total_s"], 3),
        "reference_grid20_front": None if grid is None else grid["front"],
        "met": ref["paths_s"] <= 10.0 and ref["proven_optimal"],
    }
    print(
        f"goal: exact reference front of {ref['front']} points in {ref['paths_s']:.4f} s, proven optimal "
        f"({'met' if goal['met'] else 'NOT met'}: <= 10 s)"
    )
    if grid is not None:
        print(f"      the MILP grid of 20 deadlines took {grid['total_s']:.2f} s for {grid['front']} points")
    if args.quick:
        return
    out = Path(__file__).resolve().parent / "results" / "planner_scaling.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(
        json.dumps({"schema": "paretrain.benchmark/1", "rows": rows, "goal": goal}, indent=1) + "\n"
    )
    os.replace(tmp, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
