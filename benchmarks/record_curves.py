"""Record real learning curves of the built-in workloads and the digits example (the metric
against samples seen, evaluated along one run each), for the curve model's tests.

Writes ``tests/planner/data/curves.json``: per workload, its target metric, direction, and the
(samples, value) points of a run of the example spec's config at one batch size. Re-run it when a
workload changes: ``python benchmarks/record_curves.py`` (a few minutes on 2 cores).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples" / "custom_workload"))

from paretrain.planner.inputs.space import Config
from paretrain.runtime.train.trainer import Trainer, set_threads
from paretrain.runtime.train.workloads.mnist1d import Mnist1D
from paretrain.runtime.train.workloads.stdlib_lm import StdlibLM

CASES = {
    "mnist1d": dict(
        make=lambda: Mnist1D(samples=8000, seed=0),
        config=Config("gru-64", "gru", (("depth", 1), ("hidden", 64)), lr=0.003),
        batch=64,
        samples=120_000,
        every=6000,
    ),
    "stdlib_lm": dict(
        make=lambda: StdlibLM(max_bytes=400_000, val_windows=128),
        config=Config(
            "gpt-64x2", "gpt", (("context", 64), ("heads", 2), ("layers", 2), ("width", 64)), lr=0.003
        ),
        batch=32,
        samples=48_000,
        every=2400,
    ),
    "digits": dict(
        make=lambda: __import__("digits_workload").make_workload(seed=0),
        config=Config("mlp-64", "mlp", (("depth", 2), ("width", 64)), lr=0.003),
        batch=32,
        samples=40_000,
        every=2000,
    ),
}


def record(case: dict) -> dict:
    wl = case["make"]()
    t = Trainer(wl, case["config"], batch_size=case["batch"])
    points = []
    while t.samples_seen < case["samples"]:
        for _ in t.steps_for(case["every"]):
            pass
        ev = t.evaluate()
        points.append([t.samples_seen, ev.value])
    return {
        "metric": t.metric.name,
        "direction": t.metric.direction,
        "batch": case["batch"],
        "points": points,
    }


def main() -> None:
    set_threads(1)
    out = {name: record(case) for name, case in CASES.items()}
    path = ROOT / "tests" / "planner" / "data" / "curves.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    for name, c in out.items():
        print(
            f"{name:10s} {c['metric']:13s} {len(c['points'])} points: {c['points'][0]} .. {c['points'][-1]}"
        )


if __name__ == "__main__":
    main()
