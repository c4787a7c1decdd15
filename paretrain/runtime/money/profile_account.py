"""The profile envelope across attempts: what earlier, unfinished measurements of a profile spent.

A profile is measured under ``budget.envelopes.profile``. A measurement that a signal, a crash or
a fault in the user's workload stopped writes no profile, but what it spent is spent: its lines
stay in the profile's ledger (``ledger/profile-KEY.jsonl``), and running the same command again
measures from the start. So the envelope is held across the attempts at one profile, not per
attempt: an attempt may spend the envelope less what the attempts since the last *finished*
measurement of that profile spent. Without that, a crash-and-retry loop around ``paretrain plan``
would have no limit at all.

A finished measurement (its profile file written) closes the account with a zero-dollar event
line (``profile_written``); ``paretrain plan --reprofile`` then measures afresh under a whole
envelope, as the user asked. A ledger without that line (written before it was kept) whose
profile file exists counts as closed (``paretrain.runtime.profiling`` then writes the line, so
the attempts from then on count).

>>> import tempfile, pathlib
>>> from paretrain.runtime.money.ledger import Ledger
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> with Ledger(d / "profile-k.jsonl", "profile-k") as led:
...     _ = led.charge("profile", 0.25, stage="profile")
>>> open_spend(d / "profile-k.jsonl", profile_exists=False)
0.25
>>> mark_written(d / "profile-k.jsonl", "profile-k")
>>> open_spend(d / "profile-k.jsonl", profile_exists=True)
0.0
"""

from __future__ import annotations

import math
from pathlib import Path

from paretrain.runtime.money.ledger import Ledger, read_charges

__all__ = ["WRITTEN", "has_mark", "mark_written", "open_spend"]

#: the event that closes a profile's account: its measurement finished and was written
WRITTEN = "profile_written"


def open_spend(path: Path, *, profile_exists: bool) -> float:
    """What the profile's ledger at ``path`` holds since its last finished measurement (exact
    sum); 0 when there is no ledger, or one without a ``WRITTEN`` line beside a written profile."""
    if not path.exists():
        return 0.0
    since: list[float] = []
    closed = False
    for c in read_charges(path):
        if c.get("kind") == "event" and c.get("event") == WRITTEN:
            since, closed = [], True
        else:
            since.append(float(c.get("usd", 0.0)))
    if not closed and profile_exists:
        return 0.0
    return math.fsum(since)


def has_mark(path: Path) -> bool:
    """Whether the profile's ledger at ``path`` holds a ``WRITTEN`` line (it was kept)."""
    return any(c.get("kind") == "event" and c.get("event") == WRITTEN for c in read_charges(path))


def mark_written(path: Path, run_id: str) -> None:
    """Close the account of the profile whose ledger is ``path``: its measurement was written."""
    with Ledger(path, run_id) as ledger:
        ledger.charge("event", 0.0, stage="profile", event=WRITTEN)
