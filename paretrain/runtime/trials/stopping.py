"""SIGTERM and SIGINT to a search worker: the first stops it at the next step, the second at once.

The first signal only sets a flag (``StopFlag``, ``paretrain.runtime.train.signals``); the worker
asks it before every training step and before every trial (``StopFlag.check``), so it stops at a
point where it can fail the trial in flight, settle that trial's spend to the envelope and close
its ledger; then it exits 128 + the signal's number (143 for SIGTERM, 130 for SIGINT) with one
line saying how to go on. A second signal exits at once: the trial in flight is then failed by
Optuna's heartbeat and its reservation counts as spent once its lease lapses
(``paretrain.runtime.trials.stored_envelope``). A signal the process ignores (a pool's worker
ignores SIGINT: its parent forwards SIGTERM) stays ignored.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

from paretrain.planner.search.faults import SearchInterrupted
from paretrain.runtime.train import signals

__all__ = ["CONTINUE", "StopFlag", "interrupted", "stop_on_signals"]

CONTINUE = "run the same paretrain search command again: it continues the study"


def interrupted(signum: int) -> SearchInterrupted:
    """The error a worker stopped by ``signum`` ends with (one line, exit 128 + signum)."""
    name = signal.Signals(signum).name
    return SearchInterrupted(
        name,
        128 + signum,
        f"search stopped by {name}: the trial in flight was failed and what it spent settled to "
        f"the envelope. To continue: {CONTINUE}",
    )


class StopFlag(signals.StopFlag):
    """Set by the first signal; ``check`` raises ``SearchInterrupted`` once it is set."""

    def __init__(self) -> None:
        super().__init__(
            interrupted, f"the trial in flight is failed once its lease lapses. To continue: {CONTINUE}"
        )


@contextlib.contextmanager
def stop_on_signals(flag: StopFlag | None = None) -> Iterator[StopFlag]:
    """Handle SIGTERM and SIGINT with ``flag`` (a new one by default) while the block runs
    (``paretrain.runtime.train.signals.stop_on_signals``)."""
    flag = flag if flag is not None else StopFlag()
    with signals.stop_on_signals(flag):
        yield flag
