"""The rendezvous between a run and its helper ranks, on torch.distributed's elastic launcher.

A data-parallel stage runs on ``n`` processes: the run's own process (rank 0: meter, ledger,
checkpoints, evaluation, tracking) and ``n - 1`` helper ranks that torch's elastic agent (the
machinery behind ``torchrun``) launches, restarts and tears down. The run hosts the rendezvous:
``Rendezvous`` creates a ``torch.distributed.TCPStore`` server on the run's endpoint, and every
agent joins it as a client with the c10d rendezvous backend (``--rdzv-conf is_host=false``: the
backend's ``_create_tcp_store`` then connects to the store rather than hosting one). The agents'
own rendezvous (keys ``torch.rendezvous.<rdzv_id>``) decides the helpers' ``RANK`` and
``WORLD_SIZE``; on top of it the run forms the training group:

- before launching, the run writes the *job* (``paretrain/job``: what to train, the session's
  rendezvous id, how many launcher nodes and processes per node) as JSON into the store;
- a helper (``paretrain.runtime.train.helper``) builds its replica, then *arrives*: a counter
  ``paretrain/arrivals`` and its record ``paretrain/arrival/<k>`` (agent rank, world, node,
  host, restart count);
- the run waits for one fresh arrival per agent rank (newer than any it used before), assigns
  each a generation ``g`` and the training rank ``1 + RANK`` (world ``1 + WORLD_SIZE``), and all
  of them join a gloo group over ``PrefixStore("paretrain/gen<g>", store)``.

A helper killed mid-stage breaks a collective on rank 0 (gloo raises on a closed peer; a finite
timeout covers a hung one); the elastic agent restarts the whole helper group within
``--max-restarts``, the restarted helpers arrive again, and the run forms generation ``g + 1``
and broadcasts the state it rolled back to. Nothing here counts money: the run's meter charges
the time (``paretrain.runtime.run``); ``GroupUnavailable.present`` says how many instances were held
during a rendezvous that failed.

Several machines: each other machine runs ``paretrain worker --rdzv-endpoint HOST:PORT`` (or
``torchrun --rdzv-backend c10d --rdzv-endpoint HOST:PORT --rdzv-conf is_host=false
--rdzv-id ID --nnodes A --nproc-per-node K -m paretrain.worker HOST:PORT``, which the run
prints); ``paretrain worker`` (``paretrain.runtime.train.node``) reads the session's rendezvous id, node
count and processes per node from the store, runs the launcher and comes back for the next
session until the run closes. The store listens on the endpoint's address only when it is this
machine's (it has no authentication: use it on a trusted network). Settings come from the
environment (``Settings.from_env``): ``PARETRAIN_RDZV_ENDPOINT`` (the address other machines reach the run
at; default ``127.0.0.1`` on a free port), ``PARETRAIN_NNODES`` (machines per multi-process
stage, the run's included; default 1), ``PARETRAIN_RDZV_TIMEOUT_S`` (default 300),
``PARETRAIN_MAX_RESTARTS`` (default 3), ``PARETRAIN_COLLECTIVE_TIMEOUT_S`` (default 300).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch.distributed as dist

from paretrain.runtime.train.elastic_agents import (
    CLOSED,
    ENTRYPOINT,
    JOB,
    NODES,
    GroupError,
    GroupUnavailable,
    WorkerLost,
    agent_command,
    connect_store,
    end_key,
    split,
)
from paretrain.runtime.train.elastic_settings import Settings, parse_endpoint

__all__ = [
    "GroupError",
    "GroupUnavailable",
    "Rendezvous",
    "Settings",
    "WorkerLost",
    "agent_command",
    "connect_store",
    "end_key",
    "parse_endpoint",
    "split",
]

ROOT = Path(__file__).resolve().parents[3]


def _loopback(host: str) -> bool:
    return host in ("127.0.0.1", "localhost", "::1")


def _listen(host: str, port: int) -> tuple[int, int]:
    """A listening socket for the store: on ``host`` only when it is this machine's address (the
    default loopback keeps the store off the network), else on every interface. Its fd passes
    to the store, which owns it from then on."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:  # a name or address this machine does not own (NAT, DNS): listen everywhere
        sock.bind(("", port))
    sock.listen(128)
    bound = int(sock.getsockname()[1])
    return sock.detach(), bound


def _pdeathsig() -> None:  # the agent goes when the run goes, even on a kill -9 of the run
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, 15)  # PR_SET_PDEATHSIG, SIGTERM
    except OSError:  # not Linux: the helpers still exit when rank 0's sockets close
        pass


class Rendezvous:
    """The run's side: the store server, the job of each session, its local agent, and the
    arrivals from which generations of the training group are formed."""

    def __init__(self, settings: Settings, run_id: str) -> None:
        self.settings, self.run_id = settings, run_id
        fd, port = _listen(settings.host, settings.port)
        self.store = dist.TCPStore(
            settings.host,
            port,
            is_master=True,
            wait_for_workers=False,
            multi_tenant=True,
            timeout=timedelta(seconds=settings.collective_timeout_s),
            master_listen_fd=fd,
        )
        self.endpoint = f"{settings.host}:{port}"
        self.session, self.gen, self.seen = 0, -1, 0
        self.agent: subprocess.Popen[bytes] | None = None
        self.helpers = self.local = self.per_node = self.agent_nodes = 0

    @property
    def store_prefix(self) -> str:
        return f"paretrain/gen{self.gen}"

    def launch(self, job: dict[str, Any], workers: int, threads: int) -> None:
        """Start a session: write its job and launch this machine's agent (if it has helpers)."""
        self.session += 1
        self.helpers = workers - 1
        self.local, self.per_node = split(workers, self.settings.nnodes)
        self.agent_nodes = self.settings.nnodes - (0 if self.local else 1)
        rdzv_id = f"{self.run_id}-s{self.session}"
        self.store.set(
            JOB,
            json.dumps(
                {
                    **job,
                    "session": self.session,
                    "rdzv_id": rdzv_id,
                    "world": workers,
                    "nnodes": self.agent_nodes,
                    "nproc_per_node": self.per_node,
                    "max_restarts": self.settings.max_restarts,
                    "join_timeout_s": self.settings.timeout_s,
                }
            ),
        )
        if self.settings.nnodes > 1:  # the user starts the other machines: say how
            print(
                f"paretrain: waiting up to {self.settings.timeout_s:g} s for {self.settings.nnodes - 1} other "
                f"machine(s) with {self.per_node} processes each: on each run 'paretrain worker "
                f"--rdzv-endpoint {self.endpoint}' (or 'torchrun --nnodes {self.agent_nodes} --nproc-per-node "
                f"{self.per_node} --rdzv-backend c10d --rdzv-endpoint {self.endpoint} --rdzv-conf is_host=false "
                f"--max-restarts {self.settings.max_restarts} "
                f"--rdzv-id {rdzv_id} -m {ENTRYPOINT} {self.endpoint}')",
                file=sys.stderr,
                flush=True,
            )
        if self.local:
            cmd = agent_command(
                self.endpoint,
                rdzv_id,
                self.agent_nodes,
                self.local,
                self.settings.max_restarts,
                "127.0.0.1" if _loopback(self.settings.host) else None,
                self.settings.timeout_s,
            )
            env = {
                **os.environ,
                "OMP_NUM_THREADS": str(threads),
                "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
            }
            self.agent = subprocess.Popen(cmd, env=env, preexec_fn=_pdeathsig)

    def form(self) -> list[dict[str, Any]]:
        """Wait for one fresh arrival per helper rank, assign the next generation to them and
        return their records (ordered by training rank). ``GroupUnavailable`` at the timeout or
        when this machine's agent gave up."""
        self.gen += 1
        deadline = time.monotonic() + self.settings.timeout_s
        fresh: dict[int, tuple[int, dict[str, Any]]] = {}
        while len(fresh) < self.helpers:
            k = self.seen + 1
            if not self._wait_key(f"paretrain/arrival/{k}", deadline):
                raise GroupUnavailable(self._missing(fresh), self._present(fresh))
            self.seen = k
            rec = json.loads(self.store.get(f"paretrain/arrival/{k}"))
            if rec.get("session") != self.session:
                continue  # a helper of an earlier session, still on its way out
            if int(rec["world"]) != self.helpers:
                raise GroupUnavailable(
                    f"the launcher's agents formed {rec['world']} helper ranks where the stage needs "
                    f"{self.helpers}: start every other machine with the job's --nnodes {self.agent_nodes} "
                    f"--nproc-per-node {self.per_node} (or no such options: paretrain worker reads them)",
                    self._present(fresh),
                )
            fresh[int(rec["rank"])] = (k, rec)
        for rank, (k, _rec) in sorted(fresh.items()):
            self.store.set(
                f"paretrain/assign/{k}",
                json.dumps({"gen": self.gen, "rank": 1 + rank, "world": 1 + self.helpers}),
            )
        return [rec for _, (_, rec) in sorted(fresh.items())]

    def _wait_key(self, key: str, deadline: float) -> bool:
        while True:
            if self.store.check([key]):
                return True
            if self.agent is not None and self.agent.poll() is not None and not self.store.check([key]):
                raise GroupUnavailable(
                    f"the elastic launcher on this machine gave up (exit code {self.agent.returncode}) after "
                    f"at most {self.settings.max_restarts} restarts of the helper ranks (PARETRAIN_MAX_RESTARTS)",
                    self._present({}),
                )
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def _remote_nodes(self) -> list[dict[str, Any]]:
        """The other machines whose ``paretrain worker`` announced itself for this session."""
        n = int(self.store.add(f"{NODES}/{self.session}", 0))
        return [
            json.loads(self.store.get(f"{NODES}/{self.session}/{i}"))
            for i in range(1, n + 1)
            if self.store.check([f"{NODES}/{self.session}/{i}"])
        ]

    def _present(self, fresh: dict[int, Any]) -> int:
        remote = sum(int(n.get("nproc", 0)) for n in self._remote_nodes())
        return 1 + self.local + remote

    def _missing(self, fresh: dict[int, Any]) -> str:
        remote = self._remote_nodes()
        want = self.settings.nnodes - 1
        ranks = sorted(set(range(1, 1 + self.helpers)) - {1 + r for r in fresh})
        where = ", ".join(f"{n.get('host')} ({n.get('nproc')} processes)" for n in remote) or "none"
        return (
            f"the data-parallel stage's rendezvous at {self.endpoint} timed out after "
            f"{self.settings.timeout_s:g} s (PARETRAIN_RDZV_TIMEOUT_S): training ranks "
            f"{ranks} never joined; other machines expected {want}, joined {len(remote)} ({where}); "
            f"missing {max(0, want - len(remote))} machine(s) running "
            f"'paretrain worker --rdzv-endpoint {self.endpoint}'"
            if want
            else f"the data-parallel stage's helper ranks {ranks} did not join the rendezvous at "
            f"{self.endpoint} within {self.settings.timeout_s:g} s (PARETRAIN_RDZV_TIMEOUT_S)"
        )

    def end_session(self, wait_s: float = 30.0) -> None:
        """After the helpers were told to stop: let this machine's agent finish (or end it).
        Helpers still waiting for a generation (restarted after a loss) see the session end."""
        if self.session:
            with contextlib.suppress(Exception):
                self.store.set(end_key(self.session), "1")
        agent, self.agent = self.agent, None
        if agent is None:
            return
        try:
            agent.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            agent.terminate()
            try:
                agent.wait(timeout=10)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait()

    def close(self) -> None:
        """The run is done with data parallelism: other machines' ``paretrain worker`` exit."""
        self.end_session(wait_s=5.0)
        with contextlib.suppress(Exception):
            self.store.set(CLOSED, "1")
