"""``paretrain search --workers N``: N search workers on this machine, one process each.

Each worker (``paretrain.runtime.trials.trial_worker``) runs the same loop against the same storage, so they
share the study's trials and its one envelope exactly as workers on other machines do; this
process only starts them (``spawn``: a fresh interpreter each, no inherited threads or
database connections), shows the study's progress while they run, and waits. Every trial is
logged to MLflow by the worker that ran it, as a child of this command's parent run. A worker
that fails makes the command fail (exit 1) once the others have finished; the trial it was
running is failed by the next worker that looks (Optuna's heartbeat, the envelope's lease).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paretrain.planner.errors import StopError, UserError
from paretrain.planner.inputs.spec import Spec
from paretrain.planner.search.search import SearchResult, complete_trials, front_configs, open_study

__all__ = ["SearchWorkerFailed", "WorkerJob", "run_pool", "wait_run_id"]


class SearchWorkerFailed(Exception):
    """A search worker process ended with an error (its message is on stderr)."""


@dataclass(frozen=True)
class WorkerJob:
    """What a worker process needs: picklable, for ``spawn``."""

    spec: Spec
    root: str  # the workspace folder
    storage: str | None
    trials: int
    tracking_uri: str | None  # None: tracking is off
    experiment: str = ""
    parent_run_id: str | None = None
    threads: int | None = None  # per worker: this machine's cores shared among them


def wait_run_id(tracker: Any, handle: str | None, timeout_s: float = 30.0) -> str | None:
    """The MLflow run id of ``tracker``'s run ``handle`` once its background thread made it
    (None when tracking is off or MLflow does not answer in time: trials are then logged
    without a parent)."""
    if tracker is None or handle is None:
        return None
    deadline = time.monotonic() + timeout_s
    while tracker.run_id(handle) is None and time.monotonic() < deadline and handle not in tracker.failed:
        time.sleep(0.05)
    run_id: str | None = tracker.run_id(handle)
    return run_id


def worker_main(job: WorkerJob, index: int, results: Any) -> None:
    """A worker process: run the search, send (index, new trials, spent, stopped) back."""
    from paretrain.runtime.tracking.client import Tracker
    from paretrain.runtime.trials.trial_worker import search_worker
    from paretrain.runtime.workspace import Workspace

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops us
    code = 0
    ws = Workspace(Path(job.root))
    tracker = Tracker(job.tracking_uri, job.experiment, ws.spool) if job.tracking_uri else None
    try:
        r = search_worker(
            job.spec,
            ws,
            storage=job.storage,
            trials=job.trials,
            tracker=tracker,
            parent_run_id=job.parent_run_id,
            worker=index,
            threads=job.threads,
        )
        results.put((index, r.new_trials, r.spent_usd, r.stopped_for_budget))
    except (UserError, StopError) as err:
        print(f"paretrain: search worker {index}: {' '.join(str(err).split())}", file=sys.stderr, flush=True)
        code = err.exit_code
    except Exception:
        print(
            f"paretrain: search worker {index}: internal error:\n{traceback.format_exc()}",
            file=sys.stderr,
            flush=True,
        )
        code = 1
    finally:
        if tracker is not None:
            tracker.close()
    sys.stdout.flush()
    sys.stderr.flush()
    # ledger, envelope and tracker are closed: skip the interpreter's teardown of torch and
    # the rest (seconds per process on a busy machine, all of it after the study is done)
    os._exit(code)


def _watch(
    job: WorkerJob, procs: list[Any], progress: Callable[[str, int, int], None] | None, poll_s: float
) -> None:
    """Show the study's complete trials until every worker has ended."""
    spec = job.spec
    study = None
    while any(p.is_alive() for p in procs):
        if progress is not None:
            try:
                study = study or open_study(
                    job.storage or spec.search.storage,
                    spec.search.study or spec.name,
                    spec.search.sampler,
                    spec.search.seed,
                )
                done = len(complete_trials(study))
                alive = sum(p.is_alive() for p in procs)
                progress(f"{done} trials complete; {alive} of {len(procs)} workers running", done, job.trials)
            except Exception:
                pass
        for p in procs:
            p.join(timeout=poll_s / len(procs))


def run_pool(
    job: WorkerJob,
    workers: int,
    *,
    progress: Callable[[str, int, int], None] | None = None,
    poll_s: float = 1.0,
) -> SearchResult:
    """Start ``workers`` worker processes on ``job`` and wait for them; the study's result."""
    from paretrain.runtime.trials.trial_worker import open_shared

    _, envelope = open_shared(job.spec, job.storage or job.spec.search.storage, seed=0, lease_s=4)
    envelope.close()  # the tables exist before the workers race to use them
    ctx = multiprocessing.get_context("spawn")
    results = ctx.SimpleQueue()
    procs = [
        ctx.Process(target=worker_main, args=(job, i, results), name=f"paretrain-search-{i}")
        for i in range(workers)
    ]
    for p in procs:
        p.start()
    try:
        _watch(job, procs, progress, poll_s)
    except BaseException:  # Ctrl-C: stop the workers (their reservations lapse after the lease)
        for p in procs:
            p.terminate()
        for p in procs:
            p.join(timeout=30)
        raise
    outcomes = [results.get() for _ in range(sum(p.exitcode == 0 for p in procs))]
    failed = [(i, p.exitcode) for i, p in enumerate(procs) if p.exitcode != 0]
    if failed:
        raise SearchWorkerFailed(
            f"{len(failed)} of {workers} search workers failed ({', '.join(_ended(i, c) for i, c in failed)}; "
            "their messages are above); the study keeps every trial that finished. To fix: see the "
            "message, then run the same command again to continue the study"
        )
    return _result(job, outcomes)


def _ended(index: int, code: int | None) -> str:
    if code is not None and code < 0:
        return f"worker {index} killed by {signal.Signals(-code).name}"
    return f"worker {index} exit {code}"


def _result(job: WorkerJob, outcomes: list[tuple[int, int, float, bool]]) -> SearchResult:
    spec = job.spec
    study = open_study(
        job.storage or spec.search.storage,
        spec.search.study or spec.name,
        spec.search.sampler,
        spec.search.seed,
    )
    return SearchResult(
        study.study_name,
        len(complete_trials(study)),
        sum(o[1] for o in outcomes),
        math.fsum(o[2] for o in outcomes),
        any(o[3] for o in outcomes),
        front_configs(study, spec.target.metric_obj),
    )
