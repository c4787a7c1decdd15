"""Price sources: what an offer costs at a run time, whether it is available, how fast it runs.

One small interface (``PriceSource``) with three implementations:

- ``StaticPrices``: the plan's prices (catalog or local price) for the whole run;
- ``TracePrices``: a CSV trace ``t_s, hardware, price_usd_per_h, available`` (the docs: reference, files),
  piecewise constant from each row's time; before an offer's first row, its plan price;
- ``ScriptedEvents``: events from the spec (``runtime.events``) on top of another source:
  price x k from t, step slowdown x k from t, preemption at t for a duration.

``cost(source, hardware, t, dt)`` integrates the price over [t, t + dt] exactly, across every
change inside it, which is what keeps the hard cap exact under price changes.
"""

from __future__ import annotations

import bisect
import csv
import io
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from paretrain.planner.errors import SpecError

__all__ = [
    "Event",
    "PriceSource",
    "ScriptedEvents",
    "StaticPrices",
    "TracePrices",
    "cost",
    "parse_events",
    "parse_trace",
]


class PriceSource(Protocol):
    def price_usd_per_h(self, hardware: str, t_s: float) -> float:
        """Price of ``hardware`` at ``t_s`` seconds into the run."""
        ...

    def available(self, hardware: str, t_s: float) -> bool:
        """Whether ``hardware`` can run at ``t_s`` (False: preempted or not offered)."""
        ...

    def slowdown(self, hardware: str, t_s: float) -> float:
        """Factor on step time at ``t_s`` (1.0: as planned)."""
        ...

    def changes(self, hardware: str, t0: float, t1: float) -> list[float]:
        """Times in (t0, t1) at which anything about ``hardware`` changes."""
        ...


class StaticPrices:
    """Fixed prices for the whole run; always available; no slowdown."""

    def __init__(self, prices_usd_per_h: Mapping[str, float]) -> None:
        self.prices = dict(prices_usd_per_h)

    def price_usd_per_h(self, hardware: str, t_s: float) -> float:
        return self.prices[hardware]

    def available(self, hardware: str, t_s: float) -> bool:
        return True

    def slowdown(self, hardware: str, t_s: float) -> float:
        return 1.0

    def changes(self, hardware: str, t0: float, t1: float) -> list[float]:
        return []


class TracePrices:
    """A price and availability trace; each row holds from its time until the next row."""

    def __init__(self, rows: Iterable[tuple[float, str, float, bool]], base: Mapping[str, float]) -> None:
        self.base = dict(base)
        self.times: dict[str, list[float]] = {}
        self.rows: dict[str, list[tuple[float, bool]]] = {}
        for t, h, price, avail in rows:
            self.times.setdefault(h, []).append(t)
            self.rows.setdefault(h, []).append((price, avail))

    def _row(self, hardware: str, t: float) -> tuple[float, bool] | None:
        times = self.times.get(hardware)
        if not times:
            return None
        i = bisect.bisect_right(times, t) - 1
        return self.rows[hardware][i] if i >= 0 else None

    def price_usd_per_h(self, hardware: str, t_s: float) -> float:
        row = self._row(hardware, t_s)
        return row[0] if row else self.base[hardware]

    def available(self, hardware: str, t_s: float) -> bool:
        row = self._row(hardware, t_s)
        return row[1] if row else True

    def slowdown(self, hardware: str, t_s: float) -> float:
        return 1.0

    def changes(self, hardware: str, t0: float, t1: float) -> list[float]:
        times = self.times.get(hardware, [])
        lo, hi = bisect.bisect_right(times, t0), bisect.bisect_left(times, t1)
        return times[lo:hi]


@dataclass(frozen=True, slots=True)
class Event:
    """A scripted change: ``kind`` price (x factor), slowdown (x factor) or preempt, from
    ``at_s`` for ``duration_s`` (inf: to the end), on ``hardware`` (empty: every offer)."""

    at_s: float
    kind: str
    factor: float = 1.0
    duration_s: float = math.inf
    hardware: str = ""

    def active(self, hardware: str, t: float) -> bool:
        return (
            not self.hardware or self.hardware == hardware
        ) and self.at_s <= t < self.at_s + self.duration_s


class ScriptedEvents:
    """Scripted events layered on another price source."""

    def __init__(self, inner: PriceSource, events: Sequence[Event]) -> None:
        self.inner = inner
        self.events = tuple(events)

    def price_usd_per_h(self, hardware: str, t_s: float) -> float:
        p = self.inner.price_usd_per_h(hardware, t_s)
        for e in self.events:
            if e.kind == "price" and e.active(hardware, t_s):
                p *= e.factor
        return p

    def available(self, hardware: str, t_s: float) -> bool:
        if any(e.kind == "preempt" and e.active(hardware, t_s) for e in self.events):
            return False
        return self.inner.available(hardware, t_s)

    def slowdown(self, hardware: str, t_s: float) -> float:
        f = self.inner.slowdown(hardware, t_s)
        for e in self.events:
            if e.kind == "slowdown" and e.active(hardware, t_s):
                f *= e.factor
        return f

    def changes(self, hardware: str, t0: float, t1: float) -> list[float]:
        out = set(self.inner.changes(hardware, t0, t1))
        for e in self.events:
            if not e.hardware or e.hardware == hardware:
                for t in (e.at_s, e.at_s + e.duration_s):
                    if t0 < t < t1:
                        out.add(t)
        return sorted(out)


def cost(source: PriceSource, hardware: str, t: float, dt: float) -> float:
    """Dollars of holding ``hardware`` over [t, t + dt], integrating every price change."""
    if dt <= 0:
        return 0.0
    edges = [t, *source.changes(hardware, t, t + dt), t + dt]
    total = 0.0
    for a, b in itertools.pairwise(edges):
        total += source.price_usd_per_h(hardware, a) / 3600.0 * (b - a)
    return total


def next_available(source: PriceSource, hardware: str, t: float, horizon: float) -> float | None:
    """The first time >= t at which ``hardware`` is available, within ``horizon`` seconds."""
    if source.available(hardware, t):
        return t
    for c in source.changes(hardware, t, t + horizon):
        if source.available(hardware, c):
            return c
    return None


def parse_trace(text: str, where: str, hardware: Iterable[str]) -> list[tuple[float, str, float, bool]]:
    """Validate a price trace: header, numbers, times sorted, prices finite and >= 0, known
    hardware. Any fault is a ``SpecError`` naming the line (exit 2, before anything runs)."""
    known = set(hardware)
    reader = csv.DictReader(io.StringIO(text))
    need = ("t_s", "hardware", "price_usd_per_h", "available")
    if not reader.fieldnames or any(c not in reader.fieldnames for c in need):
        raise SpecError(
            where,
            "header",
            f"must name the columns {', '.join(need)}",
            reader.fieldnames,
            "start the file with the line 't_s,hardware,price_usd_per_h,available'",
        )
    rows: list[tuple[float, str, float, bool]] = []
    last: float = -math.inf
    for line, r in enumerate(reader, start=2):
        t, price = _trace_number(r, "t_s", where, line), _trace_number(r, "price_usd_per_h", where, line)
        if t < last:
            raise SpecError(
                where,
                f"line {line}.t_s",
                f"must not go back in time (previous row: {last:g})",
                r["t_s"],
                "sort the trace by t_s",
            )
        last = t
        h = r["hardware"]
        if h not in known:
            raise SpecError(
                where,
                f"line {line}.hardware",
                "is not an offer of this plan",
                h,
                f"use one of: {', '.join(sorted(known))}",
            )
        avail = r["available"].strip()
        if avail not in ("0", "1"):
            raise SpecError(
                where, f"line {line}.available", "must be 0 (preempted) or 1", avail, "write 0 or 1"
            )
        rows.append((t, h, price, avail == "1"))
    return rows


def _trace_number(r: Mapping[str, str], col: str, where: str, line: int) -> float:
    """Column ``col`` of a trace row: a finite number >= 0, else a ``SpecError`` naming the line."""
    try:
        v = float(r[col])
    except (TypeError, ValueError):
        raise SpecError(
            where, f"line {line}.{col}", "must be a number", r[col], "write a plain number"
        ) from None
    if not math.isfinite(v) or v < 0:
        raise SpecError(
            where,
            f"line {line}.{col}",
            "must be a finite number >= 0",
            r[col],
            "write a non-negative number",
        )
    return v


def parse_events(raw: Sequence[Mapping[str, Any]]) -> list[Event]:
    return [
        Event(
            at_s=float(e["at_s"]),
            kind=e["kind"],
            factor=float(e.get("factor", 1.0)),
            duration_s=float(e["duration_s"]) if e.get("duration_s") is not None else math.inf,
            hardware=e.get("hardware") or "",
        )
        for e in raw
    ]
