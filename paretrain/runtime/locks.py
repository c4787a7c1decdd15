"""Exclusive locks between paretrain processes on one machine: money has one writer at a time.

A ledger's budget is what its file says is left when a process opens it. Two processes writing
one ledger would each see the whole of it left, and each spend it. This can happen in two ways:
a ``paretrain run --resume`` started while the run it resumes still trains (a supervisor that
restarts too eagerly), or two ``paretrain plan`` measuring the same profile at once. So:

- a ledger is locked by the process that writes it, for as long as it is open
  (``paretrain.runtime.money.ledger.Ledger``); a second writer gets ``Busy`` (exit 2), before it
  has written anything;
- ``paretrain run --resume`` of a run whose ledger another process holds is refused before it
  writes anything (``probe``, from ``paretrain.cli.running``);
- a profile is measured by one process at a time (``paretrain.runtime.profiling``): a second
  ``paretrain plan`` of the same spec waits, and then reuses the profile the first one wrote.

The locks are ``flock(2)`` locks. The kernel drops a lock when its holder's process ends, however
it ends (``kill -9`` included): a lock never outlives its process, and nothing needs clearing by
hand. A profile's lock file (``profiles/KEY.lock``) stays; a ledger is its own lock file.
``flock`` binds processes on one machine: a workspace on a network file system that several
machines write is not covered.

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "x.lock"
>>> with held(p, "the thing"):
...     try:
...         with held(p, "the thing"):
...             pass
...     except Busy as err:
...         print(str(err).split(";")[0].endswith("is using the thing"))
True
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from paretrain.planner.errors import InputError

__all__ = ["POLL_S", "Busy", "busy", "held", "holder", "lock_fd", "probe"]

#: how often a process waiting for a lock tries again (it checks for signals in between)
POLL_S = 0.25


class Busy(InputError):
    """Another process holds the lock: exit 2, nothing written."""


def lock_fd(fd: int) -> bool:
    """Take the exclusive lock of the open file ``fd`` without waiting: False when another open
    file (in this process or another) holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def holder(path: Path) -> int | None:
    """The process that holds a ``flock`` on ``path``, read from ``/proc/locks`` (Linux); None when
    no process does, or the system does not say."""
    try:
        st = path.stat()
        table = Path("/proc/locks").read_text()
    except OSError:
        return None
    dev = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in table.splitlines():
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 12345 08:01:1234567 0 EOF" (a waiter's line has "->" first)
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == dev and fields[4].isdigit():
            return int(fields[4])
    return None


def busy(path: Path, what: str, fix: str) -> Busy:
    """The one line for a lock another process holds."""
    pid = holder(path)
    who = f"process {pid}" if pid is not None else "another process"
    stop = f"stop it (kill -TERM {pid})" if pid is not None else "stop it"
    return Busy(
        f"{path}: {who} is using {what}; {fix}. To fix: wait for it to end or {stop}, then run the command again"
    )


@contextlib.contextmanager
def held(
    path: Path,
    what: str,
    *,
    fix: str = "two processes would each spend the budget it has left",
    wait: Callable[[str], None] | None = None,
    check: Callable[[], None] | None = None,
) -> Iterator[bool]:
    """Hold the lock file ``path`` (made if missing) while the block runs; yields whether it had
    to wait for another process. Without ``wait`` a lock that another process holds raises
    ``Busy`` at once; with it, ``wait`` is told once why, and the lock is tried again every
    ``POLL_S`` seconds, calling ``check`` (which may raise, on a signal) in between."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        waited = False
        while not lock_fd(fd):
            if wait is None:
                raise busy(path, what, fix)
            if not waited:
                pid = holder(path)
                wait(
                    f"waiting for {'process ' + str(pid) if pid else 'another process'}, which is using {what}"
                )
                waited = True
            if check is not None:
                check()
            time.sleep(POLL_S)
        yield waited
    finally:
        os.close(fd)  # closing the file drops its lock


def probe(path: Path, what: str, fix: str = "two processes would each spend the budget it has left") -> None:
    """Raise ``Busy`` when another process holds the lock of the existing file ``path`` (a run's
    ledger that a ``--resume`` is about to open), before anything is written; nothing when the
    file does not exist. Its holder may still take it between this and the open: the open then
    raises ``Busy`` itself."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        if not lock_fd(fd):
            raise busy(path, what, fix)
    finally:
        os.close(fd)
