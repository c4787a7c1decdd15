"""Where the search envelope's reservations are kept, each change made under one lock.

A *book* keeps one row per trial that ever reserved money (``Hold``) and has one operation,
``transact(study, change)``: under a lock that every worker of the study takes, it reads the
study's rows and the time, calls ``change(now, rows)`` (which edits the rows in place and
returns a value), and writes back the rows that changed, all or nothing. Two transactions of
one study never interleave, on one machine or many; that is what makes the envelope's
arithmetic (``paretrain.runtime.trials.stored_envelope``) safe.

- ``SqlBook``: PostgreSQL (the store for several machines; any SQLAlchemy database other than
  sqlite works the same): tables ``paretrain_search_envelopes`` (one row per study, the lock,
  taken with ``SELECT ... FOR UPDATE``) and ``paretrain_search_holds``, in the study's own
  database. The time is the database's clock, so machines whose clocks differ agree on leases.
- ``SqliteBook``: the same tables in the sqlite file of the study, locked by ``BEGIN
  IMMEDIATE`` (sqlite's write lock); the file is switched to WAL so readers do not wait.
- ``FileBook``: next to a journal file: ``FILE.envelope.json`` rewritten atomically under
  ``fcntl.flock`` on ``FILE.envelope.lock`` (one machine, or a file system with POSIX locks).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Protocol, TypeVar

from paretrain.runtime.files import atomic_write_text

__all__ = ["HELD", "LAPSED", "SETTLED", "Book", "FileBook", "Hold", "SqlBook", "SqliteBook"]

T = TypeVar("T")

HELD, SETTLED, LAPSED = "held", "settled", "lapsed"
_COLUMNS = ("trial", "worker", "held_usd", "spent_usd", "state", "lease_until")


@dataclass
class Hold:
    """One trial's reservation: what it holds, what it spent once settled, its lease."""

    trial: int
    worker: str  # host-pid of the worker that reserved it
    held_usd: float
    spent_usd: float | None  # None while held
    state: str  # HELD | SETTLED | LAPSED
    lease_until: float  # seconds since the epoch, on the book's clock


Rows = dict[int, Hold]
Change = Callable[[float, Rows], T]


class Book(Protocol):
    def transact(self, study: str, change: Change[T]) -> T:
        """``change(now, rows)`` under the study's lock; the rows it edits are written back."""
        ...


def _changed(before: Rows, rows: Rows) -> list[Hold]:
    return [h for k, h in sorted(rows.items()) if before.get(k) != h]


def _snapshot(rows: Rows) -> Rows:
    return {k: replace(h) for k, h in rows.items()}


_SQLITE_TABLE = """CREATE TABLE IF NOT EXISTS paretrain_search_holds (
    study TEXT NOT NULL, trial INTEGER NOT NULL, worker TEXT NOT NULL, held_usd REAL NOT NULL,
    spent_usd REAL, state TEXT NOT NULL, lease_until REAL NOT NULL, PRIMARY KEY (study, trial))"""


class SqliteBook:
    """The holds in the study's sqlite file; ``BEGIN IMMEDIATE`` serializes the workers."""

    def __init__(self, path: str | Path, timeout_s: float = 60.0) -> None:
        self.path, self.timeout_s = str(path), timeout_s
        con = self._connect()
        try:
            # busy: another worker is switching it right now
            with contextlib.suppress(sqlite3.OperationalError):
                con.execute("PRAGMA journal_mode=WAL")
            con.execute(_SQLITE_TABLE)
        finally:
            con.close()

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: the transaction is ours (BEGIN IMMEDIATE), not the driver's
        return sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None)

    def transact(self, study: str, change: Change[T]) -> T:
        con = self._connect()
        try:
            con.execute("BEGIN IMMEDIATE")
            cur = con.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM paretrain_search_holds WHERE study = ?", (study,)
            )
            rows = {int(r[0]): Hold(*r) for r in cur.fetchall()}
            before = _snapshot(rows)
            out = change(time.time(), rows)
            con.executemany(
                f"INSERT OR REPLACE INTO paretrain_search_holds (study, {', '.join(_COLUMNS)}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(study, *_values(h)) for h in _changed(before, rows)],
            )
            con.execute("COMMIT")
            return out
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise
        finally:
            con.close()


def _values(h: Hold) -> tuple[Any, ...]:
    return (h.trial, h.worker, h.held_usd, h.spent_usd, h.state, h.lease_until)


class FileBook:
    """The holds in a JSON file next to a journal storage, under an exclusive ``flock``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.lock = self.path.with_name(self.path.name + ".lock")

    def transact(self, study: str, change: Change[T]) -> T:
        import fcntl

        with open(self.lock, "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also on kill -9
            data: dict[str, Any] = (
                json.loads(self.path.read_text()) if self.path.exists() else {"schema": 1, "studies": {}}
            )
            rows = {int(k): Hold(**v) for k, v in data["studies"].get(study, {}).items()}
            before = _snapshot(rows)
            out = change(time.time(), rows)
            if _changed(before, rows):
                data["studies"][study] = {str(k): asdict(h) for k, h in sorted(rows.items())}
                atomic_write_text(self.path, json.dumps(data, indent=1, sort_keys=True))
            return out


class SqlBook:
    """The holds in a SQLAlchemy database (PostgreSQL): the study's row in
    ``paretrain_search_envelopes`` is the lock, taken with ``SELECT ... FOR UPDATE``."""

    def __init__(self, url: str, connect_args: dict[str, Any] | None = None) -> None:
        import sqlalchemy as sa

        self.sa = sa
        self.engine = sa.create_engine(url, pool_pre_ping=True, connect_args=connect_args or {})
        meta = sa.MetaData()
        self.locks = sa.Table(
            "paretrain_search_envelopes", meta, sa.Column("study", sa.String(512), primary_key=True)
        )
        self.holds = sa.Table(
            "paretrain_search_holds",
            meta,
            sa.Column("study", sa.String(512), primary_key=True),
            sa.Column("trial", sa.Integer, primary_key=True),
            sa.Column("worker", sa.String(256), nullable=False),
            sa.Column("held_usd", sa.Float, nullable=False),
            sa.Column("spent_usd", sa.Float),
            sa.Column("state", sa.String(16), nullable=False),
            sa.Column("lease_until", sa.Float, nullable=False),
        )
        self._retry(lambda: meta.create_all(self.engine))  # workers on several machines may race here
        self._known: set[str] = set()

    def _retry(self, work: Callable[[], Any], tries: int = 5) -> Any:
        """``work``, again after a short wait if a concurrent DDL or insert got in first."""
        for attempt in range(tries):
            try:
                return work()
            except self.sa.exc.DBAPIError:
                if attempt == tries - 1:
                    raise
                time.sleep(0.1 * (attempt + 1))

    def _lock_row(self, study: str) -> None:
        if study in self._known:
            return

        def insert() -> None:
            with self.engine.begin() as con:
                if (
                    con.execute(self.sa.select(self.locks.c.study).where(self.locks.c.study == study)).first()
                    is None
                ):
                    con.execute(self.locks.insert().values(study=study))

        self._retry(insert)
        self._known.add(study)

    def _now(self, con: Any) -> float:
        if self.engine.dialect.name == "postgresql":  # one clock for every machine: the server's
            return float(con.execute(self.sa.text("SELECT EXTRACT(EPOCH FROM clock_timestamp())")).scalar())
        return time.time()

    def transact(self, study: str, change: Change[T]) -> T:
        sa, h = self.sa, self.holds
        self._lock_row(study)
        with self.engine.begin() as con:
            con.execute(sa.select(self.locks.c.study).where(self.locks.c.study == study).with_for_update())
            now = self._now(con)
            cur = con.execute(sa.select(*[h.c[c] for c in _COLUMNS]).where(h.c.study == study))
            rows = {int(r[0]): Hold(*r) for r in cur.fetchall()}
            before = _snapshot(rows)
            out = change(now, rows)
            for hold in _changed(before, rows):
                values = dict(zip(_COLUMNS, _values(hold), strict=False))
                if hold.trial in before:
                    con.execute(
                        h.update().where(h.c.study == study, h.c.trial == hold.trial).values(**values)
                    )
                else:
                    con.execute(h.insert().values(study=study, **values))
            return out

    def close(self) -> None:
        self.engine.dispose()
