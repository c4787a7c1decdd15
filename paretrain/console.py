"""The terminal on ``rich``: tables, progress bars, lines, and the ``--format json`` record.

On a TTY: coloured tables and live progress bars (done/total, rate, time left). Piped, or
with ``--format json``: plain text with no colour and no cursor tricks, one table row per
line with no trailing spaces, and progress as a few plain lines on stderr. With ``--format
json`` stdout holds one JSON document, written when the command ends; lines meant for people
go to stderr.

>>> import io
>>> ui = Output("table", out=io.StringIO())
>>> ui.table(["id", "cost_usd"], [["c0", "0.1"], ["c10", "0.25"]])
>>> print(ui.out.file.getvalue(), end="")
id   cost_usd
---- --------
c0   0.1
c10  0.25
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import IO, Any

from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

__all__ = ["FORMATS", "Output", "ProgressBar", "usd"]


def usd(x: float) -> str:
    """A dollar figure for people: six decimals, as every table shows money, or three
    significant digits where six decimals would print a figure that is not zero as 0.000000
    (a job of a few seconds on one CPU core costs well under a millionth of a dollar).

    >>> usd(0.000376), usd(2.1e-07), usd(0.0)
    ('0.000376', '2.1e-07', '0.000000')
    """
    return f"{x:.6f}" if x == 0 or abs(x) >= 5e-7 else f"{x:.3g}"


FORMATS = ("table", "json")

#: A header rule of dashes under each column, like the tables paretrain always printed.
_PLAIN_BOX = box.Box("    \n    \n -  \n    \n    \n    \n    \n    \n", ascii=True)
_PIPED_WIDTH = 10_000  # never wrap a piped line: scripts read them one row at a time


def _console(stream: IO[str] | None, stderr: bool) -> Console:
    c = Console(file=stream, stderr=stderr, highlight=False, markup=False, emoji=False)
    if not c.is_terminal:
        c.width = _PIPED_WIDTH
    return c


class Output:
    """What one command prints. A context manager: leaving it stops any progress bar and, with
    ``--format json``, writes the JSON record to stdout."""

    def __init__(self, fmt: str = "table", *, out: IO[str] | None = None, err: IO[str] | None = None) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"`fmt` must be one of {FORMATS}, but got {fmt!r}")
        self.fmt = fmt
        self.out = _console(out, stderr=False)
        self.err = _console(err, stderr=True)
        self.record: dict[str, Any] = {}
        self._bars: list[ProgressBar] = []

    @property
    def json(self) -> bool:
        return self.fmt == "json"

    def __enter__(self) -> Output:
        return self

    def __exit__(self, *exc: Any) -> None:
        for bar in self._bars:
            bar.close()
        if self.json and self.record:
            self.out.file.write(json.dumps(self.record, indent=1, default=str) + "\n")
            self.out.file.flush()

    def put(self, key: str, value: Any) -> None:
        """Add ``key`` to the JSON record (ignored in table format)."""
        if self.json:
            self.record[key] = value

    def line(self, text: str, *, err: bool = False, style: str | None = None) -> None:
        """A line for people: stdout (stderr with ``err`` or in JSON format)."""
        console = self.err if err or self.json else self.out
        console.print(Text(text, style=style or ""), soft_wrap=True)

    def log(self, text: str) -> None:
        """A running command's news (stderr)."""
        self.line(text, err=True)

    def table(self, head: Sequence[str], rows: Sequence[Sequence[Any]], *, title: str | None = None) -> None:
        """A table on stdout (stderr in JSON format, where the record carries the data)."""
        console = self.err if self.json else self.out
        fancy = console.is_terminal
        t = Table(
            box=box.SIMPLE_HEAD if fancy else _PLAIN_BOX,
            show_edge=False,
            pad_edge=False,
            header_style="bold" if fancy else "",
            title=title,
            collapse_padding=True,
        )
        for h in head:
            t.add_column(str(h), no_wrap=not fancy, overflow="fold")
        for r in rows:
            t.add_row(*(str(x) for x in r))
        if fancy:
            console.print(t)
            return
        with console.capture() as cap:
            console.print(t)
        lines = [ln.rstrip() for ln in cap.get().splitlines()]
        console.file.write("".join(ln + "\n" for ln in lines if ln or not lines))
        console.file.flush()

    def progress(self, title: str) -> ProgressBar:
        """A progress bar on stderr, callable as ``bar(label, done, total)``; stopped when done,
        when used as a context manager, or when the command ends."""
        bar = ProgressBar(title, self.err, live=self.err.is_terminal and not self.json)
        self._bars.append(bar)
        return bar


class _Rate(ProgressColumn):
    """Items per second (or seconds per item when slower than one a second)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if not speed:
            return Text("-/s", style="progress.data.speed")
        return Text(
            f"{speed:.2f}/s" if speed >= 1 else f"{1 / speed:.1f} s each", style="progress.data.speed"
        )


class ProgressBar:
    """Progress of one phase (profiling, search). Live on a TTY; else plain lines at each tenth."""

    def __init__(self, title: str, console: Console, *, live: bool) -> None:
        self.title, self.console, self.live = title, console, live
        self._progress: Progress | None = None
        self._task: Any = None
        self._start: tuple[float, int] | None = None
        self._shown = -1
        self._closed = False

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __call__(self, label: str, done: int, total: int) -> None:
        if self._closed:
            return
        total = max(int(total), 1)
        if self._start is None:
            self._start = (time.monotonic(), done)
        if self.live:
            self._live(label, done, total)
        else:
            self._plain(label, done, total)
        if done >= total:
            self.close()

    def _live(self, label: str, done: int, total: int) -> None:
        if self._progress is None:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                _Rate(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[label]}"),
                console=self.console,
            )
            self._progress.start()
            self._task = self._progress.add_task(self.title, total=total, completed=done, label=label)
        self._progress.update(self._task, completed=done, total=total, label=label[:60])

    def _plain(self, label: str, done: int, total: int) -> None:
        tenth = min(10, done * 10 // total)
        if tenth == self._shown:
            return
        self._shown = tenth
        assert self._start is not None
        t0, d0 = self._start
        elapsed = time.monotonic() - t0
        rate = (done - d0) / elapsed if elapsed > 0 and done > d0 else 0.0
        pace = f"{rate:.2f}/s, {(total - done) / rate:.0f} s left" if rate else "-/s"
        self.console.print(
            Text(f"{self.title}: {done}/{total} ({done * 100 // total}%) {pace}; {label[:60]}"),
            soft_wrap=True,
        )

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._progress is not None:
            self._progress.stop()
