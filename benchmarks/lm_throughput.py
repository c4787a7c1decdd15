"""Training throughput of the byte-level LM (stdlib_lm) against the batch, on this CPU.

For each model (width, layers, context; heads = width / 32) and thread count, one AdamW
training step (forward, backward, update) is timed at each batch size (sequences of
``context`` bytes per batch) on real windows of the standard-library corpus; throughput =
batch * context / step time, in bytes per second. The gain is the throughput relative to
batch 1 of the same model, measured side by side. Batch sizes are interleaved over
``--passes`` passes; each pass keeps the median step and the fastest pass is reported: other
processes on a shared machine only ever slow a step down, so the fastest pass is the closest
to this machine's own speed. The load average before and after is recorded: with other work
on the cores the 2-thread rows are not to be trusted. About 75 s on a quiet 2-core machine.

    .venv/bin/python benchmarks/lm_throughput.py [--passes 3] [--budget 0.3] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch
from torch.nn import functional as F

from paretrain.runtime.train.process_setup import keep_freed_memory
from paretrain.runtime.train.workloads.gpt import GPT, GPTConfig, adamw
from paretrain.runtime.train.workloads.stdlib_corpus import TrainWindows, load_corpus

MODELS = ((64, 2, 64), (64, 2, 128), (128, 2, 64), (128, 4, 128))  # (width, layers, context)
BATCHES = (1, 2, 4, 8, 16, 32, 64)
THREADS = (2, 1)


def parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def time_steps(
    model: GPT, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, budget_s: float, device: str
) -> float:
    """Median seconds of one training step: at least 3 steps, then until ``budget_s`` passes."""
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 3 or time.perf_counter() - start < budget_s:
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(
    width: int,
    layers: int,
    context: int,
    threads: int,
    windows: TrainWindows,
    passes: int,
    budget_s: float,
    device: str,
) -> list[dict]:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = GPT(GPTConfig(layers=layers, width=width, heads=max(1, width // 32), context=context)).to(device)
    opt = adamw(model, 1e-3)
    batches = {}
    for b in BATCHES:
        xs, ys = zip(*(windows[i] for i in range(b)), strict=False)
        batches[b] = (torch.stack(xs).to(device), torch.stack(ys).to(device))
    for b in BATCHES:  # warm-up: first steps allocate and pick kernels
        time_steps(model, opt, *batches[b], 0.0, device)
    steps: dict[int, list[float]] = {b: [] for b in BATCHES}
    for _ in range(passes):
        for b in BATCHES:
            steps[b].append(time_steps(model, opt, *batches[b], budget_s, device))
    rows = []
    for b in BATCHES:
        step_s = min(steps[b])
        rows.append(
            {
                "width": width,
                "layers": layers,
                "context": context,
                "threads": threads,
                "params": parameters(model),
                "batch": b,
                "step_s": round(step_s, 6),
                "bytes_per_s": round(b * context / step_s, 1),
            }
        )
    base = rows[0]["bytes_per_s"]
    for r in rows:
        r["gain"] = round(r["bytes_per_s"] / base, 3)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--budget", type=float, default=0.3, help="seconds of steps per batch and pass")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "lm_throughput.json")
    args = ap.parse_args(argv)
    keep_freed_memory()
    t0 = time.perf_counter()
    load_before = os.getloadavg()
    corpus = load_corpus(max_bytes=2_000_000)
    rows: list[dict] = []
    threads = THREADS if args.device == "cpu" else (torch.get_num_threads(),)
    for n in threads:
        for width, layers, context in MODELS:
            windows = TrainWindows(corpus.train, context, seed=0)
            rows += measure(width, layers, context, n, windows, args.passes, args.budget, args.device)
    header = f"{'threads':>7} {'width':>5} {'layers':>6} {'ctx':>4} {'params':>8} " + " ".join(
        f"{'b=' + str(b):>8}" for b in BATCHES
    )
    print("training bytes/s by sequences per batch (gain over batch 1 in brackets)")
    print(header)
    for n in threads:
        for width, layers, context in MODELS:
            sel = [
                r
                for r in rows
                if (r["threads"], r["width"], r["layers"], r["context"]) == (n, width, layers, context)
            ]
            print(
                f"{n:>7} {width:>5} {layers:>6} {context:>4} {sel[0]['params']:>8} "
                + " ".join(f"{r['bytes_per_s'] / 1e3:>5.1f}k" + f"{'':>2}" for r in sel)
            )
            print(f"{'':>34}" + " ".join(f"{'(' + format(r['gain'], '.1f') + 'x)':>8}" for r in sel))
    elapsed = time.perf_counter() - t0
    print(f"{elapsed:.0f} s; load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "schema": "paretrain.benchmark/1",
                "name": "lm_throughput",
                "device": args.device,
                "machine": platform.processor() or platform.machine(),
                "torch": torch.__version__,
                "python": platform.python_version(),
                "corpus_fingerprint": corpus.fingerprint,
                "load_before": [round(v, 2) for v in load_before],
                "load_after": [round(v, 2) for v in os.getloadavg()],
                "passes": args.passes,
                "budget_s": args.budget,
                "seconds": round(elapsed, 1),
                "rows": rows,
            },
            indent=1,
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
