"""Another machine of a run: ``paretrain worker --rdzv-endpoint HOST:PORT``.

It connects to the run's rendezvous store (``paretrain.runtime.train.elastic``), announces itself for each
session the run starts (so a rendezvous that fails can name who came and who did not), and runs
torch's elastic launcher (``python -m torch.distributed.run``, c10d, a client of the run's
store) with the session's rendezvous id, node count and processes per node, unless the command
line gives them; then it waits for the run's next session, until the run closes or its store
goes away.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from typing import Any

from paretrain.planner.errors import InputError
from paretrain.runtime.train.elastic_agents import CLOSED, JOB, NODES, agent_command, connect_store
from paretrain.runtime.train.elastic_settings import parse_endpoint

__all__ = ["run_worker_node"]


def run_worker_node(
    endpoint: str,
    *,
    nnodes: int | None = None,
    nproc: int | None = None,
    max_restarts: int | None = None,
    local_addr: str | None = None,
    timeout_s: float = 3600.0,
    log: Any = print,
) -> int:
    """One other machine of a run: run torch's launcher for each session the run starts, until
    the run closes or its store goes away. Returns the last launcher's exit code."""
    try:
        host, port = parse_endpoint(endpoint)
    except ValueError as err:
        raise InputError(
            f"--rdzv-endpoint: {err}. To fix: pass the run's PARETRAIN_RDZV_ENDPOINT, e.g. 10.0.0.1:29400"
        ) from err
    try:
        store = connect_store(host, port, timeout_s)
    except Exception as err:
        log(f"paretrain worker: no run at {endpoint}: {err}")
        return 3
    done, rc = 0, 0
    while True:
        job = _next_job(store, done, timeout_s)
        if job is None:
            return rc
        done = int(job["session"])
        n = int(store.add(f"{NODES}/{done}", 1))
        k = nproc or int(job["nproc_per_node"])
        store.set(f"{NODES}/{done}/{n}", json.dumps({"host": socket.gethostname(), "nproc": k}))
        cmd = agent_command(
            endpoint,
            str(job["rdzv_id"]),
            nnodes or int(job["nnodes"]),
            k,
            int(job["max_restarts"]) if max_restarts is None else max_restarts,
            local_addr,
            float(job.get("join_timeout_s", 600.0)),
        )
        log(f"paretrain worker: session {done} of {endpoint}: {k} processes")
        rc = subprocess.call(cmd)


def _next_job(store: Any, done: int, timeout_s: float) -> dict[str, Any] | None:
    """The run's next session after ``done``, or None when the run closed or went away."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if store.check([CLOSED]):
                return None
            if store.check([JOB]):
                job: dict[str, Any] = json.loads(store.get(JOB))
                if int(job["session"]) > done:
                    return job
        except Exception:
            return None
        time.sleep(0.2)
    return None
