"""Out of memory at a planned batch size, on a CPU: ``runtime.max_memory_mb`` caps a training
step's peak, estimated from the trainer (``paretrain.runtime.train.trainer.estimate_peak_bytes``:
weights, gradients, optimizer state and a real forward pass's activations). While the peak at the
stage's batch passes the cap, the batch is halved (the learning rate rescaled by the config's
rule, a short warm-up), recorded as a ``memory`` event in the ledger, ``events.jsonl`` and MLflow.
On a GPU, a step that raises ``torch.OutOfMemoryError`` is taken again at half the batch
(``halve_after_oom``), recorded the same way. Either way the offer's batch is capped there
(``Adaptation.cap_batch``) and the executor replans the rest of the run within the cap through
the adaptive side (``paretrain.runtime.run.adapting``): the stage's samples at the smaller batch,
later stages never above it on that offer; the budget guard prices every step as it comes."""

from __future__ import annotations

import torch

from paretrain.runtime.run.changes import TrainerSynced
from paretrain.runtime.run.parts import RunParts
from paretrain.runtime.train.trainer import Trainer, estimate_peak_bytes

__all__ = ["fit_memory", "halve_after_oom"]

MB = 1 << 20


def _peak_mb(trainer: Trainer, batch: int) -> float:
    rng = torch.get_rng_state()  # the estimate's forward pass must not move the run's randomness
    try:
        return estimate_peak_bytes(trainer, batch) / MB
    finally:
        torch.set_rng_state(rng)


def fit_memory(p: RunParts) -> None:
    """Halve the trainer's batch until a step's estimated peak fits ``runtime.max_memory_mb``
    (a CPU only; nothing without the setting). At batch 1 it trains as it can."""
    limit = p.setup.spec.runtime.max_memory_mb
    trainer = p.group.trainer
    if limit is None or not str(trainer.device).startswith("cpu"):
        return
    batch = trainer.batch_size
    peak = _peak_mb(trainer, batch)
    while batch > 1 and peak > limit:
        batch //= 2
        peak = _peak_mb(trainer, batch)
    if batch == trainer.batch_size:
        return
    _halve_to(p, batch, {"peak_mb": round(peak, 6), "limit_mb": limit})


def halve_after_oom(p: RunParts, err: BaseException) -> None:
    """A step ran out of GPU memory: take it again at half the batch (``err`` again at batch 1)."""
    trainer = p.group.trainer
    if trainer.batch_size <= 1:
        raise err
    torch.cuda.empty_cache()
    _halve_to(p, trainer.batch_size // 2, {"oom": type(err).__name__})


def _halve_to(p: RunParts, batch: int, why: dict[str, object]) -> None:
    trainer = p.group.trainer
    was = trainer.batch_size
    trainer.set_batch_size(batch, warmup_steps=5)
    p.apply(TrainerSynced(trainer.samples_seen, trainer.batch_size))
    facts = {"batch_size": batch, "was": was, "lr": trainer.lr, **why}
    p.events("memory", stage=p.state.stage_i, **facts)
    p.events.ledger("memory", p.state, **facts)
    p.log(f"out of memory at batch {was}: batch {batch}, lr {trainer.lr:.3g}")
    workers = max(1, p.state.stage.workers) if p.state.stage_i < len(p.state.stages) else 1
    p.adaptation.cap_batch(p.state.hw, max(1, batch // workers), f"out of memory at batch {was}")
