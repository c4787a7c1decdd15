"""Where a project's files live: the working directory's ``.paretrain/`` folder.

``cache/`` (generated data; ``$PARETRAIN_CACHE_DIR`` instead when set), ``profiles/`` (profile files by key), ``ledger/`` (one JSONL ledger
per run, profiling or search worker), ``runs/`` (checkpoints, events, status per run),
``spool/`` (tracking records to replay).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from paretrain.planner.errors import InputError

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

    def check_cache(self) -> None:
        """``$PARETRAIN_CACHE_DIR``, when set, names a folder this user may write, or one that
        may be made: bad input (exit 2) before anything runs, not an error mid-profile. Nothing
        is made here."""
        shared = os.environ.get(CACHE_ENV)
        if not shared:
            return
        path = self.cache
        probe = path
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
            what = "is not a folder" if probe == path else f"cannot be made under {str(probe)!r}"
            raise InputError(
                f"environment: {CACHE_ENV} must name a folder this user may write; got {shared!r}, "
                f"which {what}. To fix: point it at a writable folder or unset it "
                "(each project then keeps its data in .paretrain/cache)"
            )

    @property
    def profiles(self) -> Path:
        return self.state / "profiles"

    @property
    def ledgers(self) -> Path:
        return self.state / "ledger"

    @property
    def spool(self) -> Path:
        return self.state / "spool" / "tracking.jsonl"
