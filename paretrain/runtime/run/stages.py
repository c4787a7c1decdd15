"""Moving through a run's stages: entering one (its instances, its group), taking up its
settings (offer, global batch), the next stage, and going on past the plan's last sample.
Each step reads the run state and hands what changed to the executor's ``apply``."""

from __future__ import annotations

from paretrain.runtime.run.changes import Staged, StageEntered, TrainerSynced
from paretrain.runtime.run.memory import fit_memory
from paretrain.runtime.run.parts import RunParts

__all__ = ["beyond_plan", "enter_stage", "next_stage", "take_up_stage"]


def enter_stage(p: RunParts) -> None:
    """The meter charges for every instance the current stage rents; its group is entered."""
    p.meter.scale = max(1, int(p.state.stage.instances))
    p.apply(StageEntered(p.setup.form_s(p.state.stage)))


def take_up_stage(p: RunParts) -> int:
    """Take up the current stage's settings: its offer (moving there if needed) and its
    global batch (learning rate rescaled, short warm-up). Returns the global batch."""
    st, trainer = p.state, p.group.trainer
    enter_stage(p)
    stage = st.stage
    if stage.hardware != st.hw:
        p.recovery.move_to(st, stage.hardware)
    if p.group.regroup(stage):
        p.events("workers", stage=st.stage_i, workers=p.group.processes(stage))
        trainer = p.group.trainer
    gb = stage.batch_size * stage.workers
    if gb != trainer.batch_size:
        trainer.set_batch_size(gb, warmup_steps=5)
    p.apply(TrainerSynced(trainer.samples_seen, trainer.batch_size))
    fit_memory(p)  # runtime.max_memory_mb: a smaller batch when a step's peak would pass it
    return gb


def next_stage(p: RunParts) -> None:
    """Checkpoint the stage's end and take up the next stage (none after the last)."""
    st = p.state
    p.recovery.checkpoint(st, f"end of stage {st.stage_i}")
    p.apply(Staged(st.stage_i + 1, 0))
    if st.stage_i >= len(st.stages):
        return
    gb = take_up_stage(p)
    p.events("stage", stage=st.stage_i, hardware=st.hw, batch_size=gb)


def beyond_plan(p: RunParts, goal: float) -> None:
    """The plan's samples are used up before ``goal``: stay on the last stage's settings."""
    st = p.state
    p.apply(Staged(len(st.stages) - 1, -(1 << 62), beyond=True))
    samples = p.group.trainer.samples_seen
    p.events("beyond_plan", samples=samples, level=st.level)
    metric = p.setup.spec.target.metric_obj
    p.log(
        f"the plan's samples are used up at {metric.name} {st.level:.4f} before "
        f"{goal:g}; continuing with the last stage's settings"
    )
