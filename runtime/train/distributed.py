"""All-reduce time among local processes, measured through torch's elastic launcher.

``allreduce_seconds`` measures a real gloo all-reduce among ``workers`` processes: the calling
process is rank 0 and hosts the rendezvous, the others are launched by the same elastic agent
(``runtime.train.elastic``) that runs a data-parallel stage's helpers, one thread each. The
planner fits its network term to these measurements, so it prices the collectives a stage
really runs.
"""

from __future__ import annotations

import os
import time

import torch
import torch.distributed as dist

from runtime.train.elastic import Rendezvous, Settings

__all__ = ["allreduce_seconds", "allreduce_timing", "measure_allreduce"]


def measure_allreduce(nbytes: int, repeats: int) -> float:
    """Mean seconds of one all-reduce of ``nbytes`` in the current default group."""
    t = torch.ones(max(1, nbytes // 4), dtype=torch.float32)
    for _ in range(3):  # warm-up: connections and buffers
        dist.all_reduce(t)
    dist.barrier()
    t0 = time.perf_counter()
    for _ in range(repeats):
        dist.all_reduce(t)
    return (time.perf_counter() - t0) / repeats


def allreduce_seconds(workers: int, nbytes: int, repeats: int = 20) -> float:
    """Mean seconds of one all-reduce of ``nbytes`` among ``workers`` processes (this one and
    ``workers - 1`` launched by the elastic agent on this machine)."""
    return allreduce_timing(workers, nbytes, repeats)[0]


def allreduce_timing(workers: int, nbytes: int, repeats: int = 20) -> tuple[float, float]:
    """``(seconds, start_s)``: the mean all-reduce (as ``allreduce_seconds``) and the seconds from
    launching the helpers to the formed group (``planner.measurements.SyncSample.start_s``)."""
    if workers < 2:
        raise ValueError(f"`workers >= 2` must hold to measure an all-reduce, but got {workers}")
    rdzv = Rendezvous(Settings(timeout_s=120.0, max_restarts=0), run_id=f"allreduce{os.getpid()}")
    try:
        t0 = time.perf_counter()
        rdzv.launch({"kind": "allreduce", "nbytes": nbytes, "repeats": repeats}, workers, threads=1)
        rdzv.form()
        dist.init_process_group("gloo", store=dist.PrefixStore(rdzv.store_prefix, rdzv.store), rank=0,
                                world_size=workers)
        start_s = time.perf_counter() - t0
        try:
            return measure_allreduce(nbytes, repeats), start_s
        finally:
            dist.destroy_process_group()
    finally:
        rdzv.close()
