"""Data-parallel training on local CPUs: one process per worker, gradients averaged by gloo.

A stage planned with ``workers: n`` on a local offer runs on ``n`` processes of the offer's
threads each (the planner allows it only where ``n`` times the threads fit the machine's
cores). The executor's process is rank 0 and keeps everything that touches money and files:
meter, ledger, checkpoints, evaluation, tracking. Ranks 1..n-1 are helper processes holding a
replica of the model and optimizer; they follow rank 0's commands, one broadcast each:

- ``STEP``: every rank draws the same global batch from the same seeded stream and trains on
  its equal share of it (``idx[rank::n]``); one all-reduce averages the gradients and the
  shares' losses; every rank applies the same optimizer step, so the replicas stay identical
  (the math of one process on the whole batch, up to float summation order);
- ``BATCH``: a new global batch size and its learning-rate warm-up;
- ``STATE``: rank 0 loaded a checkpoint (resume, rollback); its state is broadcast;
- ``STOP``: leave the process group and exit.

A helper also exits when its parent process is gone, so a ``kill -9`` of a run leaves no
orphans. This is torch.distributed with the gloo backend, as ``torchrun`` would set it up,
without a launcher: the run's process is already running when a stage asks for workers.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import threading
import time
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from planner.space import Config
from runtime.train.trainer import Trainer, set_threads

__all__ = ["ParallelTrainer"]

STOP, STEP, BATCH, STATE = 0, 1, 2, 3
#: Collectives wait this long: a helper outlives a long pause of rank 0 (a price peak waited
#: out); a dead rank 0 is noticed by the parent watch instead.
TIMEOUT = timedelta(days=7)
#: Seconds a helper may take to import torch, load the data and build its replica.
START_TIMEOUT_S = 120.0


class _Replica(Trainer):
    """A trainer that trains on its rank's share of each global batch and averages gradients."""

    rank: int = 0
    world: int = 1

    def _shard(self, idx: torch.Tensor) -> torch.Tensor:
        return idx[self.rank::self.world]

    def _next_batch(self) -> Any:
        return self.stream.next(self.batch_size, shard=self._shard)

    def _reduce(self, loss: torch.Tensor) -> float:
        params = [p for p in self.model.parameters()]
        for p in params:
            if p.grad is None:  # a parameter this batch did not reach still takes part
                p.grad = torch.zeros_like(p)
        flat = torch.cat([p.grad.reshape(-1) for p in params] + [loss.float().reshape(1)])
        dist.all_reduce(flat)
        flat /= self.world
        at = 0
        for p in params:
            n = p.numel()
            p.grad.copy_(flat[at:at + n].view_as(p.grad))
            at += n
        return float(flat[-1])


class ParallelTrainer(_Replica):
    """Rank 0 of ``workers`` data-parallel processes; a drop-in ``Trainer``. ``close()`` ends
    the helpers (the executor does it when a stage needs another worker count, and at the end)."""

    def __init__(self, workload: Any, config: Config, *, workers: int, threads: int,
                 batch_size: int = 32, precision: str = "fp32", seed: int = 0, warmup_steps: int = 0,
                 metric: Any = None) -> None:
        if workers < 2:
            raise ValueError(f"`workers >= 2` must hold for a ParallelTrainer, but got {workers}")
        if batch_size % workers:
            raise ValueError(f"the global batch {batch_size} must split evenly among {workers} workers")
        self.world, self.rank, self._live = workers, 0, False
        super().__init__(workload, config, batch_size=batch_size, precision=precision, device="cpu",
                         seed=seed, warmup_steps=warmup_steps, metric=metric)
        self._dir = tempfile.mkdtemp(prefix="paretrain-dp-")
        init = os.path.join(self._dir, "rendezvous")
        ctx = mp.get_context("spawn")
        ready = [ctx.Event() for _ in range(1, workers)]
        self._procs = [ctx.Process(target=_helper, daemon=True, name=f"paretrain-dp-{rank}",
                                   args=(rank, workers, init, workload, config, precision, seed, batch_size,
                                         warmup_steps, threads, os.getpid(), ready[rank - 1]))
                       for rank in range(1, workers)]
        for p in self._procs:
            p.start()
        # A helper that fails while starting (imports, data, model) would leave the rendezvous
        # waiting for days: wait for each to be ready, watching that it is still alive.
        deadline = time.monotonic() + START_TIMEOUT_S
        for p, ev in zip(self._procs, ready):
            while not ev.wait(0.1):
                if not p.is_alive() or time.monotonic() > deadline:
                    self.close()
                    raise RuntimeError(f"data-parallel worker {p.name} did not start (exit code {p.exitcode}); "
                                       "run with one worker (planner.max_workers: 1) to go on")
        dist.init_process_group("gloo", init_method=f"file://{init}", rank=0, world_size=workers,
                                timeout=TIMEOUT)
        self._live = True
        self._ctrl = torch.zeros(3, dtype=torch.int64)

    def _command(self, op: int, a: int = 0, b: int = 0) -> None:
        if self._live:
            self._ctrl[0], self._ctrl[1], self._ctrl[2] = op, a, b
            dist.broadcast(self._ctrl, 0)

    def step(self) -> float:
        self._command(STEP)
        return super().step()

    def set_batch_size(self, batch_size: int, warmup_steps: int = 0) -> None:
        if batch_size % self.world:
            raise ValueError(f"the global batch {batch_size} must split evenly among {self.world} workers")
        super().set_batch_size(batch_size, warmup_steps)
        self._command(BATCH, batch_size, warmup_steps)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if self._live:
            self._command(STATE)
            buf = io.BytesIO()
            torch.save(self.state_dict(), buf)
            data = torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8)
            dist.broadcast(torch.tensor([data.numel()], dtype=torch.int64), 0)
            dist.broadcast(data, 0)

    def close(self) -> None:
        """Stop the helpers and leave the process group (idempotent)."""
        if self._live:
            self._live = False
            try:
                self._ctrl[0] = STOP
                dist.broadcast(self._ctrl, 0)
            finally:
                dist.destroy_process_group()
        for p in getattr(self, "_procs", []):
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
        shutil.rmtree(getattr(self, "_dir", ""), ignore_errors=True)

    def __del__(self) -> None:  # a forgotten close() must not leave helpers behind
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown: nothing left to report to
            pass


def _watch_parent(parent: int) -> None:
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def _helper(rank: int, world: int, init: str, workload: Any, config: Config, precision: str, seed: int,
            batch_size: int, warmup_steps: int, threads: int, parent: int, ready: Any) -> None:
    _watch_parent(parent)
    set_threads(threads)
    tr = _Replica(workload, config, batch_size=batch_size, precision=precision, device="cpu", seed=seed,
                  warmup_steps=warmup_steps)
    tr.rank, tr.world = rank, world
    ready.set()
    dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=world, timeout=TIMEOUT)
    try:
        ctrl = torch.zeros(3, dtype=torch.int64)
        while True:
            dist.broadcast(ctrl, 0)
            op = int(ctrl[0])
            if op == STOP:
                break
            if op == STEP:
                tr.step()
            elif op == BATCH:
                tr.set_batch_size(int(ctrl[1]), int(ctrl[2]))
            elif op == STATE:
                size = torch.zeros(1, dtype=torch.int64)
                dist.broadcast(size, 0)
                data = torch.empty(int(size[0]), dtype=torch.uint8)
                dist.broadcast(data, 0)
                tr.load_state_dict(torch.load(io.BytesIO(data.numpy().tobytes()), weights_only=True))
    finally:
        dist.destroy_process_group()
