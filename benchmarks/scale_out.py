"""Scaling out on this machine: data-parallel step time with 1 and 2 processes through torch's
elastic launcher, and search trials per hour with several workers on one storage.

Each half is a self-contained ``bench_*`` function that returns its record; ``main`` runs the
ones asked for (all by default) and writes each under its own key of
``benchmarks/results/scale_out.json``, keeping the other keys as they are.

``bench_data_parallel``: the same global batch trained by one process (``Trainer``) and by two
(``ParallelTrainer``: this process is rank 0, the elastic agent launches rank 1), one thread
each, in alternating blocks in one run so that the machine's drift cancels in the ratio. It
also records the launch-to-first-step time (the agent, the helper's imports and replica, the
rendezvous), the all-reduce of the model's gradients measured through the same launcher (what
the planner's network term is fitted to), and what two independent one-thread processes get
from this machine (``parallel_capacity``: on a shared 2-vCPU machine often far from 2), which
bounds the ratio.

``bench_search`` (``benchmarks/_search_scale.py``): trials per hour of ``paretrain search
--workers N`` with N = 1, 2 and 4 on one study in a PostgreSQL server the benchmark starts
(initdb + pg_ctl on a loopback port), from the first trial's start to the last one's end and
over the command's wall time.

    .venv/bin/python benchmarks/scale_out.py [--only data_parallel] [--steps 20] [--blocks 7]
    .venv/bin/python benchmarks/scale_out.py --only search [--search-trials 12] [--search-repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results" / "scale_out.json"

from benchmarks._search_scale import bench_search, print_search


def update_results(key: str, record: dict[str, Any], path: Path = RESULTS) -> None:
    """Write ``record`` under ``key`` of the results file, keeping its other keys."""
    data = json.loads(path.read_text()) if path.exists() else {}
    data[key] = record
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


_MATMULS = (
    "import sys, time, torch; torch.set_num_threads(1); a = torch.randn(512, 512); t0 = time.perf_counter()\n"
    "for _ in range(300): a @ a\n"
    "print(time.perf_counter() - t0)"
)


def parallel_capacity() -> float:
    """What this machine gives two independent one-thread processes, in single processes'
    worth: 2.0 on two free cores, about 1.0 where two vCPUs share one core's time."""
    import subprocess

    def run(n: int) -> float:
        procs = [
            subprocess.Popen([sys.executable, "-c", _MATMULS], stdout=subprocess.PIPE, text=True)
            for _ in range(n)
        ]
        return max(float(p.communicate()[0]) for p in procs)

    solo = run(1)
    return 2.0 * solo / run(2)


def bench_data_parallel(
    steps: int = 20, blocks: int = 7, batch: int = 1024, width: int = 512
) -> dict[str, Any]:
    """Step time of one process against two through the elastic launcher (see the module doc)."""
    from paretrain.planner.inputs.space import Config
    from paretrain.planner.inputs.spec import WorkloadSpec
    from paretrain.runtime.train.distributed import allreduce_seconds
    from paretrain.runtime.train.parallel import ParallelTrainer
    from paretrain.runtime.train.process_setup import set_threads, warm_up_torch
    from paretrain.runtime.train.trainer import Trainer
    from paretrain.runtime.train.workloads.mnist1d import Mnist1D

    set_threads(1)
    warm_up_torch()
    source = WorkloadSpec(name="mnist1d", samples=8000, seed=0)
    work = Mnist1D(samples=source.samples, seed=0)
    config = Config(f"mlp-{width}x3", "mlp", (("depth", 3), ("width", width)), lr=1e-3)
    one = Trainer(work, config, batch_size=batch, seed=1)
    two = ParallelTrainer(work, config, workers=2, threads=1, batch_size=batch, seed=1, source=source)
    try:
        t0 = time.perf_counter()
        two.step()  # launch, rendezvous, state broadcast, first step
        startup_s = time.perf_counter() - t0
        one.step()
        times: dict[str, list[float]] = {"1": [], "2": []}
        for _ in range(blocks):
            for name, tr in (("1", one), ("2", two)):
                t0 = time.perf_counter()
                for _ in range(steps):
                    tr.step()
                times[name].append((time.perf_counter() - t0) / steps)
    finally:
        two.close()
    nbytes = 4 * one.parameter_count()
    reduce_s = allreduce_seconds(2, nbytes)
    capacity = parallel_capacity()
    s1, s2 = statistics.median(times["1"]), statistics.median(times["2"])
    return {
        "model": config.id,
        "parameters": one.parameter_count(),
        "global_batch": batch,
        "threads_per_process": 1,
        "steps_per_block": steps,
        "blocks": blocks,
        "cpus": os.cpu_count(),
        "step_s_1_process": s1,
        "step_s_2_processes": s2,
        "speedup_2_over_1": s1 / s2,
        "efficiency_2": s1 / s2 / 2.0,
        "blocks_s_1": times["1"],
        "blocks_s_2": times["2"],
        "launch_to_first_step_s": startup_s,
        "allreduce_s_gradients": reduce_s,
        "allreduce_share_of_step_2": reduce_s / s2,
        "load_average_1m": os.getloadavg()[0],
        "machine_parallel_capacity": capacity,
        "speedup_share_of_capacity": s1 / s2 / capacity,
    }


def _print_data_parallel(r: dict[str, Any]) -> None:
    print(
        f"data parallel, {r['model']} ({r['parameters']} parameters), global batch {r['global_batch']}, "
        f"1 thread per process, {r['cpus']} CPUs"
    )
    print(f"  {'processes':<10} {'step_s':>10}")
    print(f"  {'1':<10} {r['step_s_1_process']:>10.5f}")
    print(f"  {'2':<10} {r['step_s_2_processes']:>10.5f}")
    print(
        f"  speedup 2/1: {r['speedup_2_over_1']:.2f}x (efficiency {r['efficiency_2']:.0%}); launch to first "
        f"step {r['launch_to_first_step_s']:.1f} s; gradient all-reduce {r['allreduce_s_gradients'] * 1e3:.2f} ms "
        f"({r['allreduce_share_of_step_2']:.0%} of a 2-process step)"
    )
    print(
        f"  this machine gives two independent one-thread processes {r['machine_parallel_capacity']:.2f}x one "
        f"(load {r['load_average_1m']:.1f}): the launcher's 2 processes reach "
        f"{r['speedup_share_of_capacity']:.0%} of that"
    )


#: name -> (bench function, table printer); each half registers its own entry.
BENCHES: dict[str, tuple[Callable[..., dict[str, Any]], Callable[[dict[str, Any]], None]]] = {
    "data_parallel": (bench_data_parallel, _print_data_parallel),
    "search": (bench_search, print_search),
}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", choices=sorted(BENCHES), action="append", help="run only these halves")
    p.add_argument("--steps", type=int, default=20, help="data parallel: steps per block")
    p.add_argument("--blocks", type=int, default=7, help="data parallel: alternating blocks")
    p.add_argument("--search-trials", type=int, default=12, help="search: trials per run")
    p.add_argument("--search-repeats", type=int, default=3, help="search: rounds over 1, 2, 4 workers")
    args = p.parse_args(argv)
    kwargs = {
        "data_parallel": {"steps": args.steps, "blocks": args.blocks},
        "search": {"trials": args.search_trials, "repeats": args.search_repeats},
    }
    for name in args.only or list(BENCHES):
        bench, show = BENCHES[name]
        record = bench(**kwargs.get(name, {}))
        update_results(name, record)
        show(record)


if __name__ == "__main__":
    main()
