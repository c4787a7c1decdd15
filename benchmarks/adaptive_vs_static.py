"""Adaptive runtime against static batch sizes and the hindsight oracle, under three traces.

MNIST-1D (40,000 samples), a 1-D CNN (128 channels, Adam at a small learning rate, 2.5e-4, so
that accuracy climbs steadily instead of jumping to its plateau) trained to 96% validation
accuracy on this machine's CPU (local/cpu-1 and local/cpu-2, real clocks): a static run lasts a minute
or more on one thread, so drift has time to show. Traces, from 30% of the plan's predicted time:
``flat``; ``price2x`` (both CPU offers cost twice as much); ``slow1.5x`` (steps on
local/cpu-1 take 1.5 times as long). For each trace and seed: the adaptive run of the plan's
cheapest candidate (replanning on, ``prefer: cost``), static runs at every planner batch size
on that candidate's first offer (replanning off), and the hindsight oracle (the cheapest
static run under that trace). On one offer cost is proportional to time, so the cheapest
static batch is also the fastest. Reports time to target, cost and overruns (cost over the
budget or time over the deadline).

Goals: zero overruns; adaptive cost within 10% of the oracle; adaptive time to target no worse
than the best static batch size.

    .venv/bin/python benchmarks/adaptive_vs_static.py [--seeds 1] [--quick] [--traces slow1.5x ...] [--adaptive-last]
        [--out benchmarks/results/adaptive_vs_static.json]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from paretrain.planner.inputs.spec_parse import parse_spec
from paretrain.planner.plan.plan import Candidate, Plan
from paretrain.runtime.pipeline import Workspace, plan_spec
from paretrain.runtime.run.executor import Executor, RunStopped
from paretrain.runtime.train.workloads import WORKLOADS

SPEC = {
    "name": "adaptive-vs-static",
    "workload": {"name": "mnist1d", "samples": 40000, "seed": 0},
    "configs": [
        {"id": "cnn-128x3", "family": "cnn", "channels": 128, "depth": 3, "kernel": 5, "lr": 0.00025}
    ],
    "target": {"goal": 0.96, "levels": [0.96], "max_samples": 1500000},
    "budget": {"total_usd": 1.0, "envelopes": {"profile": 0.05, "search": 0.0, "train": 0.5}},
    "deadline_s": 3600,
    "hardware": {"allow": ["local/cpu-1", "local/cpu-2"]},
    "planner": {"stages": 3, "batch_sizes": [64, 128, 256], "convergence_batch_sizes": [64, 128, 256]},
    "runtime": {"eval_every_samples": 4000, "checkpoint_every_s": 30, "window": 6, "cooldown_s": 10},
}


def with_runtime(plan: Plan, **changes) -> Plan:
    return replace(plan, spec=replace(plan.spec, runtime=replace(plan.spec.runtime, **changes)))


def with_budget(plan: Plan, train: float) -> Plan:
    b = plan.spec.budget
    budget = replace(b, train_usd=train, total_usd=max(b.total_usd, b.profile_usd + b.search_usd + train))
    return replace(plan, spec=replace(plan.spec, budget=budget))


def static(plan: Plan, knee: Candidate, batch: int) -> Candidate:
    """The candidate's first offer at one fixed batch size for every stage."""
    first = knee.stages[0]
    step = plan.step_model(first.hardware, knee.config_id, first.precision, 1).model().predict(batch)
    stages = tuple(
        replace(
            s,
            hardware=first.hardware,
            batch_size=batch,
            step_s=step,
            samples=s.samples // batch * batch or batch,
            steps=max(1, s.samples // batch),
        )
        for s in knee.stages
    )
    return Candidate(f"static-b{batch}", knee.config_id, knee.level, knee.cost_usd, knee.wall_s, stages)


def run(plan: Plan, cand: Candidate, work: Path, run_id: str) -> dict:
    try:
        r = Executor(plan, cand, workdir=work, run_id=run_id).run()
    except RunStopped as err:
        r = err.result
    return {
        "status": r.status,
        "cost_usd": r.cost_usd,
        "wall_s": r.wall_s,
        "accuracy": r.level,
        "replans": sum(1 for e in r.events if e["event"] == "replan"),
        "pauses": sum(1 for e in r.events if e["event"] == "pause"),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="static runs at 64 and 256 only")
    ap.add_argument(
        "--traces",
        nargs="+",
        choices=["flat", "price2x", "slow1.5x"],
        default=["flat", "price2x", "slow1.5x"],
    )
    ap.add_argument(
        "--adaptive-last",
        action="store_true",
        help="run the adaptive run after the static ones (all run in this one process)",
    )
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "adaptive_vs_static.json"))
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="paretrain-adaptive-"))
    spec = parse_spec(SPEC, "adaptive_vs_static", WORKLOADS)
    plan, _, _ = plan_spec(spec, Workspace(work))
    knee = plan.candidate("cheapest")
    budget = knee.cost_usd * 2.5
    plan = with_budget(plan, budget)
    print(
        f"cheapest {knee.id}: "
        + " -> ".join(f"{s.hardware} b{s.batch_size}" for s in knee.stages)
        + f"; predicted ${knee.cost_usd:.6f}, {knee.wall_s:.1f} s; budget ${budget:.6f}",
        flush=True,
    )
    at = 0.3 * knee.wall_s
    traces = {
        "flat": [],
        "price2x": [{"at_s": at, "kind": "price", "factor": 2.0}],
        "slow1.5x": [{"at_s": at, "kind": "slowdown", "factor": 1.5, "hardware": "local/cpu-1"}],
    }
    traces = {k: v for k, v in traces.items() if k in args.traces}
    batches = [64, 256] if args.quick else list(spec.planner.batch_sizes)
    rows = []
    for seed in range(args.seeds):
        for name, events in traces.items():
            base = replace(plan, spec=replace(plan.spec, workload=replace(plan.spec.workload, seed=seed)))
            results = {}
            if not args.adaptive_last:
                results["adaptive"] = run(
                    with_runtime(base, events=events, adapt=True), knee, work, f"{name}-s{seed}-adaptive"
                )
            for b in batches:
                results[f"static-b{b}"] = run(
                    with_runtime(base, events=events, adapt=False),
                    static(plan, knee, b),
                    work,
                    f"{name}-s{seed}-b{b}",
                )
            if args.adaptive_last:
                results["adaptive"] = run(
                    with_runtime(base, events=events, adapt=True), knee, work, f"{name}-s{seed}-adaptive"
                )
            reached = {k: v for k, v in results.items() if k.startswith("static") and v["status"] == "target"}
            oracle = min(reached.items(), key=lambda kv: kv[1]["cost_usd"]) if reached else None
            best_time = min((v["wall_s"] for v in reached.values()), default=math.inf)
            for k, v in results.items():
                over = v["cost_usd"] > budget * (1 + 1e-12) or v["wall_s"] > spec.deadline_s
                rows.append({"trace": name, "seed": seed, "runner": k, **v, "overrun": over})
                print(
                    f"{name:>9} s{seed} {k:>12}: {v['status']:>7} ${v['cost_usd']:.6f} {v['wall_s']:7.1f} s "
                    f"acc {v['accuracy']:.3f} replans {v['replans']} pauses {v['pauses']}"
                    f"{' OVERRUN' if over else ''}",
                    flush=True,
                )
            a = results["adaptive"]
            hit = a["status"] == "target"  # a run that missed the target is not cheaper, it failed
            rows.append(
                {
                    "trace": name,
                    "seed": seed,
                    "runner": "summary",
                    "adaptive_reached": hit,
                    "oracle": oracle[0] if oracle else None,
                    "cost_vs_oracle": a["cost_usd"] / oracle[1]["cost_usd"] - 1 if oracle and hit else None,
                    "time_vs_best_static": a["wall_s"] / best_time - 1 if reached and hit else None,
                }
            )
            if oracle and hit:
                print(
                    f"{name:>9} s{seed}: oracle {oracle[0]} ${oracle[1]['cost_usd']:.6f}; adaptive cost "
                    f"{rows[-1]['cost_vs_oracle']:+.1%} vs oracle, time {rows[-1]['time_vs_best_static']:+.1%} "
                    "vs the best static batch",
                    flush=True,
                )
            elif not hit:
                print(f"{name:>9} s{seed}: the adaptive run MISSED the target ({a['status']})", flush=True)
    summary = [r for r in rows if r["runner"] == "summary"]
    overruns = sum(1 for r in rows if r.get("overrun"))
    missed = sum(1 for r in summary if not r["adaptive_reached"])
    costs = [r["cost_vs_oracle"] for r in summary if r["cost_vs_oracle"] is not None]
    times = [r["time_vs_best_static"] for r in summary if r["time_vs_best_static"] is not None]
    med_cost = statistics.median(costs) if costs else None
    med_time = statistics.median(times) if times else None
    per_trace = {
        t: {
            "median_cost_vs_oracle": statistics.median(v)
            if (
                v := [
                    r["cost_vs_oracle"]
                    for r in summary
                    if r["trace"] == t and r["cost_vs_oracle"] is not None
                ]
            )
            else None,
            "median_time_vs_best_static": statistics.median(w)
            if (
                w := [
                    r["time_vs_best_static"]
                    for r in summary
                    if r["trace"] == t and r["time_vs_best_static"] is not None
                ]
            )
            else None,
        }
        for t in traces
    }
    for t, v in per_trace.items():
        print(
            f"{t:>9}: adaptive cost vs oracle (median over seeds) {_pct(v['median_cost_vs_oracle'])}, time vs the "
            f"best static batch {_pct(v['median_time_vs_best_static'])}"
        )
    print(
        f"overruns {overruns}; adaptive runs that missed the target {missed}; adaptive cost vs oracle (median) "
        f"{_pct(med_cost)}, worst {_pct(max(costs) if costs else None)}; adaptive time vs best static (median) "
        f"{_pct(med_time)}, worst {_pct(max(times) if times else None)}"
    )
    out = Path(args.out)
    out.write_text(
        json.dumps(
            {
                "budget_usd": budget,
                "knee": knee.id,
                "rows": rows,
                "overruns": overruns,
                "adaptive_missed_target": missed,
                "per_trace": per_trace,
                "median_cost_vs_oracle": med_cost,
                "median_time_vs_best_static": med_time,
            },
            indent=1,
        )
        + "\n"
    )
    print(f"wrote {out}")


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:+.1%}"


if __name__ == "__main__":
    main()
