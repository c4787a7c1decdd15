"""The budget reserve on the real clock: one rule for the profile, the search and runs.

Before each unit of work (a training step, an evaluation, a timed measurement) the spend so
far, the time held but not yet charged and the reserve must fit the budget, or the work does
not start. The reserve covers the next unit of work and, where the caller writes a checkpoint
before it stops (a run), that checkpoint: each is reserved as ``reserve_s`` seconds at the
price of the hardware it holds.

On the real clock a unit's time is known only once it ran, so the reserve is ``MARGIN`` times
the largest of the unit's expected time, the slowest such unit lately and a floor the caller
knows (a stall of a shared machine), plus ``SLACK_S`` for the bookkeeping around it (the
ledger line, the price lookup). Why three times: on a machine shared with other processes a
step stalls to two or three times its recent slowest when the scheduler takes its core away;
three times covers that, and what it keeps back is three steps' money, which the run or the
measurement would spend within seconds anyway. On an emulated offer (the virtual clock) the
time of every unit is known in advance and the run's reserve is exact, with no margin
(``paretrain.runtime.run.guard``).

>>> reserve_s(0.1, slowest_s=0.25)
0.76
"""

from __future__ import annotations

__all__ = ["MARGIN", "SLACK_S", "reserve_s"]

#: how many times its slowest recent time a unit of work timed on the real clock is reserved for
MARGIN = 3.0
#: seconds reserved beside each unit for the bookkeeping around it
SLACK_S = 0.01


def reserve_s(expected_s: float, slowest_s: float = 0.0, floor_s: float = 0.0) -> float:
    """Seconds to reserve before a unit of work on the real clock: ``MARGIN`` times the largest
    of its expected time, the slowest such unit lately and ``floor_s``, plus ``SLACK_S``."""
    return MARGIN * max(expected_s, slowest_s, floor_s) + SLACK_S
