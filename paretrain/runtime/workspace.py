"""Where a project's files live: the working directory's ``.paretrain/`` folder.

``cache/`` (generated data; ``$PARETRAIN_CACHE_DIR`` instead when set), ``profiles/`` (profile files by key), ``ledger/`` (one JSONL ledger
per run, profiling or search worker), ``runs/`` (checkpoints, events, status per run),
``spool/`` (tracking records to replay).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CACHE_ENV", "Workspace"]

#: One folder of generated data for every project on the machine (the built-in datasets, made
#: offline, keyed by what they are made from: size and seed, or the corpus's fingerprint).
CACHE_ENV = "PARETRAIN_CACHE_DIR"


@dataclass(frozen=True)
class Workspace:
    root: Path

    @property
    def state(self) -> Path:
        return self.root / ".paretrain"

    @property
    def cache(self) -> Path:
        """Generated data: ``$PARETRAIN_CACHE_DIR`` when set, so that projects on one machine
        make a dataset once between them; else the project's own ``.paretrain/cache``. Files
        are written whole under a temporary name and renamed, so processes may share it."""
        shared = os.environ.get(CACHE_ENV)
        return Path(shared).expanduser() if shared else self.state / "cache"

    @property
    def profiles(self) -> Path:
        return self.state / "profiles"

    @property
    def ledgers(self) -> Path:
        return self.state / "ledger"

    @property
    def spool(self) -> Path:
        return self.state / "spool" / "tracking.jsonl"
