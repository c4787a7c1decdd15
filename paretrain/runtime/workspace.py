"""Where a project's files live: the working directory's ``.paretrain/`` folder.

``cache/`` (generated data), ``profiles/`` (profile files by key), ``ledger/`` (one JSONL ledger
per run, profiling or search worker), ``runs/`` (checkpoints, events, status per run),
``spool/`` (tracking records to replay).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["Workspace"]


@dataclass(frozen=True)
class Workspace:
    root: Path

    @property
    def state(self) -> Path:
        return self.root / ".paretrain"

    @property
    def cache(self) -> Path:
        return self.state / "cache"

    @property
    def profiles(self) -> Path:
        return self.state / "profiles"

    @property
    def ledgers(self) -> Path:
        return self.state / "ledger"

    @property
    def spool(self) -> Path:
        return self.state / "spool" / "tracking.jsonl"
