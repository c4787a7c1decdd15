"""MLflow tracking that never blocks or kills training: batched, in the background, spooled.

Callers get a *handle* for each run at once; a background thread creates the MLflow runs,
sends metrics in batches (``log_batch``) and artifacts. Whatever fails (no server, a full
disk) is appended to a local spool (JSONL) that ``paretrain sync`` replays; replaying skips
metric points MLflow already holds, so it can run any number of times. ``close`` waits at
most ``timeout_s`` and spools what is left, so a process never hangs on an unreachable server.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from paretrain.runtime.tracking.ops import apply_op, experiment_id

__all__ = ["Tracker", "default_uri", "git_commit", "sync_spool"]

_STOP = object()


def default_uri(spec_uri: str | None = None) -> str:
    return spec_uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"


def git_commit() -> str:
    root = Path(__file__).resolve().parents[3]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5, check=False
        )
        return out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def _client(uri: str) -> Any:
    # A remote server that is away must fail fast, not retry for minutes.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    import logging

    from mlflow.tracking import MlflowClient

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)

    return MlflowClient(tracking_uri=uri)


class Tracker:
    """Background MLflow logging with a spool. All methods return at once."""

    def __init__(
        self,
        uri: str,
        experiment: str,
        spool_path: str | Path,
        *,
        flush_every_s: float = 2.0,
        timeout_s: float = 15.0,
        connect_s: float = 60.0,
    ) -> None:
        self.uri, self.experiment = uri, experiment
        self.spool_path = Path(spool_path)
        self.flush_every_s, self.timeout_s, self.connect_s = flush_every_s, timeout_s, connect_s
        self.run_ids: dict[str, str] = {}  # handle -> MLflow run id
        self.failed: set[str] = set()  # handles whose ops now go to the spool
        self.errors: list[str] = []
        self._q: queue.Queue[Any] = queue.Queue()
        self._lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._client: Any = None
        self._ready = threading.Event()
        # Started by the first record, so a command that fails its input checks touches no store.
        self._thread = threading.Thread(target=self._loop, name="paretrain-tracking", daemon=True)
        self._closed = False

    def _start(self) -> None:
        # its own lock: ``_lock`` is held by the thread while it talks to MLflow
        with self._start_lock:
            if self._thread.ident is None and not self._closed:
                self._thread.start()

    def _put(self, op: Any) -> None:
        self._start()
        self._q.put(op)

    def wait_ready(self, timeout_s: float = 30.0) -> bool:
        """Wait (at most ``timeout_s``) until the MLflow client is imported and connected, so
        that its start-up does not compete with training for the interpreter."""
        self._start()
        return self._ready.wait(timeout_s)

    # -- the caller's side ----------------------------------------------------------------
    def start_run(
        self,
        name: str,
        *,
        tags: Mapping[str, str] | None = None,
        parent: str | None = None,
        params: Mapping[str, Any] | None = None,
        parent_run_id: str | None = None,
    ) -> str:
        """A new run (nested under the handle ``parent`` or the MLflow run ``parent_run_id``)."""
        handle = f"h-{uuid.uuid4().hex[:12]}"
        self._put(
            {
                "op": "create",
                "handle": handle,
                "name": name,
                "tags": dict(tags or {}),
                "parent": parent,
                "experiment": self.experiment,
                "parent_run_id": parent_run_id,
            }
        )
        if params:
            self.log_params(handle, params)
        return handle

    def log_params(self, handle: str, params: Mapping[str, Any]) -> None:
        self._put({"op": "params", "handle": handle, "params": {k: str(v)[:6000] for k, v in params.items()}})

    def end_stale(self, handle: str, run_id: str) -> None:
        """Mark KILLED the MLflow runs of paretrain run ``run_id`` (its earlier attempts) still
        RUNNING beside ``handle``'s: one process holds a run at a time (its ledger's lock), so
        they are attempts that a ``kill -9`` or a crash ended before they could say so."""
        self._put({"op": "end_stale", "handle": handle, "paretrain_run": run_id})

    def set_tags(self, handle: str, tags: Mapping[str, Any]) -> None:
        self._put({"op": "tags", "handle": handle, "tags": {k: str(v) for k, v in tags.items()}})

    def log_metrics(
        self, handle: str, metrics: Mapping[str, float], step: int = 0, timestamp_ms: int | None = None
    ) -> None:
        ts = timestamp_ms if timestamp_ms is not None else int(time.time() * 1000)
        self._put(
            {
                "op": "metrics",
                "handle": handle,
                "points": [[k, float(v), ts, int(step)] for k, v in metrics.items()],
            }
        )

    def log_artifact(self, handle: str, path: str | Path, artifact_path: str | None = None) -> None:
        self._put(
            {
                "op": "artifact",
                "handle": handle,
                "path": str(Path(path).resolve()),
                "artifact_path": artifact_path,
            }
        )

    def log_input(
        self,
        handle: str,
        name: str,
        digest: str,
        source: str,
        profile: Mapping[str, Any],
        context: str = "training",
    ) -> None:
        """Record the dataset a run trained on (MLflow's run inputs)."""
        self._put(
            {
                "op": "input",
                "handle": handle,
                "name": name,
                "digest": digest,
                "source": source,
                "profile": dict(profile),
                "context": context,
            }
        )

    def end_run(self, handle: str, status: str = "FINISHED") -> None:
        self._put({"op": "end", "handle": handle, "status": status})

    def close(self) -> bool:
        """Send what is queued, waiting at most ``timeout_s``; spool the rest. True if all sent.

        The client's start-up (importing MLflow, opening the store; it fails within seconds for
        a server that is away) is waited for first, up to ``connect_s``: it is not what
        ``timeout_s`` guards. A search worker whose first trial ended at once on a loaded
        machine closed while MLflow was still importing, and its trial went to the spool."""
        if self._closed:
            return not self.failed
        with self._start_lock:
            self._closed = True
            started = self._thread.ident is not None
        if not started:
            return True  # nothing was ever logged
        self._q.put(_STOP)
        self._ready.wait(self.connect_s)
        self._thread.join(self.timeout_s)
        if self._thread.is_alive():
            self.errors.append(f"tracking did not finish within {self.timeout_s:g} s; the rest is spooled")
            with self._lock:
                while True:
                    try:
                        op = self._q.get_nowait()
                    except queue.Empty:
                        break
                    if op is not _STOP:
                        self._spool([op])
            return False
        return not self.failed

    def run_id(self, handle: str) -> str | None:
        return self.run_ids.get(handle)

    # -- the background thread ------------------------------------------------------------
    def _connect(self) -> Any:
        try:
            client = _client(self.uri)
            experiment_id(client, self.experiment)
            return client
        except Exception as err:
            self.errors.append(f"MLflow unavailable at {self.uri}: {err}")
            return None
        finally:
            self._ready.set()

    def _loop(self) -> None:
        client = self._connect()
        pending: list[dict[str, Any]] = []
        last = time.monotonic()
        stop = False
        while not stop:
            try:
                op = self._q.get(timeout=0.2)
                if op is _STOP:
                    stop = True
                else:
                    pending.append(op)
            except queue.Empty:
                pass
            if pending and (
                stop
                or time.monotonic() - last >= self.flush_every_s
                or any(o["op"] != "metrics" for o in pending)
            ):
                if client is None:
                    client = self._connect()
                with self._lock:
                    self._send(client, pending)
                pending = []
                last = time.monotonic()

    def _send(self, client: Any, ops: list[dict[str, Any]]) -> None:
        metrics: dict[str, list[list[Any]]] = {}
        for op in ops:
            if op["op"] == "metrics":
                metrics.setdefault(op["handle"], []).extend(op["points"])
                continue
            self._flush_metrics(client, metrics)
            metrics = {}
            self._apply(client, op)
        self._flush_metrics(client, metrics)

    def _flush_metrics(self, client: Any, metrics: dict[str, list[list[Any]]]) -> None:
        for handle, points in metrics.items():
            self._apply(client, {"op": "metrics", "handle": handle, "points": points})

    def _apply(self, client: Any, op: dict[str, Any]) -> None:
        handle = op["handle"]
        if client is None or handle in self.failed or (op["op"] != "create" and handle not in self.run_ids):
            self.failed.add(handle)
            self._spool([op])
            return
        try:
            self.run_ids[handle] = apply_op(client, op, self.run_ids)
        except Exception as err:
            self.errors.append(f"{op['op']} failed: {err}")
            self.failed.add(handle)
            self._spool([op])

    def _spool(self, ops: list[dict[str, Any]]) -> None:
        self.spool_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.spool_path, "a", encoding="utf-8") as f:
            for op in ops:
                rec = dict(op, uri=self.uri, run_id=self.run_ids.get(op["handle"]))
                if op.get("parent") and not op.get("parent_run_id"):
                    rec["parent_run_id"] = self.run_ids.get(op["parent"])
                f.write(json.dumps(rec) + "\n")
            f.flush()
            os.fsync(f.fileno())


def sync_spool(spool_path: str | Path, uri: str | None = None) -> tuple[int, int]:
    """Replay a spool into MLflow; returns (ops replayed, ops left). Safe to run again: metric
    points and params MLflow already holds are skipped, and replayed ops leave the spool."""
    path = Path(spool_path)
    if not path.exists():
        return 0, 0
    ops = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    clients: dict[str, Any] = {}
    run_ids: dict[str, str] = {}
    for op in ops:
        if op.get("run_id"):
            run_ids.setdefault(op["handle"], op["run_id"])
    done, left = 0, []
    for op in ops:
        target = uri or op.get("uri") or default_uri()
        try:
            client = clients.get(target) or clients.setdefault(target, _client(target))
            if op["op"] == "create" and op["handle"] in run_ids:
                done += 1
                continue  # created before the spool took over
            run_ids[op["handle"]] = apply_op(client, op, run_ids, dedupe=True)
            done += 1
        except Exception:
            left.append(dict(op, run_id=run_ids.get(op["handle"])))
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(o) + "\n" for o in left), encoding="utf-8")
    os.replace(tmp, path)
    if not left:
        path.unlink()
    return done, len(left)
