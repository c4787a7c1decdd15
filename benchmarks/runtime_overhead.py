"""Runtime overhead per step: ledger, price lookup, budget check and tracking, against the
training step itself, at batch size 32 on one CPU thread (local/cpu-1). Goal: <= 2%.

Two measurements, side by side in one process:
- within a run: the ledger charges each step for the real time since the previous charge
  (the whole loop), and the executor also sums the time spent inside ``Trainer.step``; their
  ratio is the overhead, free of the machine's drift between runs;
- against a bare loop: alternating blocks of a bare ``Trainer.step`` loop and a full run
  (noisier: shared machines drift by several percent between blocks).

    .venv/bin/python benchmarks/runtime_overhead.py [--steps 1500] [--blocks 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from paretrain.planner.errors import BudgetExhausted
from paretrain.planner.inputs.catalog import local_offers
from paretrain.planner.inputs.space import Config
from paretrain.planner.inputs.spec_parse import parse_spec
from paretrain.planner.plan.plan import Candidate, Plan, StagePlan
from paretrain.runtime.money.ledger import read_charges
from paretrain.runtime.run.executor import Executor
from paretrain.runtime.tracking.client import Tracker
from paretrain.runtime.train.devices import claim, local_devices
from paretrain.runtime.train.process_setup import warm_up_torch
from paretrain.runtime.train.trainer import Trainer
from paretrain.runtime.train.workloads import WORKLOADS, load_workload, prepare_data

CONFIG = Config("mlp-256x2", "mlp", (("width", 256), ("depth", 2)), lr=1e-3)
BATCH = 32


def make_plan(steps: int) -> Plan:
    data = {
        "name": "overhead",
        "workload": {"name": "mnist1d", "samples": 10000},
        "configs": [CONFIG.to_dict()],
        "target": {"goal": 0.999, "max_samples": steps * BATCH},
        "budget": {"total_usd": 10.0, "envelopes": {"train": 5.0}},
        "deadline_s": 1e6,
        "hardware": {"allow": ["local/cpu-1"]},
        "runtime": {"eval_every_samples": 100 * BATCH, "checkpoint_every_s": 1e6},
    }
    spec = parse_spec(data, "overhead", WORKLOADS)
    stage = StagePlan(
        0,
        "local/cpu-1",
        "fp32",
        BATCH,
        1,
        steps * BATCH,
        steps,
        CONFIG.lr,
        0.0,
        1.0,
        1e9,
        step_s=0.0017,
        eval_s=0.01,
    )
    cand = Candidate("p1", CONFIG.id, 0.999, 0.0, 1.0, (stage,))
    offers = tuple(o for o in local_offers(local_devices(), spec.hardware) if o.id == "local/cpu-1")
    return Plan("x", "x", spec, (spec.configs[0],), offers, (cand,), "p1", "p1", "p1")


def bare(workload, steps: int) -> float:
    claim("local/cpu-1")
    t = Trainer(workload, CONFIG, batch_size=BATCH)
    for _ in range(20):
        t.step()
    t0 = time.perf_counter()
    for _ in range(steps):
        t.step()
    return (time.perf_counter() - t0) / steps


def executor(plan: Plan, work: Path, i: int, tracked: bool) -> tuple[float, float]:
    tracker = (
        Tracker(f"sqlite:///{work / 'mlflow.db'}", "overhead", work / "spool.jsonl") if tracked else None
    )
    try:
        result = Executor(plan, plan.candidates[0], workdir=work, run_id=f"r{i}", tracker=tracker).run()
    except BudgetExhausted as err:
        result = err.result  # type: ignore[attr-defined]  # it stops at max_samples, as intended
    finally:
        if tracker is not None:
            tracker.close()
    train = [
        c["seconds"]
        for c in read_charges(work / ".paretrain" / "ledger" / f"r{i}.jsonl")
        if c["kind"] == "compute" and c["what"] == "train"
    ]
    loop = sum(train) / len(train)
    inside = result.compute_s / result.compute_steps
    return loop, inside


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--blocks", type=int, default=5)
    args = ap.parse_args()
    warm_up_torch()
    work = Path(tempfile.mkdtemp(prefix="paretrain-overhead-"))
    spec = make_plan(args.steps)
    workload = prepare_data(load_workload(spec.spec.workload, work / ".paretrain" / "cache"))
    rows = []
    for block in range(args.blocks):
        b = bare(workload, args.steps)
        e, inside = executor(spec, work, block, tracked=block % 2 == 0)
        rows.append(
            {
                "block": block,
                "bare_ms": b * 1e3,
                "runtime_ms": e * 1e3,
                "step_in_run_ms": inside * 1e3,
                "overhead_in_run": e / inside - 1,
                "overhead_vs_bare": e / b - 1,
            }
        )
        print(
            f"block {block}: bare {b * 1e3:.3f} ms/step | run: loop {e * 1e3:.3f} ms/step, of which the "
            f"step {inside * 1e3:.3f} ms: overhead {e / inside - 1:+.2%} in the run, {e / b - 1:+.2%} "
            f"against the bare block",
            flush=True,
        )
    med = statistics.median(r["overhead_in_run"] for r in rows)
    med_bare = statistics.median(r["overhead_vs_bare"] for r in rows)
    print(
        f"median overhead: {med:+.2%} within the run, {med_bare:+.2%} against bare blocks "
        f"({'met' if med <= 0.02 else 'NOT met'}: <= 2%)"
    )
    out = ROOT / "benchmarks" / "results" / "runtime_overhead.json"
    out.write_text(
        json.dumps(
            {
                "batch_size": BATCH,
                "threads": 1,
                "config": CONFIG.id,
                "rows": rows,
                "median_overhead": med,
                "median_overhead_vs_bare": med_bare,
                "met": med <= 0.02,
            },
            indent=1,
        )
        + "\n"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
