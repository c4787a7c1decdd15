"""SIGTERM and SIGINT while paretrain measures: the first stops the work at its next boundary,
the second at once.

The first signal only sets a flag (``StopFlag``); the work asks it at each of its boundaries (a
lab's meter before every unit of work, a search worker before every step and trial) through
``StopFlag.check``, which raises the error the flag was made with: the caller then settles what
was spent and exits 128 + the signal's number (143 for SIGTERM, 130 for SIGINT) with one line. A
second signal exits at once, saying ``again``. A signal the process ignores (a search pool's
worker ignores SIGINT: its parent forwards SIGTERM) stays ignored.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

from paretrain.planner.errors import StopError

__all__ = ["SIGNALS", "MeasureInterrupted", "StopFlag", "stop_on_signals"]

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class MeasureInterrupted(StopError):
    """Measurements stopped by a signal at a boundary; exits 128 + the signal's number."""

    def __init__(self, signum: int, message: str = "") -> None:
        self.signum = signum
        self.signal_name = signal.Signals(signum).name
        self.exit_code = 128 + signum  # 143 / 130 rather than StopError's 3
        super().__init__(message or f"stopped by {self.signal_name}")


class StopFlag:
    """Set by the first signal; ``check`` raises ``interrupted(signum)`` once it is set. A
    second signal writes ``paretrain: <SIGNAL> again: stopped at once; <again>`` and exits."""

    def __init__(
        self,
        interrupted: Callable[[int], BaseException] = MeasureInterrupted,
        again: str = "what was charged is in the ledger",
    ) -> None:
        self.signum: int | None = None
        self.interrupted, self.again = interrupted, again

    def check(self) -> None:
        if self.signum is not None:
            raise self.interrupted(self.signum)

    def handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.signum is not None:  # the second: at once
            name = signal.Signals(signum).name
            sys.stderr.write(f"paretrain: {name} again: stopped at once; {self.again}\n")
            sys.stderr.flush()
            os._exit(128 + signum)
        self.signum = signum


@contextlib.contextmanager
def stop_on_signals(flag: StopFlag | None = None) -> Iterator[StopFlag]:
    """Handle SIGTERM and SIGINT with ``flag`` (a new one by default) while the block runs, then
    put the previous handlers back. Off the main thread (where Python takes no handlers) the
    flag is only ever set by hand."""
    flag = flag if flag is not None else StopFlag()
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for s in SIGNALS:
            if signal.getsignal(s) is not signal.SIG_IGN:
                previous[s] = signal.signal(s, flag.handle)
    try:
        yield flag
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
