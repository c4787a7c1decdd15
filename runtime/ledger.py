"""The append-only spend ledger: the source of truth for money.

One JSONL line per charge ``{id, t, run_id, stage, kind, hardware, usd, seconds, ...}``.
Each line is written to the OS as soon as it is charged (so a ``kill -9`` of the process
loses nothing) and fsync'd at most once a second (so a step does not wait on the disk).
The spend of a run is the exact sum (``math.fsum``) of its lines.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> with Ledger(d / "r.jsonl", "r") as led:
...     _ = led.charge("compute", 0.25, seconds=1.0, stage="train", hardware="local/cpu-1")
...     _ = led.charge("compute", 0.5, seconds=2.0, stage="train", hardware="local/cpu-1")
>>> Ledger(d / "r.jsonl", "r").spent
0.75
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

__all__ = ["Ledger", "Charge", "ExactSum", "ledger_files", "read_charges", "spend_by", "KINDS"]

KINDS = ("compute", "storage", "egress", "checkpoint", "lost", "profile", "search", "event")


@dataclass(frozen=True, slots=True)
class Charge:
    id: str
    t: float
    run_id: str
    stage: str
    kind: str
    hardware: str
    usd: float
    seconds: float
    extra: dict[str, Any]

    def to_json(self) -> str:
        d = {"id": self.id, "t": round(self.t, 6), "run_id": self.run_id, "stage": self.stage,
             "kind": self.kind, "hardware": self.hardware, "usd": self.usd,
             "seconds": round(self.seconds, 9), **self.extra}
        return json.dumps(d, separators=(",", ":"), allow_nan=False)


class ExactSum:
    """A running sum with no rounding error (Shewchuk's partials, as in ``math.fsum``)."""

    def __init__(self, values: Iterable[float] = ()) -> None:
        self.partials: list[float] = []
        for v in values:
            self.add(v)

    def add(self, x: float) -> None:
        i = 0
        for y in self.partials:
            if abs(x) < abs(y):
                x, y = y, x
            hi = x + y
            lo = y - (hi - x)
            if lo:
                self.partials[i] = lo
                i += 1
            x = hi
        self.partials[i:] = [x]

    @property
    def value(self) -> float:
        return math.fsum(self.partials)


class Ledger:
    """An append-only JSONL ledger for one run; reopening it continues where it stopped."""

    def __init__(self, path: str | Path, run_id: str, *, fsync_interval_s: float = 1.0) -> None:
        self.path = Path(path)
        self.run_id = run_id
        self.fsync_interval_s = fsync_interval_s
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _drop_torn_tail(self.path)
        existing = list(read_charges(self.path)) if self.path.exists() else []
        self._sum = ExactSum(c["usd"] for c in existing)
        self._spent = self._sum.value
        self.lines = len(existing)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._last_sync = time.monotonic()
        self._dirty = False

    @property
    def spent(self) -> float:
        return self._spent

    def charge(self, kind: str, usd: float, *, seconds: float = 0.0, stage: str = "train",
               hardware: str = "", **extra: Any) -> Charge:
        if kind not in KINDS:
            raise ValueError(f"`kind` must be one of {KINDS}, but got {kind!r}")
        if not (math.isfinite(usd) and usd >= 0):
            raise ValueError(f"a charge must be a finite amount >= 0, but got {usd!r}")
        c = Charge(f"{self.run_id}:{self.lines}", time.time(), self.run_id, stage, kind, hardware,
                   float(usd), float(seconds), extra)
        os.write(self._fd, (c.to_json() + "\n").encode())
        self.lines += 1
        self._sum.add(c.usd)
        self._spent = self._sum.value
        self._dirty = True
        now = time.monotonic()
        if now - self._last_sync >= self.fsync_interval_s:
            self.sync()
        return c

    def sync(self) -> None:
        if self._dirty:
            os.fsync(self._fd)
            self._dirty = False
        self._last_sync = time.monotonic()

    def close(self) -> None:
        if self._fd >= 0:
            self.sync()
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _drop_torn_tail(path: Path) -> None:
    """Cut a final line whose write never completed (a machine crash), so appends stay whole."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return
        data = f.seek(0) or f.read()
        f.truncate(data.rfind(b"\n") + 1)


def read_charges(path: str | Path) -> Iterator[dict[str, Any]]:
    """The charges of one ledger file. A torn last line (a crash mid-write) is skipped."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):
                break  # torn final line: its write never completed
            try:
                yield json.loads(line)
            except ValueError:
                continue


def ledger_files(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    return sorted(folder.glob("*.jsonl")) if folder.is_dir() else []


def spend_by(charges: Iterable[dict[str, Any]], keys: tuple[str, ...]) -> dict[tuple[Any, ...], float]:
    """Sum ``usd`` grouped by ``keys`` (exactly, with math.fsum)."""
    groups: dict[tuple[Any, ...], list[float]] = {}
    for c in charges:
        groups.setdefault(tuple(c.get(k, "") for k in keys), []).append(c["usd"])
    return {k: math.fsum(v) for k, v in sorted(groups.items(), key=lambda kv: tuple(map(str, kv[0])))}
