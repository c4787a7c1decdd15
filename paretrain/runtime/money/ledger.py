"""The append-only spend ledger: the source of truth for money.

One JSONL line per charge ``{id, t, run_id, stage, kind, hardware, usd, seconds, ...}``.
Each line is written to the OS as soon as it is charged (so a ``kill -9`` of the process
loses nothing) and fsync'd at most once a second (so a step does not wait on the disk).
The spend of a run is the exact sum (``math.fsum``) of its lines. One process writes a ledger at
a time: an open ``Ledger`` holds the file's lock (``paretrain.runtime.locks``), and a second
writer gets ``Busy`` (exit 2) before it reads the file. A full disk (``ENOSPC``, or a
short write) cuts the part of the write that reached the file, so no line is ever half-written,
and raises ``DiskFull``; the ledger then refuses further lines and closes without writing.

Test hook: with ``PARETRAIN_TEST_KILL_AT_LINE=N`` in the environment, a ledger that writes the
file's N-th line (counting the lines already there) fsyncs it and sends SIGKILL to its own
process at once, the lines after it in the same batch never reaching the file: a ``kill -9`` at a
chosen ledger offset, the same on every machine (tests/runtime/test_kill_resume.py).

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
import signal
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paretrain.runtime.locks import busy, lock_fd
from paretrain.runtime.money import disk
from paretrain.runtime.money.disk import DiskFull, disk_full

__all__ = [
    "KINDS",
    "Charge",
    "ExactSum",
    "Ledger",
    "ledger_files",
    "read_charges",
    "spend_by",
]

KILL_AT_LINE_ENV = "PARETRAIN_TEST_KILL_AT_LINE"

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
        return _line(
            self.id,
            self.t,
            self.run_id,
            self.stage,
            self.kind,
            self.hardware,
            self.usd,
            self.seconds,
            self.extra,
        )


_STR_CACHE: dict[str, str] = {}


def _js(v: Any) -> str:
    """JSON text of a value; strings are cached (a step's fields repeat), numbers written as is."""
    if isinstance(v, str):
        out = _STR_CACHE.get(v)
        if out is None:
            out = json.dumps(v)
            if len(_STR_CACHE) < 4096:
                _STR_CACHE[v] = out
        return out
    if isinstance(v, bool) or v is None:
        return json.dumps(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float) and math.isfinite(v):
        return repr(v)
    return json.dumps(v, separators=(",", ":"), allow_nan=False)


def _template(run_id: str, stage: str, kind: str, hardware: str, extra: dict[str, Any]) -> str:
    """A %-format string for the lines of one (stage, kind, hardware, extra keys) shape: the
    fixed parts written once, numbers left as slots (a step's line then costs one % format)."""

    def esc(text: str) -> str:
        return text.replace("%", "%%")

    parts = [
        f'{{"id":"{esc(json.dumps(run_id)[1:-1])}:%d","t":%.6f,"run_id":{esc(_js(run_id))},'
        f'"stage":{esc(_js(stage))},"kind":{esc(_js(kind))},"hardware":{esc(_js(hardware))},'
        '"usd":%r,"seconds":%r'
    ]
    for k, v in extra.items():
        if isinstance(v, bool) or v is None or isinstance(v, str):
            parts.append(f"{esc(_js(k))}:{esc(_js(v))}")
        else:
            parts.append(f"{esc(_js(k))}:{'%d' if isinstance(v, int) else '%r'}")
    return ",".join(parts) + "}\n"


def _line(
    cid: str,
    t: float,
    run_id: str,
    stage: str,
    kind: str,
    hardware: str,
    usd: float,
    seconds: float,
    extra: dict[str, Any],
) -> str:
    """One ledger line, written by hand: json.dumps of a dict costs more than the rest of a
    step's bookkeeping (benchmarks/runtime_overhead.py)."""
    head = (
        f'{{"id":{_js(cid)},"t":{t:.6f},"run_id":{_js(run_id)},"stage":{_js(stage)},'
        f'"kind":{_js(kind)},"hardware":{_js(hardware)},"usd":{usd!r},"seconds":{round(seconds, 9)!r}'
    )
    if not extra:
        return head + "}"
    return head + "," + ",".join(f"{_js(k)}:{_js(v)}" for k, v in extra.items()) + "}"


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

    def __init__(
        self,
        path: str | Path,
        run_id: str,
        *,
        fsync_interval_s: float = 1.0,
        batch_s: float = 0.02,
        batch_lines: int = 64,
    ) -> None:
        self.path = Path(path)
        self.batch_s, self.batch_lines = batch_s, batch_lines
        self.run_id = run_id
        self.fsync_interval_s = fsync_interval_s
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # one writer at a time (paretrain.runtime.locks), locked before the file is read or cut:
        # a second writer would see the whole budget left, and its cut could tear a line
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if not lock_fd(self._fd):
            os.close(self._fd)
            self._fd = -1
            raise busy(
                self.path, f"this ledger ({run_id})", "two writers of one ledger would each spend its budget"
            )
        _drop_torn_tail(self.path)
        existing = list(read_charges(self.path))
        self._sum = ExactSum(c["usd"] for c in existing)
        self._spent = self._sum.value
        self._stale = False
        self.lines = len(existing)
        self._last_sync = time.monotonic()
        self._dirty = False
        self._templates: dict[tuple[Any, ...], str] = {}
        self._pending: list[tuple[Any, ...]] = []
        self._last_flush = time.monotonic()
        kill_at = os.environ.get(KILL_AT_LINE_ENV, "")
        self._kill_at = int(kill_at) if kill_at.strip() else 0  # the test hook; 0: off
        self._full = False  # a write found the disk full: nothing more is written

    def _write(self, lines: list[str], first: int) -> None:
        """Hand lines numbered ``first``, ``first + 1``, ... to the OS in one write."""
        if self._kill_at and first < self._kill_at <= first + len(lines):
            # the test hook (module docstring): the N-th line durably written, then kill -9
            os.write(self._fd, "".join(lines[: self._kill_at - first]).encode())
            os.fsync(self._fd)
            os.kill(os.getpid(), signal.SIGKILL)
        data = "".join(lines).encode()
        if self._full:
            raise DiskFull(self.path.parent, len(data), f"the ledger {self.path.name}")
        try:
            wrote = disk.append(self._fd, data)  # the seam a test fills the disk at
        except OSError as err:
            if not disk_full(err):
                raise
            wrote = 0
        if wrote != len(data):  # a full disk: cut what did reach the file, so no line is half-written
            os.ftruncate(self._fd, os.fstat(self._fd).st_size - wrote)
            self._full = True
            self._pending.clear()
            raise DiskFull(self.path.parent, len(data), f"the ledger {self.path.name}")

    def charge(
        self,
        kind: str,
        usd: float,
        *,
        seconds: float = 0.0,
        stage: str = "train",
        hardware: str = "",
        **extra: Any,
    ) -> str:
        """Append one charge; returns its id (``run_id:n``)."""
        if kind not in KINDS:
            raise ValueError(f"`kind` must be one of {KINDS}, but got {kind!r}")
        if not (math.isfinite(usd) and usd >= 0):
            raise ValueError(f"a charge must be a finite amount >= 0, but got {usd!r}")
        usd = float(usd)
        if self._pending:
            self.flush()
        cid = f"{self.run_id}:{self.lines}"
        key = (
            stage,
            kind,
            hardware,
            tuple((k, v if isinstance(v, (str, bool)) or v is None else type(v)) for k, v in extra.items()),
        )
        tpl = self._templates.get(key)
        if tpl is None and all(
            isinstance(t, str) or t in (int, float) or isinstance(t, bool) or t is None for _, t in key[3]
        ):
            tpl = self._templates[key] = _template(self.run_id, stage, kind, hardware, extra)
        if tpl is not None and all(math.isfinite(v) for v in extra.values() if isinstance(v, float)):
            nums = tuple(v for v in extra.values() if isinstance(v, (int, float)) and not isinstance(v, bool))
            text = tpl % (self.lines, time.time(), usd, round(float(seconds), 9), *nums)
        else:
            text = (
                _line(cid, time.time(), self.run_id, stage, kind, hardware, usd, float(seconds), extra) + "\n"
            )
        self._write([text], self.lines)
        self.lines += 1
        self._sum.add(usd)
        self._stale = True
        self._dirty = True
        if time.monotonic() - self._last_sync >= self.fsync_interval_s:
            self.sync()
        return cid

    def step_writer(
        self, stage: str, hardware: str, emulated: bool
    ) -> Callable[[float, float, float, int], None]:
        """A fast writer for the per-step ``compute``/``train`` charges of one stage on one offer:
        the line's fixed parts are formatted once. Call it with (usd, seconds, t_run, step)."""
        extra: dict[str, Any] = {"what": "train", "t_run": 0.0, "step": 0}
        if emulated:
            extra["emulated"] = True
        tpl = _template(self.run_id, stage, "compute", hardware, extra)
        now, mono = time.time, time.monotonic

        pending = self._pending

        def write(usd: float, seconds: float, t_run: float, step: int) -> None:
            if not (usd >= 0 and math.isfinite(usd)):
                raise ValueError(f"a charge must be a finite amount >= 0, but got {usd!r}")
            # formatted and summed at flush time, many at once (warm caches, see flush)
            pending.append((tpl, self.lines, now(), usd, seconds, t_run, step))
            self.lines += 1
            if len(pending) >= self.batch_lines or mono() - self._last_flush >= self.batch_s:
                self.flush()

        return write

    @property
    def spent(self) -> float:
        """Exact money charged so far (batched step lines included)."""
        if self._pending:
            self.flush()
        if self._stale:
            self._spent = self._sum.value
            self._stale = False
        return self._spent

    def flush(self) -> None:
        """Format the batched step lines, add them to the exact sum, and hand them to the OS in
        one write. A kill -9 loses at most ``batch_s`` seconds of step charges (never more
        than ``batch_lines``), like the step in flight that no ledger can hold."""
        if self._pending:
            lines = []
            for tpl, n, t, usd, seconds, t_run, step in self._pending:
                lines.append(tpl % (n, t, usd, round(seconds, 9), round(t_run, 6), step))
            first, amounts = self._pending[0][1], [c[3] for c in self._pending]
            self._write(lines, first)  # summed once written: a full disk leaves out what it cut
            add = self._sum.add
            for usd in amounts:
                add(usd)
            self._pending.clear()
            self._stale = True
            self._dirty = True
        self._last_flush = time.monotonic()
        if self._last_flush - self._last_sync >= self.fsync_interval_s:
            self.sync()

    def sync(self) -> None:
        if self._pending:
            self.flush()
        if self._dirty:
            os.fsync(self._fd)
            self._dirty = False
        self._last_sync = time.monotonic()

    def close(self) -> None:
        if self._fd >= 0:
            try:
                if not self._full:
                    self.sync()
            finally:
                os.close(self._fd)
                self._fd = -1

    def __enter__(self) -> Ledger:
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
        f.seek(0)
        data = f.read()
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
