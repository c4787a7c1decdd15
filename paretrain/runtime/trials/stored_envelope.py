"""The search envelope kept in the study's storage: reservations, settlements and leases.

This is the runtime's ``paretrain.planner.search.envelope.SearchEnvelope``. Every call is one transaction of a
``Book`` (``paretrain.runtime.trials.books``), under a lock all workers of the study share.

The protocol, for a trial ``t`` of a study with envelope ``B``:

1. ``reserve(t, usd)``: lapse the leases that ran out (below); ``free = B - spent - held``
   over all of the study's rows; grant ``min(usd, free)`` (nothing when ``free <= 0``), add
   it to ``t``'s row and renew its lease. A trial whose row lapsed is granted nothing.
2. The trial trains; its meter stops it before its spend passes what it holds, asking
   ``reserve(t, more)`` first (``paretrain.runtime.train.lab_meter``, with the reserve rule of
   ``paretrain.runtime.money.reserve``).
3. ``settle(t, spent)``: the row records what the trial spent (the ledger's figure) and
   holds nothing more; the rest is free for the next reservation.

Leases: while this process holds a reservation, a thread renews the lease every quarter
lease. A row whose lease ran out (its worker was killed, or lost the database for a whole
lease) *lapses* at the next transaction of any worker: it counts as spent in full, since
its worker may have spent every cent of it; the trial is reported in ``state().lost`` so
that the search fails it. If its worker was alive after all, it gets no more money and its
``settle`` replaces the full count with what its ledger says.

The guarantee: the sum over the study's rows of ``spent`` (settled and lapsed) and ``held``
never exceeds ``B`` after a transaction, whatever the number of workers and machines and
however their calls interleave; so the search's total spend stays within ``B`` as long as
each trial spends no more than it holds.

The lease defaults to 60 s; ``PARETRAIN_SEARCH_LEASE_S`` changes it (tests use a few seconds).
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path

from paretrain.planner.search.envelope import EnvelopeState
from paretrain.runtime.trials.books import (
    HELD,
    LAPSED,
    SETTLED,
    Book,
    FileBook,
    Hold,
    Rows,
    SqlBook,
    SqliteBook,
)

__all__ = ["LEASE_ENV", "StoredEnvelope", "lease_seconds", "open_envelope"]

LEASE_ENV = "PARETRAIN_SEARCH_LEASE_S"
DEFAULT_LEASE_S = 60


def lease_seconds() -> int:
    """The lease, a multiple of 4 seconds: renewed (and Optuna's heartbeat beaten) every quarter."""
    raw = os.environ.get(LEASE_ENV, "")
    seconds = int(raw) if raw.strip().isdigit() else DEFAULT_LEASE_S
    return 4 * max(1, round(seconds / 4))


def _lapse(rows: Rows, now: float) -> None:
    for row in rows.values():
        if row.state == HELD and row.lease_until < now:
            row.state, row.spent_usd = LAPSED, row.held_usd  # money may have been spent: all of it


def _state(budget: float, rows: Rows) -> EnvelopeState:
    spent = math.fsum(r.spent_usd or 0.0 for r in rows.values() if r.state != HELD)
    held = math.fsum(r.held_usd for r in rows.values() if r.state == HELD)
    lost = tuple(sorted(r.trial for r in rows.values() if r.state == LAPSED))
    return EnvelopeState(budget, spent, held, lost)


class StoredEnvelope:
    """One worker's handle on the study's envelope in ``book``."""

    def __init__(
        self,
        book: Book,
        study: str,
        budget_usd: float,
        *,
        lease_s: float = DEFAULT_LEASE_S,
        worker: str | None = None,
    ) -> None:
        self.book, self.study, self.budget, self.lease_s = book, study, budget_usd, lease_s
        self.worker = worker or f"{socket.gethostname()}-{os.getpid()}"
        self._mine: set[int] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def reserve(self, trial: int, usd: float) -> float:
        def change(now: float, rows: Rows) -> float:
            _lapse(rows, now)
            row = rows.get(trial)
            grant = min(usd, max(0.0, _state(self.budget, rows).free_usd))
            if grant <= 0 or (row is not None and row.state != HELD):
                return 0.0
            if row is None:
                rows[trial] = Hold(trial, self.worker, grant, None, HELD, now + self.lease_s)
            else:
                row.held_usd, row.lease_until = row.held_usd + grant, now + self.lease_s
            return grant

        grant = self.book.transact(self.study, change)
        if grant > 0:
            self._mine.add(trial)
            self._start_lease()
        return grant

    def settle(self, trial: int, spent_usd: float | None) -> None:
        self._mine.discard(trial)

        def change(now: float, rows: Rows) -> None:
            _lapse(rows, now)
            row = rows.get(trial)
            if row is not None and row.state != SETTLED:
                row.spent_usd = row.held_usd if spent_usd is None else spent_usd
                row.state = SETTLED

        self.book.transact(self.study, change)

    def state(self) -> EnvelopeState:
        def change(now: float, rows: Rows) -> EnvelopeState:
            _lapse(rows, now)
            return _state(self.budget, rows)

        return self.book.transact(self.study, change)

    def renew(self) -> None:
        """Extend the leases of this worker's reservations; a lapsed one is no longer ours."""
        mine = set(self._mine)

        def change(now: float, rows: Rows) -> set[int]:
            gone = set()
            for trial in mine:
                row = rows.get(trial)
                if row is not None and row.state == HELD and row.lease_until >= now:
                    row.lease_until = now + self.lease_s
                else:
                    gone.add(trial)
            return gone

        if mine:
            self._mine -= self.book.transact(self.study, change)

    def _start_lease(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._renewing, name="paretrain-search-lease", daemon=True)
            self._thread.start()

    def _renewing(self) -> None:
        while not self._stop.wait(self.lease_s / 4):
            with contextlib.suppress(Exception):
                self.renew()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        close: Callable[[], None] | None = getattr(self.book, "close", None)
        if close is not None:
            close()


def open_envelope(
    storage: str, study: str, budget_usd: float, *, lease_s: float | None = None
) -> StoredEnvelope:
    """The envelope of ``study`` in the storage the study lives in: a table of its database
    (``sqlite:///FILE``, ``postgresql://...``) or a file next to its journal (``journal:FILE``)."""
    lease = float(lease_s if lease_s is not None else lease_seconds())
    book: Book
    if storage.startswith("journal:"):
        journal = Path(storage[len("journal:") :])
        book = FileBook(journal.with_name(journal.name + ".envelope.json"))
    elif storage.startswith("sqlite:"):
        from sqlalchemy.engine import make_url

        book = SqliteBook(make_url(storage).database or ":memory:")
    else:
        book = SqlBook(storage)
    return StoredEnvelope(book, study, budget_usd, lease_s=lease)
