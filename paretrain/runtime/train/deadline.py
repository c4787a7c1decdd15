"""The budget's deadline on the real clock: a step or an evaluation of the user's code that is
still running when the budget can pay for no more is stopped there.

The budget guard (``paretrain.runtime.run.guard``) reserves, before each step, three times the
slowest recent step, a due evaluation and a final checkpoint. A step that suddenly takes far
longer (a data source that hangs, a ``time.sleep`` in ``loss()``, a swap storm) would pass that
reserve, and the run charges the real time the hardware was held. So before a step or an
evaluation starts, the guard says the moment (``BudgetGuard.stop_at``) past which holding the
hardware would leave less than the cost of a final checkpoint, and a timer (``SIGALRM``) set to
that moment raises ``Overran`` in the user's code if it is still running then.

- ``Overran`` derives from ``BaseException``, like ``KeyboardInterrupt``: the workload's own
  ``except Exception`` does not swallow it. It is raised only while the user's code runs (the
  executor's bookkeeping, the ledger's writes in particular, is never cut), and the timer
  repeats every ``REPEAT_S`` until the step returns, in case a bare ``except:`` did swallow it
  (and a step begun after the moment is cut as soon as it begins).
  A long call into compiled code (one huge matrix multiply) is cut when it returns.
- What the step was doing is lost: the weights may be half-updated, so no checkpoint is written;
  the run stops with exit 3 (``overran``), its last checkpoint kept, and what the checkpoint's
  reserve did not pay for is what stopping costs. ``--resume`` continues from that checkpoint
  once the budget is raised.
- Only the main thread takes signals: a run driven from another thread, and the processes of a
  data-parallel stage (a collective cut mid-way would hang the others), have no deadline; the
  guard's reserve is all they have. On the virtual clock of an emulated offer a step costs the
  plan's step time whatever it takes here: there is nothing to stop.
- A workload that sets its own ``SIGALRM`` handler or ``signal.alarm`` has it replaced while
  a run trains.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any, TypeVar

__all__ = ["REPEAT_S", "Deadline", "Overran"]

T = TypeVar("T")

#: how often the timer fires again once the deadline has passed, until the step returns (a
#: step begun after the moment is cut within this)
REPEAT_S = 0.005


class Overran(BaseException):
    """The user's code was still running when the budget could pay for no more of it; its
    argument says what was running (``a step``, ``an evaluation``)."""


class Deadline:
    """The run's timer: ``timed(stop_at)`` sets it for a span of the user's code; ``armed`` says
    whether the user's code is running now (only then does the timer raise)."""

    def __init__(self) -> None:
        self.active = False
        self.armed = False
        self.what = "a step"
        self._before: Any = None

    def __enter__(self) -> Deadline:
        if threading.current_thread() is threading.main_thread():
            self._before = signal.signal(signal.SIGALRM, self._handle)
            self.active = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self.active:
            self.clear()
            signal.signal(signal.SIGALRM, self._before)
            self.active = False

    def set(self, stop_at: float, what: str = "a step") -> None:
        """Fire at ``stop_at`` (a ``time.perf_counter()`` moment), then every ``REPEAT_S``, while
        ``what`` runs."""
        self.what = what
        if not self.active or math.isinf(stop_at):
            return
        signal.setitimer(signal.ITIMER_REAL, max(stop_at - time.perf_counter(), 1e-4), REPEAT_S)

    def clear(self) -> None:
        self.armed = False
        if self.active:
            signal.setitimer(signal.ITIMER_REAL, 0.0)

    @contextlib.contextmanager
    def during(self, stop_at: float, what: str = "a step") -> Iterator[Deadline]:
        """The timer set to ``stop_at`` while the block runs (``what`` says what it cuts); the
        user's code in it runs through ``guarded``."""
        self.set(stop_at, what)
        try:
            yield self
        finally:
            self.clear()

    def guarded(self, fn: Callable[[], T]) -> Callable[[], T]:
        """``fn`` (the user's code: a step, an evaluation), armed while it runs: only there does
        the timer raise ``Overran``."""

        def call() -> T:
            self.armed = True
            try:
                return fn()
            finally:
                self.armed = False

        return call

    def _handle(self, _signum: int, _frame: FrameType | None) -> None:
        if self.armed:  # stays armed: raised again while the step goes on (a bare ``except:``)
            raise Overran(self.what)
