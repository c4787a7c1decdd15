"""One command's MLflow session: which store, which experiment, the parent run, closing.

Every command that tracks opens a session the same way: the URI from ``--tracking-uri``, else
the spec's ``tracking.uri``, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``; a
parent run tagged with its kind and the git commit (and the ``mlflow run`` run that started
it, if any); on close, a ``TrackingReport`` saying where the records went. A disabled session
(``--no-track``) has no tracker and every method does nothing.

>>> s = open_session(None, None, "demo", "/tmp/spool.jsonl", enabled=False)
>>> s.tracker is None, s.start_parent("plan", kind="plan"), s.close().enabled
(True, None, False)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paretrain.runtime.tracking.client import Tracker, default_uri, git_commit

__all__ = ["TrackingReport", "TrackingSession", "open_session", "parent_run"]


@dataclass(frozen=True, slots=True)
class TrackingReport:
    """Where a session's records went, for the command's last lines."""

    enabled: bool
    uri: str = ""
    experiment: str = ""
    run_id: str | None = None
    ok: bool = True
    spool_path: str = ""
    #: why records were spooled (the first error met): the store away, or busy (two processes
    #: writing one sqlite store at once can find it locked)
    reason: str = ""


@dataclass
class TrackingSession:
    """A tracker (None when tracking is off), its URI and experiment, and the parent run."""

    tracker: Tracker | None
    uri: str
    experiment: str
    parent: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    def start_parent(
        self,
        name: str,
        *,
        kind: str,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> str | None:
        """Start the command's parent run; returns its handle (None when tracking is off)."""
        if self.tracker is None:
            return None
        all_tags = {"paretrain.kind": kind, "mlflow.source.git.commit": git_commit(), **(tags or {})}
        if os.environ.get("MLFLOW_RUN_ID"):  # started by `mlflow run mlflow -e ...`: link that run
            all_tags["paretrain.project_run"] = os.environ["MLFLOW_RUN_ID"]
        self.parent = self.tracker.start_run(name, tags=all_tags, params=params)
        return self.parent

    def end_parent(self, status: str = "FINISHED") -> None:
        if self.tracker is not None and self.parent is not None:
            self.tracker.end_run(self.parent, status)

    def close(self, handle: str | None = None) -> TrackingReport:
        """Send what is queued (or spool it) and say where the run ``handle`` (default: the
        parent) went."""
        if self.tracker is None:
            return TrackingReport(enabled=False)
        ok = self.tracker.close()
        run_id = self.tracker.run_id(handle or self.parent or "")
        return TrackingReport(
            enabled=True,
            uri=self.uri,
            experiment=self.experiment,
            run_id=run_id,
            ok=ok and run_id is not None,
            spool_path=str(self.tracker.spool_path),
            reason=_first_line(self.tracker.errors[0]) if self.tracker.errors else "",
        )


def open_session(
    option_uri: str | None, spec_uri: str | None, experiment: str, spool: str | Path, *, enabled: bool = True
) -> TrackingSession:
    """A session for one command. Nothing reaches MLflow before the first record is logged."""
    if not enabled:
        return TrackingSession(None, "", experiment)
    uri = default_uri(option_uri or spec_uri)
    return TrackingSession(Tracker(uri, experiment, spool), uri, experiment)


@contextlib.contextmanager
def parent_run(
    session: TrackingSession, name: str, *, kind: str, params: Mapping[str, Any] | None = None
) -> Iterator[str | None]:
    """Start the parent run; end it FINISHED, or FAILED (and close the tracker) on an error."""
    handle = session.start_parent(name, kind=kind, params=params)
    try:
        yield handle
    except BaseException:
        session.end_parent("FAILED")
        if session.tracker is not None:
            session.tracker.close()
        raise
    session.end_parent("FINISHED")


def _first_line(text: str, most: int = 200) -> str:
    """The first line of an error, at most ``most`` characters (``...`` where cut)."""
    line = (text.splitlines() or [""])[0]
    return line if len(line) <= most else line[: most - 3] + "..."
