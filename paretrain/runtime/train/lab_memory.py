"""Batches that do not fit a device's memory while the lab measures.

A step that raises ``torch.OutOfMemoryError`` (what CUDA raises; a workload may raise it on any
device) tells the lab that the batch does not fit there. Step timing then times only the batch
sizes below the first that ran out (``StepProfile.oom_batch`` records it, and the planner takes
it and larger ones as not fitting); a convergence run at such a batch is not measured
(``paretrain.planner.measure.lab.OutOfMemory``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from paretrain.planner.measure.lab import OutOfMemory
from paretrain.runtime.train.lab_meter import LabMeter
from paretrain.runtime.train.trainer import Trainer

__all__ = ["fitting_batches", "free_memory"]


def free_memory(device: str) -> None:
    """Give the memory a failed step held back to the device (a CUDA cache; nothing elsewhere)."""
    if str(device).startswith("cuda"):
        torch.cuda.empty_cache()


def fitting_batches(
    trainer: Trainer, meter: LabMeter, sizes: Sequence[int], what: str
) -> tuple[list[int], int]:
    """The batch sizes (ascending) whose step fits the device's memory, found with one metered
    step each, and the first that ran out of it (0: none did); the trainer is left at the
    first. ``OutOfMemory`` when even the first does not fit."""
    for i, b in enumerate(sizes):
        trainer.set_batch_size(b)
        try:
            meter.timed(trainer.step)
        except torch.OutOfMemoryError:
            free_memory(str(trainer.device))
            if i == 0:
                raise OutOfMemory(f"{what}: a step at batch {b} runs out of memory") from None
            trainer.set_batch_size(sizes[0])
            return list(sizes[:i]), b
    trainer.set_batch_size(sizes[0])
    return list(sizes), 0
