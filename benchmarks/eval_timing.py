"""Evaluation timing in the profile: what ``paretrain.runtime.train.lab_steps._eval_s`` predicts
for a whole evaluation, and what that timing costs, against a whole evaluation timed directly.

The profile times a config's evaluation on the validation set's first ``EVAL_TIMING_EXAMPLES``
examples and scales it to the whole set. Before the timed evaluations it warms up: on the
whole head (``head``, as paretrain did) or on one chunk of it (``chunk``, as it does now).
Both are run side by side in one process, interleaved with a whole evaluation of the set
(``whole``), ``--repeats`` times, on the MNIST-1D job of ``benchmarks/cost_of_knowing.py --size
m`` (a GRU of width 256, 6,000 validation examples), on each local CPU device. Reported: the
median predicted seconds of a whole evaluation, their relative error against the median of the
whole evaluations, and the median seconds the timing itself took (what the profile pays).

    .venv/bin/python benchmarks/eval_timing.py [--repeats 6]

Prints a table and writes ``benchmarks/results/eval_timing.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from paretrain.planner.inputs.space import Config
from paretrain.runtime.train.batches import head
from paretrain.runtime.train.devices import claim
from paretrain.runtime.train.lab_steps import EVAL_TIMING_EXAMPLES, EVAL_TIMINGS
from paretrain.runtime.train.trainer import EVAL_CHUNK, Trainer
from paretrain.runtime.train.workloads.mnist1d import Mnist1D
from paretrain.runtime.workspace import Workspace

RESULTS = ROOT / "benchmarks" / "results" / "eval_timing.json"
#: (how the warm-up reads, the seconds after which no further head is timed)
METHODS = {"head": ("head", 1.0), "chunk": ("chunk", 0.5)}


def timed_eval(t: Trainer, warm: str, enough_s: float) -> tuple[float, float]:
    """(predicted seconds of a whole evaluation, seconds the timing took)."""
    val, share = head(t.val_dataset, EVAL_TIMING_EXAMPLES)
    t0 = time.perf_counter()
    t.evaluate(val=val if warm == "head" else head(val, EVAL_CHUNK)[0])
    timed: list[float] = []
    while len(timed) < EVAL_TIMINGS and sum(timed) < enough_s:
        timed.append(t.evaluate(val=val).seconds)
    return sum(timed) / len(timed) / share, time.perf_counter() - t0


def one_device(device: str, repeats: int) -> list[dict]:
    workload = Mnist1D(samples=60_000, val_fraction=0.1, seed=0, cache_dir=Workspace(ROOT).cache)
    cfg = Config("gru-256", "gru", (("hidden", 256), ("depth", 1), ("optimizer", "adam"), ("lr", 0.001)))
    t = Trainer(workload, cfg, batch_size=64, precision="fp32", device=claim(device), seed=0)
    got: dict[str, list[tuple[float, float]]] = {m: [] for m in (*METHODS, "whole")}
    for _ in range(repeats):
        for name, (warm, enough_s) in METHODS.items():
            for _ in range(3):
                t.step()  # as the profile does: timed steps, then the evaluation
            got[name].append(timed_eval(t, warm, enough_s))
        t.evaluate(val=head(t.val_dataset, EVAL_CHUNK)[0])
        got["whole"].append((t.evaluate().seconds, 0.0))
    whole = statistics.median(s for s, _ in got["whole"])
    return [
        {
            "device": device,
            "method": name,
            "eval_s_p50": round(statistics.median(s for s, _ in got[name]), 4),
            "eval_s_err": round(statistics.median(s for s, _ in got[name]) / whole - 1.0, 4),
            "cost_s_p50": round(statistics.median(c for _, c in got[name]), 4),
            "eval_s": [round(s, 4) for s, _ in got[name]],
        }
        for name in got
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=6)
    args = ap.parse_args()
    rows = [r for d in ("local/cpu-1", "local/cpu-2") for r in one_device(d, args.repeats)]
    print(f"{'device':12s} {'method':6s} {'eval s P50':>10s} {'error':>7s} {'cost s P50':>10s}")
    for r in rows:
        print(
            f"{r['device']:12s} {r['method']:6s} {r['eval_s_p50']:>10.3f} {r['eval_s_err']:>+7.1%} "
            f"{r['cost_s_p50']:>10.3f}"
        )
    RESULTS.write_text(json.dumps({"repeats": args.repeats, "rows": rows}, indent=1) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
