"""One search worker: this process runs trials of the study until its target or its envelope.

A worker opens the study (with Optuna's heartbeat on RDB storages) and the study's envelope
in the same storage (``paretrain.runtime.trials.stored_envelope``), charges every second a trial trains to its
own ledger (``.paretrain/ledger/search-STUDY-HOST-PID.jsonl``: one writer per file) and logs
each finished trial as an MLflow run. Any number of workers, here or on other machines, may
run against the same storage: they share the study's trials and its one envelope.

A trial whose training goes wrong is failed and never scored, or stops the search with a
one-line ``WorkloadError`` (``paretrain.planner.search.faults`` gives the rule); SIGTERM and
SIGINT stop the worker at the next step (``paretrain.runtime.trials.stopping``).
"""

from __future__ import annotations

import os
import socket
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from paretrain.planner.inputs.catalog import local_offers
from paretrain.planner.inputs.space import Config
from paretrain.planner.inputs.spec import Spec
from paretrain.planner.search.search import (
    SearchResult,
    TrialRun,
    complete_trials,
    open_study,
    run_search,
)
from paretrain.runtime.money.ledger import Ledger
from paretrain.runtime.tracking.search_log import log_trial
from paretrain.runtime.train.deadline import Deadline
from paretrain.runtime.train.devices import local_devices
from paretrain.runtime.train.lab_trial import run_trial
from paretrain.runtime.train.torch_lab import TorchLab
from paretrain.runtime.train.trainer import warm_up_torch
from paretrain.runtime.train.workloads import load_workload, prepare_data
from paretrain.runtime.trials.stopping import StopFlag, stop_on_signals
from paretrain.runtime.trials.stored_envelope import StoredEnvelope, lease_seconds, open_envelope
from paretrain.runtime.workspace import Workspace

__all__ = ["ledger_name", "open_shared", "search_worker", "study_name"]


def study_name(spec: Spec) -> str:
    return spec.search.study or spec.name


def ledger_name(spec: Spec) -> str:
    """The file-name-safe study name every search ledger of the study starts with."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in study_name(spec))


def open_shared(spec: Spec, url: str, *, seed: int, lease_s: int) -> tuple[Any, StoredEnvelope]:
    """The study (heartbeat every quarter lease) and its envelope. Workers starting together on
    a fresh database race to create the tables; the loser tries again once they exist."""
    import sqlalchemy

    for attempt in range(5):
        try:
            study = open_study(url, study_name(spec), spec.search.sampler, seed, heartbeat_s=lease_s // 4)
            return study, open_envelope(url, study_name(spec), spec.budget.search_usd, lease_s=lease_s)
        except sqlalchemy.exc.SQLAlchemyError:
            if attempt == 4:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def _seed(seed: int, worker: int | None) -> int:
    """The sampler's seed: the spec's for a lone worker (reproducible); for one of several, mixed
    with its index, host and pid, since workers with one seed propose the same configs."""
    if worker is None:
        return seed
    return zlib.crc32(f"{seed}-{worker}-{socket.gethostname()}-{os.getpid()}".encode())


def _cpu_within(prices: dict[str, float], threads: int | None) -> str | None:
    """The local CPU offer with the most threads up to ``threads`` (None: the lab's choice)."""
    if threads is None:
        return None
    cpus = sorted((int(d.rsplit("-", 1)[1]), d) for d in prices if d.startswith("local/cpu-"))
    within = [d for n, d in cpus if n <= threads]
    return within[-1] if within else (cpus[0][1] if cpus else None)


@dataclass(frozen=True)
class _WatchedLab:
    """The lab's trials (``paretrain.planner.search.search.TrialLab``), each step asking the
    worker's stop flag, each workload fault named as the spec names the workload."""

    lab: TorchLab
    stop: StopFlag
    name: str

    def run_trial(
        self,
        config: Config,
        max_samples: int,
        eval_every: int,
        cap_usd: float,
        should_stop: Callable[[int, float, int], bool],
        more: Callable[[float], float] | None = None,
    ) -> TrialRun:
        return run_trial(
            self.lab,
            config,
            max_samples,
            eval_every,
            cap_usd,
            should_stop,
            more,
            check=self.stop.check,
            name=self.name,
        )


def search_worker(
    spec: Spec,
    ws: Workspace,
    *,
    storage: str | None = None,
    trials: int | None = None,
    tracker: Any = None,
    parent: str | None = None,
    parent_run_id: str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    worker: int | None = None,
    threads: int | None = None,
    stop: StopFlag | None = None,
) -> SearchResult:
    """Run trials of the spec's study in this process (see the module docstring); each trial
    is logged as a child of the MLflow run ``parent`` (a handle of ``tracker``) or
    ``parent_run_id`` (a run id, for a worker process started by another). ``worker`` (the
    index of a worker among several) gives its sampler a seed of its own; ``threads`` (this
    machine's cores shared among its workers) caps the threads a trial trains on, and so what
    a second of it is charged. ``stop`` is the flag SIGTERM and SIGINT set (default: one
    handled while this call runs)."""
    workload = prepare_data(load_workload(spec.workload, ws.cache))  # uncharged: its setup
    name, url = study_name(spec), storage or spec.search.storage
    lease = lease_seconds()
    study, envelope = open_shared(spec, url, seed=_seed(spec.search.seed, worker), lease_s=lease)
    ledger = Ledger(
        ws.ledgers / f"search-{ledger_name(spec)}-{socket.gethostname()}-{os.getpid()}.jsonl",
        f"search-{ledger_name(spec)}-{os.getpid()}",
    )
    target = trials if trials is not None else spec.search.trials

    def on_trial(t: Any, config: Any) -> None:
        if progress:
            m = spec.target.metric_obj
            progress(
                f"trial {t.number} {config.family}: {m.name} {m.level(t.values[0]):.3f}",
                len(complete_trials(study)),  # failed trials are not counted toward the target
                target,
            )
        log_trial(tracker, parent, name, t, config, spec.target.metric_obj, parent_run_id=parent_run_id)

    try:
        with stop_on_signals(stop) as flag, Deadline() as timer:
            warm_up_torch()  # library loading is the process's, not a trial's: as the executor does
            lab = _lab(spec, workload, ledger, threads, flag, timer)
            return run_search(
                spec,
                lab,
                study,
                workload.info,
                trials=target,
                on_trial=on_trial,
                envelope=envelope,
                check=flag.check,
            )
    finally:
        envelope.close()
        ledger.close()


def _lab(
    spec: Spec, workload: Any, ledger: Ledger, threads: int | None, stop: StopFlag, timer: Deadline
) -> _WatchedLab:
    """The lab a worker's trials train in: this machine's devices at their local prices; a unit
    of a trial's work still running when its reservation can pay no more is cut (``timer``,
    ``paretrain.runtime.train.deadline``)."""
    prices = {
        o.id: o.price_usd_per_h for o in local_offers(local_devices(), replace(spec.hardware, local="auto"))
    }
    lab = TorchLab(
        workload,
        prices_usd_per_h=prices,
        ledger=ledger,
        seed=spec.search.seed,
        metric=spec.target.metric_obj,
        convergence_device=_cpu_within(prices, threads),
    )
    lab.deadline = timer
    return _WatchedLab(lab, stop, spec.workload.name)
