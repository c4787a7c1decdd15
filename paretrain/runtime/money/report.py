"""Spend by run, stage and kind over a period, summed exactly from the ledger files, and what the
project has committed against its ceiling: that spend plus what running runs may still spend."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from paretrain.runtime.locks import holder
from paretrain.runtime.money.ledger import ledger_files, read_charges, spend_by

__all__ = ["RUN_CAP", "committed_usd", "ledger_report", "period_start", "project_spend"]

#: the zero-dollar event a run under a project ceiling writes when it opens its ledger, with
#: ``cap_usd``: what the run may spend in all (``paretrain.runtime.run.guard.run_cap``)
RUN_CAP = "run_cap"

_PERIOD_S = {"day": 86400.0, "week": 7 * 86400.0}


def period_start(period: str, now: float | None = None) -> float:
    """Start of the current period (UTC): today, this ISO week, this calendar month."""
    now = time.time() if now is None else now
    g = time.gmtime(now)
    if period == "all":
        return 0.0
    if period == "day":
        return float(int(now // 86400) * 86400)
    if period == "week":
        day0 = int(now // 86400) * 86400
        return float(day0 - g.tm_wday * 86400)
    if period == "month":
        import calendar

        return float(calendar.timegm((g.tm_year, g.tm_mon, 1, 0, 0, 0)))
    raise ValueError(f"`period` must be all, day, week or month, but got {period!r}")


def _charges(folder: Path, since: float) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for f in ledger_files(folder):
        out.extend(c for c in read_charges(f) if c.get("t", 0.0) >= since)
    return out


def project_spend(folder: Path, period: str) -> float:
    """All money the project's ledgers hold for the current period."""
    return math.fsum(c["usd"] for c in _charges(folder, period_start(period)))


def committed_usd(folder: Path, period: str, own: Path) -> float:
    """What the project's ledgers other than ``own`` hold against its ceiling this period: their
    spend, plus, for a run that is still running (another process holds its ledger's lock,
    ``paretrain.runtime.locks.holder``), what its cap still lets it spend. A run's cap is its
    last ``RUN_CAP`` event; a ledger without one (a profile, a run from before the ceiling was
    set) counts only what it spent. Where the system does not say who holds a lock (not Linux),
    only spend counts, as when each run read the ceiling alone."""
    since, parts = period_start(period), []
    for f in ledger_files(folder):
        if f.resolve() == own.resolve():
            continue
        charges = list(read_charges(f))
        parts.append(math.fsum(c["usd"] for c in charges if c.get("t", 0.0) >= since))
        caps = [c for c in charges if c.get("kind") == "event" and c.get("event") == RUN_CAP]
        if caps and holder(f) is not None:
            left = float(caps[-1].get("cap_usd", 0.0)) - math.fsum(c["usd"] for c in charges)
            parts.append(max(0.0, left))
    return math.fsum(parts)


def ledger_report(folder: Path, period: str) -> tuple[list[list[str]], float]:
    charges = [c for c in _charges(folder, period_start(period)) if c.get("kind") != "event"]
    groups = spend_by(charges, ("run_id", "stage", "kind"))
    secs: dict[tuple[str, str, str], float] = {}
    for c in charges:
        key = (c["run_id"], c["stage"], c["kind"])
        secs[key] = secs.get(key, 0.0) + c.get("seconds", 0.0)
    rows = [
        [run, stage, kind, f"{usd:.9f}", f"{secs[(run, stage, kind)]:.2f}"]
        for (run, stage, kind), usd in groups.items()
    ]
    return rows, math.fsum(c["usd"] for c in charges)
