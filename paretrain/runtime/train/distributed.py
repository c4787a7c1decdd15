"""All-reduce time among local processes, measured through torch's elastic launcher.

``allreduce_seconds`` measures a real gloo all-reduce among ``workers`` processes: the calling
process is rank 0 and hosts the rendezvous, the others are launched by the same elastic agent
(``paretrain.runtime.train.elastic``) that runs a data-parallel stage's helpers, one thread each. The
planner fits its network term to these measurements, so it prices the collectives a stage
really runs.
"""

from __future__ import annotations

import os
import time

import torch
import torch.distributed as dist

from paretrain.runtime.train.elastic import Rendezvous, Settings

__all__ = ["allreduce_seconds", "allreduce_timing", "measure_allreduce", "measure_compute"]

#: iterations of the one-thread compute block timed alone and with every process of the group
#: (about 0.15 s here: long enough that one descheduled moment of a shared machine is averaged)
COMPUTE_ITERS = 240


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


def measure_compute(iters: int = COMPUTE_ITERS) -> float:
    """Seconds of a fixed one-thread compute block (256x256 matrix products): timed alone and
    then in every process of a group at once, their ratio is how much the processes slow each
    other down on this machine (shared cores, memory bandwidth, a busy host). In a group the
    block ends when its slowest process is done, as a data-parallel step does at its all-reduce:
    on a shared machine one process descheduled for a moment holds up the others."""
    a = torch.randn(256, 256)
    b = torch.randn(256, 256)
    a @ b  # warm-up
    if dist.is_initialized():
        dist.barrier()
    t0 = time.perf_counter()
    for _ in range(iters):
        a @ b
    if dist.is_initialized():
        dist.barrier()
    return time.perf_counter() - t0


def allreduce_seconds(workers: int, nbytes: int, repeats: int = 20) -> float:
    """Mean seconds of one all-reduce of ``nbytes`` among ``workers`` processes (this one and
    ``workers - 1`` launched by the elastic agent on this machine)."""
    return allreduce_timing(workers, nbytes, repeats)[0]


def allreduce_timing(workers: int, nbytes: int, repeats: int = 20) -> tuple[float, float, float]:
    """``(seconds, start_s, contention)``: the mean all-reduce (as ``allreduce_seconds``), the
    seconds from launching the helpers to the formed group (``SyncSample.start_s``), and how much
    slower a compute block runs with every process of the group running it at once than alone
    (``SyncSample.contention``: 1 where the processes have cores of their own)."""
    if workers < 2:
        raise ValueError(f"`workers >= 2` must hold to measure an all-reduce, but got {workers}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # like each helper
    try:
        alone = min(measure_compute() for _ in range(2))  # before any helper runs
    finally:
        torch.set_num_threads(threads)
    rdzv = Rendezvous(Settings(timeout_s=120.0, max_restarts=0), run_id=f"allreduce{os.getpid()}")
    try:
        t0 = time.perf_counter()
        rdzv.launch({"kind": "allreduce", "nbytes": nbytes, "repeats": repeats}, workers, threads=1)
        rdzv.form()
        dist.init_process_group(
            "gloo", store=dist.PrefixStore(rdzv.store_prefix, rdzv.store), rank=0, world_size=workers
        )
        start_s = time.perf_counter() - t0
        try:
            seconds = measure_allreduce(nbytes, repeats)
            torch.set_num_threads(1)
            try:
                together = measure_compute()
            finally:
                torch.set_num_threads(threads)
            return seconds, start_s, max(together / alone, 1.0)
        finally:
            dist.destroy_process_group()
    finally:
        rdzv.close()
