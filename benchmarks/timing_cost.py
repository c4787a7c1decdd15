"""Step timing's cost against what it gets right: the profile's timed passes over batch sizes and
its timing of an evaluation (``paretrain.runtime.train.lab_steps``), as paretrain does them now
and as it did before, side by side in one process, on the MNIST-1D job of
``benchmarks/cost_of_knowing.py --size m`` (a GRU of width 256, batch sizes 64, 128 and 256,
6,000 validation examples), on each local CPU device.

**Passes.** ``now``: a size's first pass starts with an untimed step, later passes time the step
after a switch, at least 2 steps a size (``MIN_PASS_STEPS``). ``before``: an untimed step at every
switch, at least 3 steps a size. Each is judged by the step-time ratios it measures (128 and 256
against 64: the shape the plan takes from the passes) against a reference of long blocks, 2 s of
steps at each size, three times, interleaved. Reported: the ratios' median absolute error and
the median seconds the passes took.

**Evaluations.** The profile times a config's evaluation on the validation set's first ``EVAL_TIMING_EXAMPLES``
examples and scales it to the whole set. Before the timed evaluations it warms up: on the
whole head (``head``, as paretrain did) or on one chunk of it (``chunk``, as it does now).
Both are run side by side in one process, interleaved with a whole evaluation of the set
(``whole``), ``--repeats`` times. Reported: the median predicted seconds of a whole evaluation,
their relative error against the median of the whole evaluations, and the median seconds the
timing itself took (what the profile pays).

    .venv/bin/python benchmarks/timing_cost.py [--repeats 6]

About 5 minutes. Prints two tables and writes ``benchmarks/results/timing_cost.json``.
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
from paretrain.runtime.train import lab_steps
from paretrain.runtime.train.batches import head
from paretrain.runtime.train.devices import claim
from paretrain.runtime.train.lab_meter import LabMeter
from paretrain.runtime.train.lab_steps import EVAL_TIMING_EXAMPLES, EVAL_TIMINGS
from paretrain.runtime.train.torch_lab import TorchLab
from paretrain.runtime.train.trainer import EVAL_CHUNK, Trainer
from paretrain.runtime.train.workloads.mnist1d import Mnist1D
from paretrain.runtime.workspace import Workspace

RESULTS = ROOT / "benchmarks" / "results" / "timing_cost.json"
BATCHES = (64, 128, 256)
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


def before_passes(trainer: Trainer, meter: LabMeter, steps: int) -> dict[int, list[float]]:
    """The passes as paretrain timed them before: an untimed step at every switch, at least 3
    timed steps a size, the same warm-up and stopping rule."""
    rounds = max(1, min(5, steps // 4))
    passes: dict[int, list[float]] = {b: [] for b in BATCHES}
    warm_until = time.perf_counter() + 0.25  # the same warm-up as ``_interleaved_passes``
    warm = 0
    while warm < 3 or time.perf_counter() < warm_until:
        meter.timed(trainer.step)
        warm += 1
    for r in range(rounds):
        share = steps * (r + 1) // rounds - steps * r // rounds
        seconds = float("inf")
        for b in BATCHES:
            trainer.set_batch_size(b)
            meter.timed(trainer.step)
            timed: list[float] = []
            while len(timed) < share and (len(timed) < 3 or sum(timed) < seconds):
                timed.append(meter.timed(trainer.step))
            seconds = min(seconds, sum(timed))
            passes[b].append(sum(timed) / len(timed))
        if r + 1 >= lab_steps.MIN_PASSES and lab_steps._known(passes):
            break
    return passes


def reference(trainer: Trainer) -> dict[int, float]:
    """Seconds a step at each size: 2 s blocks of steps, three times, interleaved."""
    times: dict[int, list[float]] = {b: [] for b in BATCHES}
    for _ in range(3):
        for b in BATCHES:
            trainer.set_batch_size(b)
            trainer.step()
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < 2.0:
                s0 = time.perf_counter()
                trainer.step()
                times[b].append(time.perf_counter() - s0)
    return {b: statistics.fmean(v) for b, v in times.items()}


def ratios(step_s: dict[int, float]) -> list[float]:
    return [step_s[b] / step_s[BATCHES[0]] for b in BATCHES[1:]]


def passes_rows(device: str, t: Trainer, meter: LabMeter, repeats: int) -> list[dict]:
    """Both ways of timing passes against the reference, ``repeats`` times."""
    errs: dict[str, list[float]] = {"now": [], "before": []}
    cost: dict[str, list[float]] = {"now": [], "before": []}
    for _ in range(repeats):
        truth = ratios(reference(t))
        order = ("now", "before") if len(errs["now"]) % 4 == 0 else ("before", "now")  # alternate
        for name in order:
            t0 = time.perf_counter()
            if name == "now":
                passes, _warm = lab_steps._interleaved_passes(t, meter, BATCHES, 20)
            else:
                passes = before_passes(t, meter, 20)
            cost[name].append(time.perf_counter() - t0)
            got = ratios({b: statistics.fmean(v) for b, v in passes.items()})
            errs[name].extend(abs(g / r - 1.0) for g, r in zip(got, truth, strict=True))
    return [
        {
            "device": device,
            "passes": name,
            "ratio_err_p50": round(statistics.median(errs[name]), 4),
            "ratio_err_max": round(max(errs[name]), 4),
            "cost_s_p50": round(statistics.median(cost[name]), 3),
        }
        for name in errs
    ]


def one_device(device: str, repeats: int) -> tuple[list[dict], list[dict]]:
    workload = Mnist1D(samples=60_000, val_fraction=0.1, seed=0, cache_dir=Workspace(ROOT).cache)
    cfg = Config("gru-256", "gru", (("hidden", 256), ("depth", 1), ("optimizer", "adam"), ("lr", 0.001)))
    t = Trainer(workload, cfg, batch_size=64, precision="fp32", device=claim(device), seed=0)
    lab = TorchLab(workload, prices_usd_per_h={device: 0.0425})
    passes = passes_rows(device, t, lab.meter(device, "timing"), max(3, repeats // 2))
    t.set_batch_size(64)
    got: dict[str, list[tuple[float, float]]] = {m: [] for m in (*METHODS, "whole")}
    for _ in range(repeats):
        for name, (warm, enough_s) in METHODS.items():
            for _ in range(3):
                t.step()  # as the profile does: timed steps, then the evaluation
            got[name].append(timed_eval(t, warm, enough_s))
        t.evaluate(val=head(t.val_dataset, EVAL_CHUNK)[0])
        got["whole"].append((t.evaluate().seconds, 0.0))
    whole = statistics.median(s for s, _ in got["whole"])
    return passes, [
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
    passes: list[dict] = []
    evals: list[dict] = []
    for device in ("local/cpu-1", "local/cpu-2"):
        p, e = one_device(device, args.repeats)
        passes += p
        evals += e
    print(f"{'device':12s} {'passes':6s} {'ratio err P50':>13s} {'max':>7s} {'cost s P50':>10s}")
    for r in passes:
        print(
            f"{r['device']:12s} {r['passes']:6s} {r['ratio_err_p50']:>13.1%} {r['ratio_err_max']:>7.1%} "
            f"{r['cost_s_p50']:>10.3f}"
        )
    print(f"\n{'device':12s} {'warm-up':7s} {'eval s P50':>10s} {'error':>7s} {'cost s P50':>10s}")
    for r in evals:
        print(
            f"{r['device']:12s} {r['method']:7s} {r['eval_s_p50']:>10.3f} {r['eval_s_err']:>+7.1%} "
            f"{r['cost_s_p50']:>10.3f}"
        )
    RESULTS.write_text(
        json.dumps({"repeats": args.repeats, "passes": passes, "evaluations": evals}, indent=1) + "\n"
    )
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
