"""Atomic checkpoints and resume.

A checkpoint is one ``torch.save`` file holding only tensors and plain values: the trainer's
state (model, optimizer, RNG, data position) and the run's position (stage, samples done in
the stage, ledger lines at the time). It is written to a temp file in the same folder,
fsync'd and renamed, so a crash leaves either the old file or the new one. Loading uses
``torch.load(weights_only=True)``; a file that fails to load (truncated, corrupt) is skipped
and the one before it used. Only the last ``keep`` checkpoints are kept. A full disk is a
``DiskFull`` naming the folder and the bytes the checkpoint needs; the older ones stay.

A truncated profile keeps the state each of its runs ended in as one such file
(``save_state``), named by the profile with the SHA-256 of its bytes; a run that starts from it
loads it only when the bytes still have that digest (``load_verified``).
"""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path
from typing import Any

import torch

from paretrain.runtime.files import atomic_write_bytes
from paretrain.runtime.money.disk import DiskFull, disk_full

__all__ = [
    "CheckpointError",
    "checkpoint_paths",
    "load_latest",
    "load_verified",
    "save_checkpoint",
    "save_state",
]

_NAME = re.compile(r"^ckpt-(\d{8})\.pt$")


class CheckpointError(Exception):
    pass


def checkpoint_paths(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if _NAME.match(p.name))


def _sequence(path: Path) -> int:
    """The sequence number in a checkpoint's name."""
    match = _NAME.match(path.name)
    if match is None:
        raise ValueError(f"{path.name}: not a checkpoint's name (ckpt-NNNNNNNN.pt)")
    return int(match.group(1))


def save_checkpoint(folder: str | Path, state: dict[str, Any], keep: int) -> tuple[Path, int]:
    """Write ``state`` as the next checkpoint; drop all but the last ``keep``. Returns the path
    and its size in bytes."""
    folder = Path(folder)
    existing = checkpoint_paths(folder)
    seq = _sequence(existing[-1]) + 1 if existing else 0
    buf = io.BytesIO()
    torch.save(state, buf)
    data = buf.getvalue()
    path = folder / f"ckpt-{seq:08d}.pt"
    try:
        atomic_write_bytes(path, data)  # a failed write leaves no temp file and the old checkpoints
    except OSError as err:
        if not disk_full(err):
            raise
        raise DiskFull(folder, len(data), f"checkpoint {path.name}") from err
    for old in checkpoint_paths(folder)[:-keep]:
        old.unlink(missing_ok=True)
    return path, len(data)


def load_latest(folder: str | Path) -> tuple[dict[str, Any], Path] | None:
    """The newest checkpoint that loads, or None. Damaged ones are skipped (and renamed
    ``*.damaged`` so they are not tried again)."""
    for path in reversed(checkpoint_paths(folder)):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(state, dict) or "trainer" not in state or "run" not in state:
                raise CheckpointError("missing trainer or run state")
            return state, path
        except Exception:
            path.rename(path.with_suffix(".damaged"))
    return None


def save_state(path: str | Path, state: dict[str, Any]) -> tuple[str, int]:
    """Write ``state`` to ``path`` atomically; the SHA-256 of its bytes and their number."""
    buf = io.BytesIO()
    torch.save(state, buf)
    data = buf.getvalue()
    try:
        atomic_write_bytes(path, data)
    except OSError as err:
        if not disk_full(err):
            raise
        raise DiskFull(Path(path).parent, len(data), f"checkpoint {Path(path).name}") from err
    return hashlib.sha256(data).hexdigest(), len(data)


def load_verified(path: str | Path, sha256: str) -> dict[str, Any]:
    """The state ``save_state`` wrote to ``path``, if its bytes still have the digest ``sha256``;
    else ``CheckpointError`` saying what is wrong (missing, changed, unreadable)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"is missing ({err.strerror or err})") from None
    got = hashlib.sha256(data).hexdigest()
    if got != sha256:
        raise CheckpointError(f"has changed (SHA-256 {got[:12]}..., the plan expects {sha256[:12]}...)")
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"does not load ({type(err).__name__}: {err})") from None
    if not isinstance(state, dict) or "trainer" not in state:
        raise CheckpointError("holds no trainer state")
    return state
