"""Spend by run, stage and kind over a period, summed exactly from the ledger files."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from paretrain.runtime.money.ledger import ledger_files, read_charges, spend_by

__all__ = ["ledger_report", "period_start", "project_spend"]

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
