"""The rollback point: the trainer and the run's position just before an adaptation, kept
apart from the checkpoints so that an adaptation that makes the run worse can be undone."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from paretrain.runtime.files import atomic_write_bytes
from paretrain.runtime.run.state import RunState

__all__ = ["load_rollback_point", "rollback_path", "save_rollback_point"]


def rollback_path(run_dir: Path) -> Path:
    return run_dir / "before-adaptation.pt"


def save_rollback_point(run_dir: Path, trainer: Any, state: RunState) -> None:
    """Save the trainer and the state's position (stage, samples in it, progress, offer)."""
    saved = {
        "trainer": trainer.state_dict(),
        "run": {
            "stage": state.stage_i,
            "stage_samples": state.stage_done,
            "progress": state.progress,
            "hardware": state.hw,
        },
    }
    buf = io.BytesIO()
    torch.save(saved, buf)
    atomic_write_bytes(rollback_path(run_dir), buf.getvalue())


def load_rollback_point(run_dir: Path) -> dict[str, Any] | None:
    """The saved rollback point (``trainer`` and ``run``), or None when there is none."""
    path = rollback_path(run_dir)
    if not path.exists():
        return None
    saved: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    return saved
