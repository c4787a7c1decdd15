"""The contract between a run and the elastic agents of its helper ranks.

The store keys both sides read and write, how a stage's workers split over machines, the
agent's command line, and the errors a group of helper ranks raises. The protocol itself is
written out in ``paretrain.runtime.train.elastic``.
"""

from __future__ import annotations

import sys
from datetime import timedelta
from typing import Any

import torch.distributed as dist

__all__ = [
    "ARRIVALS",
    "CLOSED",
    "ENTRYPOINT",
    "JOB",
    "NODES",
    "GroupError",
    "GroupUnavailable",
    "WorkerLost",
    "agent_command",
    "connect_store",
    "end_key",
    "split",
]

JOB, ARRIVALS, CLOSED, NODES = "paretrain/job", "paretrain/arrivals", "paretrain/closed", "paretrain/nodes"
#: The module the agents launch (a string: runtime never imports the command line).
ENTRYPOINT = "paretrain.worker"


class GroupError(RuntimeError):
    """The helper ranks of a data-parallel stage failed."""


class WorkerLost(GroupError):
    """A helper died mid-stage; its agent restarts the group, which can be formed again."""


class GroupUnavailable(GroupError):
    """The group cannot be formed: a node never joined, or the launcher gave up. ``present`` is
    the number of instances (processes) that were held while waiting."""

    def __init__(self, message: str, present: int) -> None:
        super().__init__(message)
        self.present = present


def end_key(session: int) -> str:
    return f"paretrain/end/{session}"


def split(workers: int, nnodes: int) -> tuple[int, int]:
    """``(local, per_node)``: helpers the run's machine launches beside the run's own process,
    and processes each other machine runs: ``workers // nnodes`` each, the run's machine the rest
    (its own process included).

    >>> split(4, 1), split(2, 2), split(3, 2), split(5, 2)
    ((3, 4), (0, 1), (1, 1), (2, 2))
    """
    if workers < nnodes:
        raise GroupUnavailable(
            f"a stage of {workers} workers cannot span {nnodes} machines "
            "(PARETRAIN_NNODES): set it to at most the stage's workers",
            1,
        )
    per = workers // nnodes
    return workers - (nnodes - 1) * per - 1, per


def connect_store(host: str, port: int, timeout_s: float) -> Any:
    return dist.TCPStore(host, port, is_master=False, timeout=timedelta(seconds=timeout_s))


def agent_command(
    endpoint: str,
    rdzv_id: str,
    nnodes: int,
    nproc: int,
    max_restarts: int,
    local_addr: str | None = None,
    join_timeout_s: float = 600.0,
) -> list[str]:
    """``python -m torch.distributed.run ...``: an elastic agent, client of the run's store,
    waiting for its peers as long as the run waits for the group."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nnodes={nnodes}",
        f"--nproc-per-node={nproc}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint={endpoint}",
        f"--rdzv-conf=is_host=false,join_timeout={max(1, int(join_timeout_s))}",
        f"--rdzv-id={rdzv_id}",
        f"--max-restarts={max_restarts}",
        "--monitor-interval=0.2",
    ]
    if local_addr:
        cmd.append(f"--local-addr={local_addr}")
    return [*cmd, "-m", ENTRYPOINT, endpoint]
