"""A run's start from the profile's checkpoint of its config, so that no work is paid twice.

A candidate whose first stage trains what the profile's truncated run trained carries a
``start`` (``paretrain.planner.program.reuse``): a file relative to the workspace's profile
folder, the SHA-256 of its bytes and the samples it holds, which the plan's stages and
predictions already leave out. A fresh run (not ``--resume``) loads it before its first
checkpoint: the bytes must have the digest and hold what the plan says (config, batch, samples).
The run then goes on from those samples with their ideal progress counted, evaluates after its
first step (so the level it starts at is known, and a checkpoint already past the candidate's
level ends the run there), and says so. It goes on the truncated run's learning curve too: the
checkpoint keeps that run's evaluations, and they are the run's first points, so its refits
(``paretrain.runtime.adapt.learning``) start from the whole curve rather than wait for six
evaluations of its own; a run of five evaluations past the checkpoint would otherwise never
refit. The run says so:

- a zero-dollar ``reused`` line in the ledger and an event in ``events.jsonl`` (samples, path,
  digest),
- the MLflow params ``reused_samples`` and ``reused_checkpoint`` and the tag ``paretrain.reused``.

A checkpoint that is missing, changed, does not hold what the plan says, or was trained by
another version of a user workload's code (edited after the plan was made) is not used: the run
trains from scratch and warns in one line, with a ``reuse_failed`` event giving the reason.
Its first stage takes back the samples the plan counted from the checkpoint (their seconds and
dollars scaled alike), so the run trains what a run from scratch needs. The warning says how
much more than predicted that costs. The budget guard holds the cap as it always does.
``--resume`` restores the run's own checkpoints, which hold the reused state and its count
(``RunState.reused``), so a crash after the start never reloads the profile's file.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

from paretrain.planner.program.reuse import StartFrom
from paretrain.runtime.run.changes import Staged, StartedFrom, TrainerSynced
from paretrain.runtime.run.parts import RunParts
from paretrain.runtime.train.checkpoint import CheckpointError, load_verified
from paretrain.runtime.train.workloads import workload_source_digest

__all__ = ["start_from_profile"]


def start_from_profile(p: RunParts) -> None:
    """Load the candidate's ``start`` into the trainer, or fall back to training from scratch
    (the module docstring)."""
    start = p.setup.cand.start
    if start is None:
        return
    path = p.setup.profiles / start.path
    try:
        saved = load_verified(path, start.sha256)
        _check(saved, start, workload_source_digest(p.setup.spec.workload.name))
    except CheckpointError as err:
        _from_scratch(p, start, path, str(err))
        return
    try:
        p.group.trainer.load_state_dict(saved["trainer"])
    except (RuntimeError, KeyError, ValueError, TypeError) as err:
        p.group.start(p.state.stage)  # the failed load may have written part of the trainer
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        _from_scratch(p, start, path, f"does not fit the run's model ({first})")
        return
    trainer, st = p.group.trainer, p.state
    p.apply(StartedFrom(trainer.samples_seen, start.progress, _curve(saved, trainer.samples_seen)))
    p.apply(TrainerSynced(trainer.samples_seen, trainer.batch_size))
    info = {"samples": trainer.samples_seen, "path": start.path, "sha256": start.sha256}
    p.events.ledger("reused", st, **info)
    p.events("reused", **info, progress=round(start.progress, 3))
    p.reporting.reused(trainer.samples_seen, start.path)
    p.log(
        f"starts from the profile's checkpoint {path}: {trainer.samples_seen:,} samples the profile "
        "trained, not paid twice"
    )


def _curve(saved: dict[str, Any], samples: int) -> tuple[tuple[int, float], ...]:
    """The truncated run's evaluations the checkpoint keeps, up to its ``samples`` (none in a
    checkpoint written before they were kept, or where they are not finite numbers)."""
    out: list[tuple[int, float]] = []
    for point in (saved.get("profile") or {}).get("curve") or ():
        try:
            s, v = int(point[0]), float(point[1])
        except (TypeError, ValueError, IndexError):
            return ()
        if not math.isfinite(v) or s > samples or (out and s <= out[-1][0]):
            return ()
        out.append((s, v))
    return tuple(out)


def _check(saved: dict[str, Any], start: StartFrom, code: str) -> None:
    """The file holds what the plan says it does, trained by the workload code the run has
    (``code``: ``workload_source_digest``; a checkpoint that does not record it is taken as is)."""
    what = saved.get("profile") or {}
    want = {"config_id": start.config_id, "batch_size": start.batch_size, "samples": start.samples}
    got = {k: what.get(k) for k in want}
    if got != want:
        raise CheckpointError(f"holds {got}, not the plan's {want}")
    if what.get("workload_code", code) != code:
        raise CheckpointError(
            "was trained by another version of the workload's code (it changed after the plan was "
            "made; 'paretrain plan' again measures the new code)"
        )


def _from_scratch(p: RunParts, start: StartFrom, path: Path, why: str) -> None:
    """Train from scratch: the first stage takes back the samples the plan counted from the
    checkpoint, and the run says what that costs beyond the prediction."""
    st = p.state
    first = st.stages[0]
    per_step = first.batch_size * first.workers
    steps = first.steps + math.ceil(start.samples / per_step)
    f = steps / max(first.steps, 1)
    grown = replace(
        first, samples=steps * per_step, steps=steps, cost_usd=first.cost_usd * f, wall_s=first.wall_s * f
    )
    p.apply(Staged(0, 0, stages=(grown, *st.stages[1:])))
    p.apply(TrainerSynced(p.group.trainer.samples_seen, p.group.trainer.batch_size))
    extra_usd, extra_s = grown.cost_usd - first.cost_usd, grown.wall_s - first.wall_s
    info = {"samples": start.samples, "path": start.path, "reason": why}
    p.events.ledger("reuse_failed", st, **info)
    p.events("reuse_failed", **info, extra_usd=extra_usd, extra_s=round(extra_s, 3))
    p.reporting.reused(0, start.path, why)
    p.log(
        f"warning: the profile's checkpoint {path} {why}; training from scratch: the plan counted its "
        f"{start.samples:,} samples, so this run needs about ${extra_usd:.3g} and {extra_s:.3g} s more "
        "than predicted (the budget still caps it)"
    )
