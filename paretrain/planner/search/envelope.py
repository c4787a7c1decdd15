"""The search envelope: one pot of money for every worker of a study.

A trial may train only on money it holds. Before it trains it *reserves* what it expects to
spend at worst (``first_hold``); while it trains it asks for more in chunks (``more_hold``)
when its meter would pass what it holds; when it ends it *settles*: records what it spent and
gives the rest back. Every reservation is granted out of ``free = budget - spent - held`` and
never more, so whatever the interleaving of workers, ``spent + held <= budget`` holds after
every step, and a trial that spends no more than it holds (the lab's meter guarantees that)
keeps the search's total spend within its envelope.

``SearchEnvelope`` is what the planner needs; the runtime implements it in the study's own
storage (``paretrain.runtime.trials``: a table and a lock in the same database, with a lease per
reservation so that a worker that dies gives its reservation back, counted as spent).
``LocalEnvelope`` is the in-process one, for a single worker and for tests.

>>> env = LocalEnvelope(1.0)
>>> env.reserve(0, 0.75), env.reserve(1, 0.75)
(0.75, 0.25)
>>> env.settle(0, 0.5); env.state().free_usd
0.25
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

__all__ = ["CHUNK_SHARE", "EnvelopeState", "LocalEnvelope", "SearchEnvelope", "first_hold", "more_hold"]

#: a reservation grows in steps of at least this share of the envelope
CHUNK_SHARE = 1.0 / 16.0
#: a trial reserves this many times the dearest full trial so far before it trains
HEADROOM = 1.25
#: before any trial has finished, a trial starts holding this share of the envelope (what it
#: does not spend comes back when it settles; a worker waits for it rather than stop)
FIRST_SHARE = 1.0 / 4.0


@dataclass(frozen=True, slots=True)
class EnvelopeState:
    """The envelope as every worker sees it: settled spend, reservations of trials still
    training, and the trials whose worker vanished (their lease ran out; their reservation
    was counted as spent)."""

    budget_usd: float
    spent_usd: float
    held_usd: float
    lost: tuple[int, ...] = ()

    @property
    def free_usd(self) -> float:
        return self.budget_usd - self.spent_usd - self.held_usd


class SearchEnvelope(Protocol):
    """Money shared by the workers of one study; every method is one atomic step."""

    def reserve(self, trial: int, usd: float) -> float:
        """Hold up to ``usd`` more for ``trial`` (never more than is free); returns what this
        call added, 0.0 when nothing is free or the trial's reservation was lost."""
        ...

    def settle(self, trial: int, spent_usd: float | None) -> None:
        """The trial ended having spent ``spent_usd`` (None: unknown, counted as all it held);
        the rest of its reservation is free again."""
        ...

    def state(self) -> EnvelopeState:
        """Budget, spent, held and lost trials now."""
        ...


def first_hold(budget_usd: float, dearest_full_trial_usd: float | None) -> float:
    """What a trial reserves before it trains: its worst case as far as the study knows (the
    dearest trial that ran to its sample budget, with headroom), or a share of the envelope
    before any has."""
    if dearest_full_trial_usd is None or dearest_full_trial_usd <= 0:
        return budget_usd * FIRST_SHARE
    return min(budget_usd, HEADROOM * dearest_full_trial_usd)


def more_hold(budget_usd: float, need_usd: float) -> float:
    """What a trial asks for when it needs ``need_usd`` more: at least a chunk, so that a long
    trial takes the envelope's lock a few times, not at every step."""
    return max(need_usd, budget_usd * CHUNK_SHARE)


class LocalEnvelope:
    """The envelope in this process (one worker; tests): the same rules, no storage."""

    def __init__(self, budget_usd: float, spent_usd: float = 0.0) -> None:
        self.budget = budget_usd
        self.spent: dict[int | str, float] = {"before": spent_usd}
        self.held: dict[int, float] = {}

    def reserve(self, trial: int, usd: float) -> float:
        grant = min(usd, max(0.0, self.state().free_usd))
        if grant <= 0 or trial in self.spent:
            return 0.0
        self.held[trial] = self.held.get(trial, 0.0) + grant
        return grant

    def settle(self, trial: int, spent_usd: float | None) -> None:
        held = self.held.pop(trial, 0.0)
        self.spent[trial] = held if spent_usd is None else spent_usd

    def state(self) -> EnvelopeState:
        return EnvelopeState(self.budget, math.fsum(self.spent.values()), math.fsum(self.held.values()))
