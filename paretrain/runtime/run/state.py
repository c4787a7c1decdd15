"""What one run knows about itself, as plain data: ``RunSetup`` (fixed when the run starts) and
``RunState`` (changes as it trains), owned by the executor and handed to its parts.

The parts (``paretrain.runtime.run.guard``, ``paretrain.runtime.run.recovery``, ``paretrain.runtime.run.reporting``,
``paretrain.runtime.adapt.adaptation``) hold no copy of the run's progress: each is called with the
state it needs, and the executor is the only one that changes it. A ``RunState`` refuses
writes (``StateWriteError``) except inside ``RunState.unlocked``, which only ``Executor.apply``
opens, to apply a change record (``paretrain.runtime.run.changes``).

>>> from paretrain.planner.plan.plan import StagePlan
>>> st = StagePlan(0, "local/cpu-1", "fp32", 64, 1, 640, 10, 1e-3, 0.0, 1.0, 100.0)
>>> s = RunState(stages=[st], hw="local/cpu-1")
>>> s.stage_name, s.stage.batch_size
('stage0', 64)
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from paretrain.planner.inputs.catalog import Offer
from paretrain.planner.inputs.spec import Spec
from paretrain.planner.plan.plan import Candidate, Plan, StagePlan

__all__ = ["RunSetup", "RunState", "StateWriteError"]


class StateWriteError(RuntimeError):
    """A write to a ``RunState`` outside the executor's ``apply``."""


@dataclass(frozen=True)
class RunSetup:
    """The run's fixed facts: its plan, candidate, typed spec, where its files go, and which
    offers are present here (the others are emulated on ``emulate_on``)."""

    plan: Plan
    cand: Candidate
    spec: Spec
    run_id: str
    run_dir: Path
    ledger_path: Path
    local: frozenset[str]
    emulate_on: str

    def emulated(self, hardware: str) -> bool:
        return hardware not in self.local

    def offer(self, hardware: str) -> Offer:
        return self.plan.offer(hardware)

    @property
    def profiles(self) -> Path:
        """The workspace's profile folder: a candidate's ``start`` names a file relative to it."""
        return self.run_dir.parents[1] / "profiles"

    @property
    def emulated_any(self) -> bool:
        return any(self.emulated(s.hardware) for s in self.cand.stages)

    def restart_s(self, hardware: str) -> float:
        """Seconds to restore onto ``hardware``: the offer's switch time when emulated, a local
        process's state load otherwise."""
        return self.offer(hardware).switch_s if self.emulated(hardware) else 0.05

    def form_s(self, stage: StagePlan) -> float:
        """Virtual seconds an emulated stage on several workers takes to form its group (the
        plan's rendezvous term, ``paretrain.planner.program.stagecost``); 0 on a local offer, whose real launch
        and rendezvous the meter charges as they happen."""
        if stage.workers <= 1 or not self.emulated(stage.hardware):
            return 0.0
        try:
            return self.plan.step_model(
                stage.hardware, self.cand.config_id, stage.precision, stage.workers
            ).rendezvous_s
        except KeyError:
            return 0.0


@dataclass
class RunState:
    """Where the run is: stage, progress, clocks of its own, spend counters and checkpoints.
    Read by anyone; written only inside ``unlocked`` (the executor's ``apply``)."""

    stages: Sequence[StagePlan]  # the candidate's, with the tail replaced by each replan (a tuple)
    hw: str  # the offer the run is on
    stage_i: int = 0
    stage_done: int = 0  # samples done in the current stage
    progress: float = 0.0  # ideal samples done (E_min units): samples / (1 + B / B_noise)
    beyond: bool = False  # the plan's samples are used up before the target
    samples: int = 0  # samples trained (mirrors the trainer)
    batch_size: int = 0  # global batch now (mirrors the trainer)
    level: float = 0.0  # the target metric's last value (val_accuracy, val_bpb, ...)
    metrics: Mapping[str, float] = field(default_factory=dict)  # every metric of the last evaluation
    loss: float = math.nan
    val_loss: float = math.nan
    next_eval: int = 0
    slowest: float = 0.0  # slowest recent real step (decays), the real clock's margin
    eval_real: float = 0.0
    ckpt_real: float = 0.02
    ckpt_t: float = 0.0  # run time of the last checkpoint
    storage_t: float = 0.0  # run time storage was last charged up to
    compute_s: float = 0.0  # real seconds inside training steps on local hardware
    compute_steps: int = 0
    busy_s: float = 0.0  # run time of training steps and evaluations
    busy_usd: float = 0.0
    kept_bytes: tuple[int, ...] = ()  # sizes of the checkpoints kept
    dirty: bool = True  # trained since the last checkpoint
    connect_s: float = 0.0  # the longest the next step may wait for its processes to rendezvous
    form_s: float = 0.0  # virtual seconds of an emulated stage's group forming, charged before its next step
    group: tuple[str, int] | None = None  # (offer, workers) of the group formed last in this process
    stop_reason: str = ""  # why the run stopped, when it is not the budget, deadline or samples
    stop_projected_usd: float = 0.0  # what the run would have spent in all had it not stopped (0: unknown)
    #: (samples seen, target metric) at each evaluation of this run, resumes included: the points
    #: its learning curve is refitted to (``paretrain.runtime.adapt.learning``)
    curve_points: tuple[tuple[int, float], ...] = ()
    #: the P10 / P50 / P90 of the samples to the target at the run's last refit of that curve
    curve_refit: tuple[float, float, float] | None = None
    reused: int = 0  # samples the profile's checkpoint it started from had trained (0: from scratch)

    def __post_init__(self) -> None:
        object.__setattr__(self, "stages", tuple(self.stages))
        object.__setattr__(self, "kept_bytes", tuple(self.kept_bytes))
        object.__setattr__(self, "curve_points", tuple(self.curve_points))
        object.__setattr__(self, "_sealed", True)

    def __setattr__(self, name: str, value: Any) -> None:
        if self.__dict__.get("_sealed") and not self.__dict__.get("_open"):
            raise StateWriteError(
                f"RunState.{name} was written outside Executor.apply: a part returns what changed "
                "(paretrain.runtime.run.changes) and the executor applies it"
            )
        object.__setattr__(self, name, value)

    @contextmanager
    def unlocked(self) -> Iterator[RunState]:
        """The state open for writing while the executor applies a change record; nothing else
        opens it (``tests/runtime/test_state_ownership.py`` checks)."""
        was = self.__dict__.get("_open", False)
        object.__setattr__(self, "_open", True)
        try:
            yield self
        finally:
            object.__setattr__(self, "_open", was)

    @property
    def stage(self) -> StagePlan:
        return self.stages[min(self.stage_i, len(self.stages) - 1)]

    def form_group(self, seconds: float) -> None:
        """Enter the current stage's group: a new one (``seconds`` to form, charged before the
        next step) unless this process formed one on the same offer with the same workers."""
        key = (self.stage.hardware, self.stage.workers)
        if key != self.group:
            self.group, self.form_s = key, seconds

    @property
    def stage_name(self) -> str:
        return f"stage{self.stage_i}"

    def position(self) -> dict[str, Any]:
        """What a checkpoint records of the run besides the trainer."""
        return {
            "stage": self.stage_i,
            "stage_samples": self.stage_done,
            "hardware": self.hw,
            "level": self.level,
            "progress": self.progress,
            "reused": self.reused,
            "stages": [asdict(st) for st in self.stages],
            "curve": [[s, v] for s, v in self.curve_points],
            "curve_refit": None if self.curve_refit is None else list(self.curve_refit),
        }

    def restore_position(self, run: Mapping[str, Any]) -> None:
        """Take back a checkpoint's position (the inverse of ``position``)."""
        self.stage_i, self.stage_done = int(run["stage"]), int(run["stage_samples"])
        self.level = float(run.get("level", run.get("accuracy", 0.0)))  # "accuracy": before 0.2
        self.progress = float(run.get("progress", 0.0))
        self.reused = int(run.get("reused", 0))
        if run.get("stages"):
            self.stages = tuple(StagePlan(**st) for st in run["stages"])
        self.hw = str(run.get("hardware", self.hw))
        self.curve_points = tuple((int(s), float(v)) for s, v in run.get("curve", ()))
        refit = run.get("curve_refit")
        self.curve_refit = None if refit is None else (float(refit[0]), float(refit[1]), float(refit[2]))

    def add_point(self, samples: int, value: float) -> None:
        """An evaluation's (samples, value): a point at or past ``samples`` belongs to work that
        was rolled back, so it goes."""
        kept = tuple(p for p in self.curve_points if p[0] < samples)
        self.curve_points = (*kept, (samples, value))

    def advance(self, samples: int, batch: int) -> None:
        """Count ``samples`` trained at global batch ``batch`` in the current stage."""
        self.stage_done += samples
        self.samples += samples
        self.progress += samples / (1.0 + batch / self.stage.b_noise)
        self.dirty = True
