"""What changes in a run's state, as small frozen records.

The executor's parts (``paretrain.runtime.run.steps``, ``paretrain.runtime.run.account``,
``paretrain.runtime.run.recovery``) and the executor's own stages return what changed in the
run instead of writing ``RunState``; the executor applies each record in one place
(``Executor.apply``), the only caller that opens the state for writing. A record's
``apply_to`` says exactly which fields it changes.

>>> Checkpointed(at=2.0, size=1024, keep=2)
Checkpointed(at=2.0, size=1024, keep=2, ckpt_real=None)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from paretrain.planner.plan.plan import StagePlan
from paretrain.runtime.run.state import RunState

__all__ = [
    "Checkpointed",
    "CheckpointsFound",
    "Connecting",
    "EvalScheduled",
    "Evaluated",
    "Moved",
    "NothingToSave",
    "Refitted",
    "Restored",
    "StageEntered",
    "Staged",
    "Started",
    "StartedFrom",
    "StateChange",
    "Stepped",
    "Stopped",
    "StorageCharged",
    "TrainerSynced",
]


@dataclass(frozen=True, slots=True)
class Stepped:
    """Steps trained: ``samples`` at global batch ``batch``, the last loss, the run time and
    money they took; on a local offer their real seconds and the slowest recent step after them."""

    samples: int
    batch: int
    loss: float
    busy_s: float
    busy_usd: float
    compute_s: float = 0.0
    compute_steps: int = 0
    slowest: float | None = None
    formed: bool = False  # the stage's group formed before them (its seconds are charged)

    def apply_to(self, state: RunState) -> None:
        state.advance(self.samples, self.batch)
        state.loss = self.loss
        state.busy_s += self.busy_s
        state.busy_usd += self.busy_usd
        state.compute_s += self.compute_s
        state.compute_steps += self.compute_steps
        if self.slowest is not None:
            state.slowest = self.slowest
        if self.formed:
            state.form_s = 0.0


@dataclass(frozen=True, slots=True)
class Evaluated:
    """An evaluation: the target metric's value, the validation loss, every metric, the run time
    and money it took, (local offers) the slowest recent evaluation's real seconds and, when
    given, the samples seen: a point of the run's learning curve."""

    value: float
    loss: float
    metrics: Mapping[str, float] = field(default_factory=dict)
    busy_s: float = 0.0
    busy_usd: float = 0.0
    eval_real: float | None = None
    samples: int | None = None

    def apply_to(self, state: RunState) -> None:
        state.level, state.val_loss, state.metrics = self.value, self.loss, dict(self.metrics)
        if self.samples is not None:
            state.add_point(self.samples, self.value)
        state.busy_s += self.busy_s
        state.busy_usd += self.busy_usd
        if self.eval_real is not None:
            state.eval_real = self.eval_real


@dataclass(frozen=True, slots=True)
class Refitted:
    """The run's learning curve was refitted: P10 / P50 / P90 of the samples to the target."""

    to_target: tuple[float, float, float]

    def apply_to(self, state: RunState) -> None:
        state.curve_refit = self.to_target


@dataclass(frozen=True, slots=True)
class Checkpointed:
    """A checkpoint of ``size`` bytes written at run time ``at`` (``keep`` are kept); on a local
    offer, the slowest recent checkpoint's real seconds."""

    at: float
    size: int
    keep: int
    ckpt_real: float | None = None

    def apply_to(self, state: RunState) -> None:
        state.kept_bytes = (*state.kept_bytes, self.size)[-self.keep :]
        state.ckpt_t = self.at
        state.dirty = False
        if self.ckpt_real is not None:
            state.ckpt_real = self.ckpt_real


@dataclass(frozen=True, slots=True)
class CheckpointsFound:
    """The sizes of the checkpoints a resumed run finds on disk."""

    kept_bytes: tuple[int, ...]

    def apply_to(self, state: RunState) -> None:
        state.kept_bytes = tuple(self.kept_bytes)


@dataclass(frozen=True, slots=True)
class StorageCharged:
    """The kept checkpoints' storage is charged up to run time ``at``."""

    at: float

    def apply_to(self, state: RunState) -> None:
        state.storage_t = self.at


@dataclass(frozen=True, slots=True)
class NothingToSave:
    """The last checkpoint holds all there is to keep (the work since it is saved, or lost)."""

    def apply_to(self, state: RunState) -> None:
        state.dirty = False


@dataclass(frozen=True, slots=True)
class Moved:
    """The run is on ``hardware`` from now on."""

    hardware: str

    def apply_to(self, state: RunState) -> None:
        state.hw = self.hardware


@dataclass(frozen=True, slots=True)
class Restored:
    """Back to a checkpoint's position (``RunState.position``) at run time ``at``; the next
    evaluation at ``next_eval`` samples."""

    position: Mapping[str, Any]
    at: float
    next_eval: int

    def apply_to(self, state: RunState) -> None:
        state.restore_position(self.position)
        state.ckpt_t = self.at
        state.next_eval = self.next_eval


@dataclass(frozen=True, slots=True)
class TrainerSynced:
    """The trainer's samples seen and global batch, mirrored in the state."""

    samples: int
    batch_size: int

    def apply_to(self, state: RunState) -> None:
        state.samples, state.batch_size = self.samples, self.batch_size


@dataclass(frozen=True, slots=True)
class Staged:
    """The run's place in its stages: the stage, the samples done in it and, when they change,
    the stages (a replan's tail, a rollback's), the ideal progress and whether the plan's
    samples are used up."""

    stage_i: int
    stage_done: int
    stages: Sequence[StagePlan] | None = None
    progress: float | None = None
    beyond: bool | None = None

    def apply_to(self, state: RunState) -> None:
        state.stage_i, state.stage_done = self.stage_i, self.stage_done
        if self.stages is not None:
            state.stages = tuple(self.stages)
        if self.progress is not None:
            state.progress = self.progress
        if self.beyond is not None:
            state.beyond = self.beyond


@dataclass(frozen=True, slots=True)
class StageEntered:
    """The current stage's group is entered; forming a new one takes ``form_s`` virtual seconds."""

    form_s: float

    def apply_to(self, state: RunState) -> None:
        state.form_group(self.form_s)


@dataclass(frozen=True, slots=True)
class Connecting:
    """The longest the next step may wait for its processes to rendezvous."""

    seconds: float

    def apply_to(self, state: RunState) -> None:
        state.connect_s = self.seconds


@dataclass(frozen=True, slots=True)
class EvalScheduled:
    """The next evaluation is due at ``next_eval`` samples."""

    next_eval: int

    def apply_to(self, state: RunState) -> None:
        state.next_eval = self.next_eval


@dataclass(frozen=True, slots=True)
class Started:
    """The run's clocks start at run time ``at``: storage and checkpoints count from there."""

    at: float

    def apply_to(self, state: RunState) -> None:
        state.storage_t = state.ckpt_t = self.at


@dataclass(frozen=True, slots=True)
class StartedFrom:
    """The run starts from the profile's checkpoint of its config: ``samples`` trained there,
    worth ``progress`` ideal samples (``paretrain.planner.program.reuse``), and the truncated
    run's evaluations up to them (``curve``: its learning curve so far, which the run goes on)."""

    samples: int
    progress: float
    curve: tuple[tuple[int, float], ...] = ()

    def apply_to(self, state: RunState) -> None:
        state.reused, state.progress = self.samples, self.progress
        if self.curve:
            state.curve_points = self.curve


@dataclass(frozen=True, slots=True)
class Stopped:
    """Why the run stops, when it is not the budget, the deadline or the samples; and, when
    known, what it would have spent in all had it gone on (what stopping saves is the rest)."""

    reason: str
    projected_usd: float = 0.0

    def apply_to(self, state: RunState) -> None:
        state.stop_reason = self.reason
        state.stop_projected_usd = self.projected_usd


StateChange = (
    Stepped
    | Evaluated
    | Refitted
    | Checkpointed
    | CheckpointsFound
    | StorageCharged
    | NothingToSave
    | Moved
    | Restored
    | TrainerSynced
    | Staged
    | StageEntered
    | Connecting
    | EvalScheduled
    | Started
    | StartedFrom
    | Stopped
)
