"""A run's outcome and its place on disk: the result, the newest resumable run, its clock."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["RunResult", "find_resumable", "last_run_time"]


@dataclass
class RunResult:
    run_id: str
    candidate: str
    status: str  # "target" | "budget" | "max_samples" | "deadline"
    cost_usd: float
    wall_s: float
    accuracy: float
    samples: int
    predicted_cost_usd: float
    predicted_wall_s: float
    predicted_accuracy: float
    budget_usd: float
    ledger_path: str
    emulated: bool = False
    compute_s: float = 0.0  # real seconds inside training steps on local hardware
    compute_steps: int = 0
    tracking_run: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def reached(self) -> bool:
        return self.status == "target"


def find_resumable(workdir: Path, fingerprint: str, candidate: str) -> str | None:
    """The newest unfinished run of this plan and candidate, if any."""
    runs = workdir / ".paretrain" / "runs"
    best: tuple[float, str] | None = None
    for status in runs.glob("*/status.json") if runs.is_dir() else []:
        try:
            d = json.loads(status.read_text())
        except ValueError:
            continue
        if d.get("fingerprint") == fingerprint and d.get("candidate") == candidate and d.get("status") != "target":
            key = (status.stat().st_mtime, status.parent.name)
            best = max(best, key) if best else key
    return best[1] if best else None


def last_run_time(ledger_path: Path) -> float:
    """The run time reached by the ledger's last charge (where a resumed run's clock starts)."""
    from runtime.money.ledger import read_charges

    t = 0.0
    if ledger_path.exists():
        for c in read_charges(ledger_path):
            t = max(t, float(c.get("t_run", 0.0)) + float(c.get("seconds", 0.0)))
    return t
