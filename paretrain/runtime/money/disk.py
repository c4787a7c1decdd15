"""A full disk: the error that names the folder and the bytes a write needed, and the check.

A write that finds no space (``ENOSPC``, or a quota's ``EDQUOT``) is a ``DiskFull`` (exit 3): the
ledger cuts what of its write reached the file (``paretrain.runtime.money.ledger``), a checkpoint
leaves no temp file and the older checkpoints (``paretrain.runtime.train.checkpoint``), and the
run continues with ``--resume`` once space is freed.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from paretrain.planner.errors import StopError

__all__ = ["DiskFull", "append", "disk_full"]


class DiskFull(StopError):
    """No space left to write ``what`` in ``folder``: exit 3, nothing half-written."""

    def __init__(self, folder: str | Path, needed: int, what: str) -> None:
        self.folder, self.needed, self.what = str(folder), int(needed), what
        super().__init__(f"no space left in {self.folder}: {self.needed} bytes needed to write {what}")


def disk_full(err: OSError) -> bool:
    """Whether ``err`` says the disk (or the user's quota) is full."""
    return err.errno in (errno.ENOSPC, errno.EDQUOT)


def append(fd: int, data: bytes) -> int:
    """One append to the ledger file (a seam: tests fill the disk here)."""
    return os.write(fd, data)
