"""One search worker: this process runs trials of the study until its target or its envelope.

A worker opens the study (with Optuna's heartbeat on RDB storages) and the study's envelope
in the same storage (``runtime.search.envelope``), charges every second a trial trains to its
own ledger (``.paretrain/ledger/search-STUDY-HOST-PID.jsonl``: one writer per file) and logs
each finished trial as an MLflow run. Any number of workers, here or on other machines, may
run against the same storage: they share the study's trials and its one envelope.
"""

from __future__ import annotations

import os
import socket
import zlib
from dataclasses import replace
from typing import Any, Callable

from planner.catalog import local_offers
from planner.search import SearchResult, open_study, run_search
from planner.spec import Spec
from runtime.money.ledger import Ledger
from runtime.search.envelope import lease_seconds, open_envelope
from runtime.tracking.search_log import log_trial
from runtime.train.devices import local_devices
from runtime.train.lab import TorchLab
from runtime.train.workloads import load_workload
from runtime.workspace import Workspace

__all__ = ["search_worker", "study_name", "ledger_name"]


def study_name(spec: Spec) -> str:
    return spec.search.study or spec.name


def ledger_name(spec: Spec) -> str:
    """The file-name-safe study name every search ledger of the study starts with."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in study_name(spec))


def _seed(seed: int, worker: int | None) -> int:
    """The sampler's seed: the spec's for a lone worker (reproducible); for one of several, mixed
    with its index, host and pid, since workers with one seed propose the same configs."""
    if worker is None:
        return seed
    return zlib.crc32(f"{seed}-{worker}-{socket.gethostname()}-{os.getpid()}".encode())


def search_worker(spec: Spec, ws: Workspace, *, storage: str | None = None, trials: int | None = None,
                  tracker: Any = None, parent: str | None = None, parent_run_id: str | None = None,
                  progress: Callable[[str, int, int], None] | None = None, worker: int | None = None) -> SearchResult:
    """Run trials of the spec's study in this process (see the module docstring); each trial
    is logged as a child of the MLflow run ``parent`` (a handle of ``tracker``) or
    ``parent_run_id`` (a run id, for a worker process started by another). ``worker`` (the
    index of a worker among several) gives its sampler a seed of its own."""
    workload = load_workload(spec.workload, ws.cache)
    name, url = study_name(spec), storage or spec.search.storage
    lease = lease_seconds()
    study = open_study(url, name, spec.search.sampler, _seed(spec.search.seed, worker), heartbeat_s=lease // 4)
    envelope = open_envelope(url, name, spec.budget.search_usd, lease_s=lease)
    prices = {o.id: o.price_usd_per_h for o in local_offers(local_devices(), replace(spec.hardware, local="auto"))}
    ledger = Ledger(ws.ledgers / f"search-{ledger_name(spec)}-{socket.gethostname()}-{os.getpid()}.jsonl",
                    f"search-{ledger_name(spec)}-{os.getpid()}")
    target = trials if trials is not None else spec.search.trials

    def on_trial(t: Any, config: Any) -> None:
        if progress:
            m = spec.target.metric_obj
            progress(f"trial {t.number} {config.family}: {m.name} {m.level(t.values[0]):.3f}", t.number + 1, target)
        log_trial(tracker, parent, name, t, config, spec.target.metric_obj, parent_run_id=parent_run_id)

    try:
        lab = TorchLab(workload, prices_usd_per_h=prices, ledger=ledger, seed=spec.search.seed,
                       metric=spec.target.metric_obj)
        return run_search(spec, lab, study, workload.info, trials=target, on_trial=on_trial, envelope=envelope)
    finally:
        envelope.close()
        ledger.close()
