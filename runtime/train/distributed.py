"""Data-parallel plumbing on local CPUs: torch.distributed with the gloo backend.

``allreduce_seconds`` measures a real all-reduce among ``workers`` local processes (one
thread each), which is what the planner fits its network term to.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

__all__ = ["allreduce_seconds"]


def _worker(rank: int, workers: int, init_file: str, nbytes: int, repeats: int, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=workers)
    try:
        t = torch.ones(max(1, nbytes // 4), dtype=torch.float32)
        for _ in range(3):  # warm-up: connections and buffers
            dist.all_reduce(t)
        dist.barrier()
        t0 = time.perf_counter()
        for _ in range(repeats):
            dist.all_reduce(t)
        dt = (time.perf_counter() - t0) / repeats
        if rank == 0:
            Path(out).write_text(repr(dt))
    finally:
        dist.destroy_process_group()


def allreduce_seconds(workers: int, nbytes: int, repeats: int = 20) -> float:
    """Mean seconds of one all-reduce of ``nbytes`` among ``workers`` spawned processes."""
    with tempfile.TemporaryDirectory(prefix="paretrain-gloo-") as tmp:
        init_file = os.path.join(tmp, "init")
        out = os.path.join(tmp, "out")
        mp.start_processes(_worker, args=(workers, init_file, nbytes, repeats, out), nprocs=workers,
                           join=True, start_method="spawn")
        return float(Path(out).read_text())
