"""A helper rank: what ``python -m paretrain.worker`` runs under torch's elastic agent.

It reads the agent's environment (``RANK``, ``WORLD_SIZE``, ``GROUP_RANK``,
``TORCHELASTIC_RUN_ID``, ``TORCHELASTIC_RESTART_COUNT``), connects to the run's store at the
endpoint it is given, reads the job (JSON), builds what the job needs, arrives, and joins the
generation of the training group the run assigns it (``paretrain.runtime.train.elastic``). A ``train``
job follows rank 0's commands (``paretrain.runtime.train.parallel``); an ``allreduce`` job measures
all-reduces with rank 0 (``paretrain.runtime.train.distributed``).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from paretrain.planner.inputs.space import Config
from paretrain.planner.inputs.spec import WorkloadSpec
from paretrain.runtime.train.distributed import measure_allreduce, measure_compute
from paretrain.runtime.train.elastic_agents import ARRIVALS, CLOSED, JOB, connect_store, end_key
from paretrain.runtime.train.elastic_settings import parse_endpoint
from paretrain.runtime.train.parallel import BATCH, STATE, STEP, STOP, Replica, join_groups, receive_state
from paretrain.runtime.train.process_setup import set_threads
from paretrain.runtime.train.workloads import load_workload
from paretrain.runtime.workspace import Workspace

__all__ = ["main"]

#: Seconds a helper tries to reach the run's store (a run that is gone ends its helpers).
CONNECT_TIMEOUT_S = 30.0


def main(argv: Sequence[str]) -> int:
    """Serve one job of the run at ``argv[0]`` (or ``PARETRAIN_RDZV_ENDPOINT``); the exit code."""
    endpoint = argv[0] if argv else os.environ.get("PARETRAIN_RDZV_ENDPOINT", "")
    if not endpoint:
        print(
            "paretrain.worker: give the run's rendezvous endpoint HOST:PORT (argument or "
            "PARETRAIN_RDZV_ENDPOINT)",
            flush=True,
        )
        return 2
    # Ctrl-C reaches every process of the terminal's group: rank 0 alone answers it (it stops
    # after the step in flight, saves and then stops the helpers), so a helper must not die first
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    host, port = parse_endpoint(endpoint)
    store = connect_store(host, port, CONNECT_TIMEOUT_S)
    job: dict[str, Any] = json.loads(store.get(JOB))
    if os.environ.get("TORCHELASTIC_RUN_ID", job["rdzv_id"]) != job["rdzv_id"]:
        print(
            f"paretrain.worker: the run has moved on to session {job['session']}; this agent's "
            f"rendezvous {os.environ.get('TORCHELASTIC_RUN_ID')} is over",
            flush=True,
        )
        return 0
    trainer = _build(job) if job["kind"] == "train" else None
    assigned = _arrive(store, job)
    if assigned is None:
        return 0
    gen, rank, world = int(assigned["gen"]), int(assigned["rank"]), int(assigned["world"])
    prefixed = dist.PrefixStore(f"paretrain/gen{gen}", store)
    if job["kind"] == "allreduce":
        dist.init_process_group("gloo", store=prefixed, rank=rank, world_size=world)
        try:
            measure_allreduce(int(job["nbytes"]), int(job["repeats"]))
            measure_compute()  # at once with rank 0's: the group's contention
        finally:
            dist.destroy_process_group()
        return 0
    _serve(trainer, prefixed, rank, world, float(job["collective_timeout_s"]))
    return 0


def _build(job: dict[str, Any]) -> Any:
    set_threads(int(job["threads"]))
    cache = job.get("cache_dir")
    cache_dir = Path(cache) if cache and Path(cache).is_dir() else Workspace(Path(".")).cache
    workload = load_workload(WorkloadSpec(**job["workload"]), cache_dir)
    return Replica(
        workload,
        Config.from_dict(job["config"]),
        batch_size=int(job["batch_size"]),
        precision=str(job["precision"]),
        device="cpu",
        seed=int(job["seed"]),
    )


def _arrive(store: Any, job: dict[str, Any]) -> dict[str, Any] | None:
    """Announce this helper as ready; wait for its generation and rank (None: the run closed)."""
    k = int(store.add(ARRIVALS, 1))
    env = os.environ
    store.set(
        f"paretrain/arrival/{k}",
        json.dumps(
            {
                "session": job["session"],
                "rank": int(env.get("RANK", "0")),
                "world": int(env.get("WORLD_SIZE", "1")),
                "node": int(env.get("GROUP_RANK", "0")),
                "restart": int(env.get("TORCHELASTIC_RESTART_COUNT", "0")),
                "host": socket.gethostname(),
                "pid": os.getpid(),
            }
        ),
    )
    key = f"paretrain/assign/{k}"
    while not store.check([key]):
        if store.check([CLOSED]) or store.check([end_key(int(job["session"]))]):
            return None
        time.sleep(0.02)
    assigned: dict[str, Any] = json.loads(store.get(key))
    return assigned


def _serve(tr: Any, store: Any, rank: int, world: int, timeout_s: float) -> None:
    tr.rank, tr.world = rank, world
    ctl = join_groups(store, rank, world, timeout_s)
    try:
        ctrl = torch.zeros(3, dtype=torch.int64)
        while True:
            dist.broadcast(ctrl, 0, group=ctl)
            op = int(ctrl[0])
            if op == STOP:
                break
            if op == STEP:
                tr.step()
            elif op == BATCH:
                tr.set_batch_size(int(ctrl[1]), int(ctrl[2]))
            elif op == STATE:
                tr.load_state_dict(receive_state())
    finally:
        dist.destroy_process_group()
