"""``paretrain search --workers N``: N search workers on this machine, one process each.

Each worker (``paretrain.runtime.trials.trial_worker``) runs the same loop against the same storage, so they
share the study's trials and its one envelope exactly as workers on other machines do; this
process only starts them (``spawn``: a fresh interpreter each, no inherited threads or
database connections), shows the study's progress while they run, and waits. Every trial is
logged to MLflow by the worker that ran it, as a child of this command's parent run.

A worker that stops on a user's fault (a workload member raised: exit 2) or at a budget (exit
3) makes this process stop the others (SIGTERM: each fails its trial in flight and settles it)
and end with that worker's one line and exit code. A worker that crashes makes the command fail
(exit 1) once the others have finished; the trial it was running is failed by the next worker
that looks (Optuna's heartbeat, the envelope's lease). SIGTERM or SIGINT to this process is
forwarded to the workers as SIGTERM (``paretrain.runtime.trials.stopping``); once they have
stopped it exits 143 / 130; a second signal stops the workers and this process at once.
"""

from __future__ import annotations

import contextlib
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
from types import FrameType
from typing import Any

from paretrain.planner.errors import StopError, UserError
from paretrain.planner.inputs.spec import Spec
from paretrain.planner.search.search import SearchResult, complete_trials, front_configs, open_study
from paretrain.runtime.trials.stopping import StopFlag, interrupted, stop_on_signals

__all__ = [
    "SearchWorkerFailed",
    "WorkerJob",
    "WorkerStopped",
    "WorkerUserError",
    "run_pool",
    "stop_workers",
    "wait_run_id",
]


class SearchWorkerFailed(Exception):
    """A search worker process ended with an error (its message is on stderr)."""


class WorkerUserError(UserError):
    """A worker stopped on a user's fault (exit 2): its one line."""


class WorkerStopped(StopError):
    """A worker stopped at a budget (exit 3): its one line."""


Outcome = tuple[Any, ...]  # (index, "ok", new trials, spent, stopped) or (index, "error", code, line)


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
    """A worker process: run the search, send its ``Outcome`` back."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops us
    with stop_on_signals() as flag:  # a SIGTERM from the parent: stop at the next step
        code = _work(job, index, results, flag)
    sys.stdout.flush()
    sys.stderr.flush()
    # ledger, envelope and tracker are closed: skip the interpreter's teardown of torch and
    # the rest (seconds per process on a busy machine, all of it after the study is done)
    os._exit(code)


def _work(job: WorkerJob, index: int, results: Any, flag: StopFlag) -> int:
    from paretrain.runtime.tracking.client import Tracker
    from paretrain.runtime.trials.trial_worker import search_worker
    from paretrain.runtime.workspace import Workspace

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
            stop=flag,
        )
        results.put((index, "ok", r.new_trials, r.spent_usd, r.stopped_for_budget))
        return 0
    except (UserError, StopError) as err:  # the parent says it, once
        results.put((index, "error", err.exit_code, " ".join(str(err).split())))
        return int(err.exit_code)
    except Exception:
        print(
            f"paretrain: search worker {index}: internal error:\n{traceback.format_exc()}",
            file=sys.stderr,
            flush=True,
        )
        return 1
    finally:
        if tracker is not None:
            tracker.close()


class _Forwarding(StopFlag):
    """The pool's flag: each signal is also sent on to the workers still running, as SIGTERM."""

    def __init__(self, procs: list[Any]) -> None:
        super().__init__()
        self.procs = procs

    def handle(self, signum: int, frame: FrameType | None) -> None:
        stop_workers(self.procs)
        super().handle(signum, frame)


def stop_workers(procs: list[Any]) -> None:
    """SIGTERM to every worker still running: the first stops it at its next step, the second
    at once."""
    for p in procs:
        if p.pid is not None and p.exitcode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGTERM)


def _watch(
    job: WorkerJob, procs: list[Any], progress: Callable[[str, int, int], None] | None, poll_s: float
) -> None:
    """Show the study's complete trials until every worker has ended; once one has stopped on a
    user's fault or a budget (exit 2 or 3), stop the others."""
    spec = job.spec
    study = None
    stopping = False
    while any(p.is_alive() for p in procs):
        if not stopping and any(p.exitcode in (UserError.exit_code, StopError.exit_code) for p in procs):
            stopping = True
            stop_workers(procs)
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
    with stop_on_signals(_Forwarding(procs)) as flag:
        for p in procs:
            p.start()
        try:
            _watch(job, procs, progress, poll_s)
        except BaseException:  # stop the workers: each fails and settles its trial in flight
            stop_workers(procs)
            for p in procs:
                p.join(timeout=30)
            raise
    outcomes: list[Outcome] = []
    while not results.empty():
        outcomes.append(results.get())
    return _ending(job, procs, flag, outcomes)


def _ending(job: WorkerJob, procs: list[Any], flag: StopFlag, outcomes: list[Outcome]) -> SearchResult:
    """The study's result once every worker has ended, or why the command stops."""
    if flag.signum is not None:
        raise interrupted(flag.signum)
    for _, kind, code, line in (o[:4] for o in outcomes):
        if kind == "error" and code == UserError.exit_code:
            raise WorkerUserError(line)
        if kind == "error" and code == StopError.exit_code:
            raise WorkerStopped(line)
    failed = [(i, p.exitcode) for i, p in enumerate(procs) if p.exitcode != 0]
    if failed:
        raise SearchWorkerFailed(
            f"{len(failed)} of {len(procs)} search workers failed "
            f"({', '.join(_ended(i, c) for i, c in failed)}; their messages are above); the study keeps "
            "every trial that finished. To fix: see the message, then run the same command again to "
            "continue the study"
        )
    return _result(job, [o for o in outcomes if o[1] == "ok"])


def _ended(index: int, code: int | None) -> str:
    if code is not None and code < 0:
        return f"worker {index} killed by {signal.Signals(-code).name}"
    return f"worker {index} exit {code}"


def _result(job: WorkerJob, outcomes: list[Outcome]) -> SearchResult:
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
        sum(o[2] for o in outcomes),
        math.fsum(o[3] for o in outcomes),
        any(o[4] for o in outcomes),
        front_configs(study, spec.target.metric_obj),
    )
