"""Data-parallel training: rank 0 is the run's own process, the other ranks run under torch's
elastic launcher; gradients averaged by gloo.

A stage planned with ``workers: n`` on a local offer runs on ``n`` processes of the offer's
threads each. The executor's process is rank 0 and keeps everything that touches money and
files: meter, ledger, checkpoints, evaluation, tracking. Ranks 1..n-1 are helpers that torch's
elastic agent launches (``paretrain.runtime.train.elastic``: the run hosts the c10d rendezvous store; the
agent restarts the helpers when one dies) and that hold a replica of the model and optimizer
(``paretrain.runtime.train.helper``). They follow rank 0's commands, one broadcast each on a control
group that waits as long as rank 0 may be away (an evaluation, a price peak waited out):

- ``STEP``: every rank draws the same global batch from the same seeded stream and trains on
  its equal share of it (``idx[rank::n]``); one all-reduce averages the gradients and the
  shares' losses; every rank applies the same optimizer step, so the replicas stay identical
  (the math of one process on the whole batch, up to float summation order);
- ``BATCH``: a new global batch size and its learning-rate warm-up;
- ``STATE``: rank 0 loaded a checkpoint (resume, rollback); its state is broadcast;
- ``STOP``: leave the process group and exit.

The group forms lazily, at the first step (so the run's meter charges the rendezvous as time
held at the stage's scale; ``pending_connect_s`` bounds it for the budget guard), and after
forming, rank 0 broadcasts its whole state. Collectives of the training group have a finite
timeout (``PARETRAIN_COLLECTIVE_TIMEOUT_S``); a failed one raises ``WorkerLost``: the group is
dropped, the executor rolls back to its last checkpoint, and the next step forms the next
generation from the helpers the agent restarted. ``GroupUnavailable`` means it cannot form.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from paretrain.planner.inputs.space import Config
from paretrain.runtime.train.elastic import GroupUnavailable, Rendezvous, Settings, WorkerLost
from paretrain.runtime.train.trainer import Trainer

__all__ = ["GroupUnavailable", "ParallelTrainer", "WorkerLost"]

STOP, STEP, BATCH, STATE = 0, 1, 2, 3
#: The control group waits this long for rank 0's next command.
CONTROL_TIMEOUT = timedelta(days=7)


class Replica(Trainer):
    """A trainer that trains on its rank's share of each global batch and averages gradients."""

    rank: int = 0
    world: int = 1

    def _shard(self, idx: torch.Tensor) -> torch.Tensor:
        return idx[self.rank :: self.world]

    def _next_batch(self) -> Any:
        return self.stream.next(self.batch_size, shard=self._shard)

    def _reduce(self, loss: torch.Tensor) -> float:
        grads = [_grad(p) for p in self.model.parameters()]
        flat = torch.cat([g.reshape(-1) for g in grads] + [loss.float().reshape(1)])
        dist.all_reduce(flat)
        flat /= self.world
        at = 0
        for g in grads:
            n = g.numel()
            g.copy_(flat[at : at + n].view_as(g))
            at += n
        return float(flat[-1])


def _grad(p: torch.nn.Parameter) -> torch.Tensor:
    """The gradient of ``p``; zeros for a parameter this batch did not reach (it still takes part)."""
    if p.grad is None:
        p.grad = torch.zeros_like(p)
    return p.grad


def join_groups(store: Any, rank: int, world: int, timeout_s: float) -> Any:
    """The training group (finite timeout, the default group) and the control group over it."""
    dist.init_process_group(
        "gloo", store=store, rank=rank, world_size=world, timeout=timedelta(seconds=timeout_s)
    )
    return dist.new_group(backend="gloo", timeout=CONTROL_TIMEOUT)


def send_state(state: dict[str, Any]) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    data = torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8)
    dist.broadcast(torch.tensor([data.numel()], dtype=torch.int64), 0)
    dist.broadcast(data, 0)


def receive_state() -> dict[str, Any]:
    size = torch.zeros(1, dtype=torch.int64)
    dist.broadcast(size, 0)
    data = torch.empty(int(size[0]), dtype=torch.uint8)
    dist.broadcast(data, 0)
    state: dict[str, Any] = torch.load(io.BytesIO(data.numpy().tobytes()), weights_only=True)
    return state


class ParallelTrainer(Replica):
    """Rank 0 of ``workers`` data-parallel processes; a drop-in ``Trainer``. ``source`` is the
    workload's spec (``paretrain.planner.inputs.spec.WorkloadSpec``), from which each helper builds its own copy.
    ``close()`` ends the helpers (the executor does it when a stage needs another worker count,
    and at the end)."""

    def __init__(
        self,
        workload: Any,
        config: Config,
        *,
        workers: int,
        threads: int,
        source: Any,
        cache_dir: Path | None = None,
        batch_size: int = 32,
        precision: str = "fp32",
        seed: int = 0,
        warmup_steps: int = 0,
        metric: Any = None,
        rendezvous: Rendezvous | None = None,
    ) -> None:
        if workers < 2:
            raise ValueError(f"`workers >= 2` must hold for a ParallelTrainer, but got {workers}")
        if batch_size % workers:
            raise ValueError(f"the global batch {batch_size} must split evenly among {workers} workers")
        self.world, self.rank, self._live, self._launched = workers, 0, False, False
        super().__init__(
            workload,
            config,
            batch_size=batch_size,
            precision=precision,
            device="cpu",
            seed=seed,
            warmup_steps=warmup_steps,
            metric=metric,
        )
        self._own = rendezvous is None
        self.rdzv = rendezvous or Rendezvous(Settings.from_env(), run_id=f"dp{os.getpid()}")
        self.threads = threads
        self._job = {
            "kind": "train",
            "workload": dataclasses.asdict(source),
            "config": config.to_dict(),
            "cache_dir": str(cache_dir) if cache_dir else None,
            "precision": precision,
            "seed": seed,
            "batch_size": batch_size,
            "threads": threads,
            "collective_timeout_s": self.rdzv.settings.collective_timeout_s,
        }
        self._ctrl = torch.zeros(3, dtype=torch.int64)
        self._ctl: Any = None
        self.generations = 0  # groups formed (more than one: helpers were lost and restarted)

    @property
    def pending_connect_s(self) -> float:
        """The longest the next step may wait for its group to form (0 when formed)."""
        return 0.0 if self._live else self.rdzv.settings.timeout_s

    def connect(self) -> None:
        """Launch the helpers (once per session), form the next generation of the group and
        broadcast rank 0's state to it."""
        limit = self.rdzv.settings.max_restarts
        if self.generations > limit:
            self._end(
                f"the data-parallel helpers were lost {self.generations} times, past "
                f"PARETRAIN_MAX_RESTARTS={limit}"
            )
        if not self._launched:
            self.rdzv.launch(self._job, self.world, self.threads)
            self._launched = True
        try:
            self.rdzv.form()
        except GroupUnavailable:
            self.rdzv.end_session(wait_s=0.0)  # the processes that came are let go
            self._launched = False
            raise
        self.generations += 1
        # a helper that died between arriving and joining leaves the group unformed: lost, too
        self._ctl = self._guarded(
            join_groups,
            dist.PrefixStore(self.rdzv.store_prefix, self.rdzv.store),
            0,
            self.world,
            self.rdzv.settings.collective_timeout_s,
        )
        self._live = True
        self._guarded(self._send_state)

    def _end(self, why: str) -> None:
        present = 1 + self.rdzv.local
        self.rdzv.end_session(wait_s=0.0)
        self._launched = False
        raise GroupUnavailable(why, present)

    def _drop(self) -> None:
        self._live = False
        with contextlib.suppress(Exception):
            dist.destroy_process_group()

    def _guarded(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception as err:
            self._drop()
            raise WorkerLost(
                f"a data-parallel helper was lost (generation {self.rdzv.gen}): "
                f"{' '.join(str(err).split())[:200]}"
            ) from err

    def _command(self, op: int, a: int = 0, b: int = 0) -> None:
        self._ctrl[0], self._ctrl[1], self._ctrl[2] = op, a, b
        dist.broadcast(self._ctrl, 0, group=self._ctl)

    def _send_state(self) -> None:
        self._command(STATE)
        send_state(self.state_dict())

    def step(self) -> float:
        if not self._live:
            self.connect()
        self._guarded(self._command, STEP)
        value: float = self._guarded(super().step)
        return value

    def set_batch_size(self, batch_size: int, warmup_steps: int = 0) -> None:
        if batch_size % self.world:
            raise ValueError(f"the global batch {batch_size} must split evenly among {self.world} workers")
        super().set_batch_size(batch_size, warmup_steps)
        if getattr(self, "_live", False):
            self._tolerant(self._command, BATCH, batch_size, warmup_steps)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if self._live:
            self._tolerant(self._send_state)

    def _tolerant(self, fn: Any, *args: Any) -> None:
        """A lost helper here is found again by the next step, which forms a new group and
        sends it the whole state."""
        with contextlib.suppress(WorkerLost):
            self._guarded(fn, *args)

    def close(self) -> None:
        """Stop the helpers, leave the process group, end the session (idempotent)."""
        if self._live:
            with contextlib.suppress(Exception):
                self._command(STOP)
            self._drop()
        if self._launched:
            self._launched = False
            self.rdzv.end_session()
        if getattr(self, "_own", False):
            self._own = False
            self.rdzv.close()

    def __del__(self) -> None:  # a forgotten close() must not leave helpers behind
        with contextlib.suppress(Exception):
            self.close()
