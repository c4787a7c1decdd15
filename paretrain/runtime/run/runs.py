"""A run's outcome and its place on disk: the result, the newest run and its status, its clock."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paretrain.planner.errors import BudgetExhausted, StopError, UserError

__all__ = [
    "FAULT_STATUSES",
    "FINISHED",
    "LedgerEnd",
    "RunFailed",
    "RunInterrupted",
    "RunResult",
    "RunStopped",
    "fault_message",
    "find_resumable",
    "last_run",
    "ledger_end",
]


@dataclass
class RunResult:
    run_id: str
    candidate: str
    status: str  # "target" | "budget" | "max_samples" | "deadline"
    cost_usd: float
    wall_s: float
    level: float
    samples: int
    predicted_cost_usd: float
    predicted_wall_s: float
    predicted_level: float
    budget_usd: float
    ledger_path: str
    emulated: bool = False
    metric: str = "val_accuracy"  # the target metric ``level`` and ``predicted_level`` are in
    direction: str = "maximize"
    #: the candidate's predicted P10/P50/P90 (``paretrain.planner.measure.uncertainty``), when the plan has them
    predicted_cost_interval: tuple[float, float, float] | None = None
    predicted_wall_interval: tuple[float, float, float] | None = None

    def inside(self, what: str) -> bool | None:
        """Whether the realized cost (``what="cost"``) or wall time fell in its P10-P90."""
        iv = self.predicted_cost_interval if what == "cost" else self.predicted_wall_interval
        x = self.cost_usd if what == "cost" else self.wall_s
        return None if iv is None else iv[0] <= x <= iv[2]

    compute_s: float = 0.0  # real seconds inside training steps on local hardware
    compute_steps: int = 0
    #: of ``samples``, those the profile's checkpoint the run started from had trained (not paid
    #: by the run, nor counted in its predictions)
    reused_samples: int = 0
    tracking_run: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def reached(self) -> bool:
        return self.status == "target"


class RunStopped(BudgetExhausted):
    """A run stopped before its target (budget, deadline, sample limit, missing workers);
    ``result`` is what it reached."""

    def __init__(self, message: str, result: RunResult) -> None:
        super().__init__(message)
        self.result = result


class RunFailed(UserError):
    """A member of the user's workload raised mid-run (exit 2): the ledger is closed and the
    last checkpoint kept, so the run continues with ``--resume`` once the workload is fixed."""

    def __init__(self, message: str, result: RunResult) -> None:
        super().__init__(message)
        self.result = result


class RunInterrupted(StopError):
    """SIGTERM or SIGINT stopped the run after a checkpoint: exit 143 or 130 (128 + the signal)."""

    def __init__(self, message: str, result: RunResult, signum: int) -> None:
        super().__init__(message)
        self.result = result
        self.exit_code = 128 + signum


#: the statuses a fault ends a run with (``paretrain.runtime.run.faults``; ``RunState.stop_reason``
#: holds its message)
FAULT_STATUSES = ("workload", "diverged", "disk", "SIGTERM", "SIGINT", "unreachable", "overran")

#: how a divergence's reason says the run already retried at half the learning rate
#: (``paretrain.runtime.run.faults``); its fix then asks for a lower rate, not another retry
RETRIED = "after a retry at half the learning rate"


def fault_message(
    status: str, reason: str, spent: float, budget: float, predicted: float, projected: float = 0.0
) -> str:
    """The one line a fault ends with, once the run's spend is final (``projected``: what the run
    would have spent in all had it gone on, when the fault knows)."""
    message = f"{reason}; spent ${spent:.6g} of ${budget:.6g}"
    if status == "unreachable":
        message += (
            f"; stopping saved ${max(0.0, projected - spent):.6g} of the ${projected:.6g} going on "
            "would have spent. To fix: plan for a level the curve reaches (target.goal), or another "
            "config; the last checkpoint is kept"
        )
    if status == "diverged":
        retry = "" if RETRIED in reason else " (or set runtime.on_divergence: retry)"
        saved = (
            f"stopping saved ${predicted - spent:.6g} of the candidate's predicted ${predicted:.6g}"
            if predicted > spent
            else f"the candidate's predicted ${predicted:.6g} was already spent"
        )
        message += f"; {saved}. To fix: lower the config's lr{retry} and start the run again"
    return message


#: A run's status once it reached its target: nothing is left to do.
FINISHED = "target"


def _runs(workdir: Path, fingerprint: str, candidate: str) -> list[tuple[float, str, str]]:
    """(mtime, run id, status) of every run of this plan and candidate under ``workdir``."""
    runs = workdir / ".paretrain" / "runs"
    found = []
    for status in runs.glob("*/status.json") if runs.is_dir() else []:
        try:
            d = json.loads(status.read_text(encoding="utf-8"))
            mtime = status.stat().st_mtime
        except (OSError, ValueError):
            continue  # being written, or removed meanwhile: not a run to count
        if isinstance(d, dict) and d.get("fingerprint") == fingerprint and d.get("candidate") == candidate:
            found.append((mtime, status.parent.name, str(d.get("status", ""))))
    return found


def last_run(workdir: Path, fingerprint: str, candidate: str) -> tuple[str, str] | None:
    """(run id, status) of the newest run of this plan and candidate, or None if it never ran.

    A status of ``FINISHED`` means it reached its target; any other (``running``, ``budget``,
    ...) means it can be resumed."""
    found = _runs(Path(workdir), fingerprint, candidate)
    if not found:
        return None
    _, run_id, status = max(found)
    return run_id, status


def find_resumable(workdir: Path, fingerprint: str, candidate: str) -> str | None:
    """The newest unfinished run of this plan and candidate, if any."""
    found = [r for r in _runs(Path(workdir), fingerprint, candidate) if r[2] != FINISHED]
    return max(found)[1] if found else None


@dataclass(frozen=True)
class LedgerEnd:
    """Where a killed run's ledger ends: the run time its last charge reached (where a resumed
    run's clock starts) and the billing hold it left open, (offer, run time it began) or None."""

    t: float = 0.0
    hold: tuple[str, float] | None = None


def ledger_end(ledger_path: Path) -> LedgerEnd:
    """Read the ledger once for ``LedgerEnd``. A hold begins with an emulated offer's
    provisioning, move or restore, or with its first compute charge after a pause; a billing
    increment, a pause or a preemption ends it."""
    from paretrain.runtime.money.ledger import read_charges

    t, hold = 0.0, None
    if not ledger_path.exists():
        return LedgerEnd()
    for c in read_charges(ledger_path):
        t = max(t, float(c.get("t_run", 0.0)) + float(c.get("seconds", 0.0)))
        if c.get("event") in ("pause", "preemption") or c.get("what") == "billing increment":
            hold = None
        elif c.get("kind") == "compute" and c.get("emulated"):
            hw = str(c.get("hardware"))
            if c.get("what") in ("provision", "move", "restore") or hold is None or hold[0] != hw:
                hold = (hw, float(c.get("t_run", 0.0)))
    return LedgerEnd(t, hold)
