"""Runs a plan's candidate stage by stage: real training under a hard budget cap.

The executor owns the run's state (``paretrain.runtime.run.state.RunState``) and composes the
parts it calls with that state (``paretrain.runtime.run.parts``): the account and event log,
the budget guard, the trainer's processes, checkpoints, resume, preemption and moves
(``paretrain.runtime.run.recovery``), the status file and MLflow run and the adaptive side
(``paretrain.runtime.adapt.adaptation``), which observes a snapshot at each evaluation and
returns a decision that the executor carries out (``paretrain.runtime.run.adapting``); the
stages are taken up by ``paretrain.runtime.run.stages``. The parts say what changed as records
(``paretrain.runtime.run.changes``); ``Executor.apply`` is the one place they are written into
the state. The run ends at the candidate's accuracy level, at ``target.max_samples``, at the
budget or (an offer gone past it) at the deadline.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from paretrain.planner.inputs.spec import Spec
from paretrain.planner.plan.plan import Candidate, Plan
from paretrain.runtime.adapt.policy import Action, Decision
from paretrain.runtime.money.disk import DiskFull
from paretrain.runtime.money.prices import PriceSource, ScriptedEvents, StaticPrices, parse_events
from paretrain.runtime.run.adapting import carry_out, learn, snapshot
from paretrain.runtime.run.changes import (
    CheckpointsFound,
    Connecting,
    EvalScheduled,
    Evaluated,
    NothingToSave,
    Started,
    StateChange,
    TrainerSynced,
)
from paretrain.runtime.run.faults import (
    FAULT_STATUSES,
    Signals,
    disk_full,
    diverged,
    interrupted,
    nothing_left,
    overran,
    workload_failed,
)
from paretrain.runtime.run.guard import Window
from paretrain.runtime.run.memory import fit_memory, halve_after_oom
from paretrain.runtime.run.parts import RunParts, build_parts
from paretrain.runtime.run.processes import TrainerGroup
from paretrain.runtime.run.reuse import start_from_profile
from paretrain.runtime.run.runs import RunResult, RunStopped, find_resumable
from paretrain.runtime.run.setup import run_setup
from paretrain.runtime.run.stages import beyond_plan, enter_stage, next_stage
from paretrain.runtime.run.state import RunState
from paretrain.runtime.run.steps import checked_step, timed_evaluation, window_steps
from paretrain.runtime.tracking.client import Tracker
from paretrain.runtime.train.checkpoint import checkpoint_paths
from paretrain.runtime.train.deadline import Deadline, Overran
from paretrain.runtime.train.dry_check import WorkloadError
from paretrain.runtime.train.elastic import GroupUnavailable, WorkerLost
from paretrain.runtime.train.trainer import warm_up_torch
from paretrain.runtime.train.workloads import load_workload
from paretrain.runtime.workspace import Workspace

__all__ = ["Executor", "RunResult", "RunStopped", "find_resumable", "run_setup"]


class Executor:
    """Executes one candidate of a plan. ``run()`` returns a ``RunResult``, or raises
    ``RunStopped`` (a ``BudgetExhausted`` carrying the result) when the budget, the deadline
    or the sample limit stops it before the target."""

    def __init__(
        self,
        plan: Plan,
        candidate: Candidate,
        *,
        workdir: Path,
        tracker: Tracker | None = None,
        prices: PriceSource | None = None,
        run_id: str | None = None,
        resume: bool = False,
        plan_path: Path | None = None,
        log: Callable[[str], None] | None = None,
        spec: Spec | None = None,
        workload: Any = None,
    ) -> None:
        self.setup = run_setup(plan, candidate, Path(workdir), run_id, spec)
        self.spec = self.setup.spec
        self.workdir = Path(workdir)
        self.tracker, self.resume, self.plan_path = tracker, resume, plan_path
        base = prices or StaticPrices({o.id: o.price_usd_per_h for o in plan.offers})
        events = parse_events(self.spec.runtime.events)
        self.prices: PriceSource = ScriptedEvents(base, events) if events else base
        self.log: Callable[[str], None] = log or (lambda msg: None)
        self.metric = self.spec.target.metric_obj
        self.state = RunState(
            stages=tuple(candidate.stages), hw=candidate.stages[0].hardware, level=self.metric.initial()
        )
        self.window: Window | None = None  # the open safe window, if any
        self.group: TrainerGroup | None = None  # the trainer's processes, once ``start`` built them
        self._parts: RunParts | None = None  # the run's parts, once ``start`` built them
        self.workload = workload  # already loaded (and dry-checked) by the caller, or None
        self.signals = Signals()  # SIGTERM / SIGINT while the run trains
        self.deadline = Deadline()  # stops the user's code when the budget can pay no more of it
        self._idle = False  # a resume refused before it held anything (``faults.nothing_left``)

    @property
    def run_id(self) -> str:
        return self.setup.run_id

    @property
    def parts(self) -> RunParts:
        if self._parts is None:
            raise RuntimeError(f"run {self.run_id} has not started: call run() (or start())")
        return self._parts

    @property
    def trainer(self) -> Any:
        return self.parts.group.trainer

    def apply(self, change: StateChange) -> None:
        """Write ``change`` into the run state: the one place the state changes."""
        with self.state.unlocked():
            change.apply_to(self.state)

    def run(self) -> RunResult:
        """Set up, train until a stop condition, and finish (see the module docstring)."""
        try:
            with self.signals, self.deadline:
                early = self.start()
                return self.finish(early or self._loop_until_fault())
        finally:
            if self.group is not None:
                self.group.close()

    def _loop_until_fault(self) -> str:
        """The loop; a workload member that raises or a full disk ends it with a fault status
        (``paretrain.runtime.run.faults``)."""
        try:
            return self.loop()
        except WorkloadError as err:
            self.window = None
            return workload_failed(self.parts, self.state, err, self.plan_path)
        except DiskFull as err:
            self.window = None
            return disk_full(self.parts, self.state, err, self.plan_path)
        except Overran as err:
            self.window = None
            return overran(self.parts, self.state, str(err) or "a step", self.plan_path)

    # -- start and finish --------------------------------------------------------------------
    def start(self) -> str | None:
        """Build the parts, the trainer and tracking; restore on resume. Returns a stop status
        when not even the first step fits the budget."""
        s, st = self.setup, self.state
        s.run_dir.mkdir(parents=True, exist_ok=True)
        if self.tracker is not None:
            self.tracker.wait_ready()
        warm_up_torch()
        workload = self.workload or load_workload(self.spec.workload, Workspace(self.workdir).cache)
        self.group = TrainerGroup(s, workload, s.plan.config(s.cand.config_id))
        trainer = self.group.start(st.stage)
        p = self._parts = build_parts(
            s,
            st,
            self.group,
            self.prices,
            resume=self.resume,
            tracker=self.tracker,
            plan_path=self.plan_path,
            log=self.log,
            apply=self.apply,
        )
        self._enter_stage()
        if self.group.processes(st.stage) > 1:
            p.events("workers", stage=0, workers=self.group.processes(st.stage))
        self.apply(Started(p.meter.t))
        self.apply(TrainerSynced(trainer.samples_seen, trainer.batch_size))
        p.reporting.start(trainer, p.budget)
        p.reporting.status("running", emulated=s.emulated_any)
        return self._first_checkpoint()

    def _first_checkpoint(self) -> str | None:
        st, p = self.state, self.parts
        if self.resume and p.guard.over_budget(st):
            self._idle = True  # refused before it held anything
            return nothing_left(p, st)
        resumed = p.recovery.load_latest() if self.resume else None
        if resumed is not None:
            self.apply(
                CheckpointsFound(tuple(c.stat().st_size for c in checkpoint_paths(self.setup.run_dir)))
            )
            hw = str(resumed[0]["run"].get("hardware", st.hw))
            began = p.ended.hold  # the killed process's hold, still billed
            orphan = None if began is None else (*began, p.meter.t)
            over = p.guard.restore_over_budget(st, hw, p.meter.t, extra_usd=p.account.interrupted_usd(orphan))
            if not over:
                p.recovery.restore(st, resumed, reason="resume")
            p.account.settle_interrupted(st, orphan)
            self.apply(NothingToSave())
            if over:
                return "budget"
        else:
            start_from_profile(p)  # the plan's start: the profile's checkpoint of the config, if any
            if p.guard.start_over_budget(st):
                self.apply(NothingToSave())  # not even provisioning, a first step and its checkpoint fit
                return "budget"
            p.recovery.provision(st)
            p.recovery.checkpoint(st, "start")
        every, seen = self.spec.runtime.eval_every_samples, self.trainer.samples_seen
        # a run that starts from the profile's checkpoint evaluates after its first step: where it
        # starts is known at once (a checkpoint past its level ends it there)
        first = seen + 1 if st.reused and resumed is None else (seen // every + 1) * every
        self.apply(EvalScheduled(first))
        self._enter_stage()
        fit_memory(p)  # runtime.max_memory_mb: a smaller batch when a step's peak would pass it
        return None

    def finish(self, status: str) -> RunResult:
        st, p = self.state, self.parts
        try:
            if st.dirty:  # nothing to save when the last checkpoint holds this very state
                p.recovery.checkpoint(st, "final" if status == "target" else status)
            if not self._idle:  # a resume refused at once held nothing
                p.account.charge(st, "compute", "teardown")
                p.account.settle(st)  # the offer is released: its provider bills the hold
            if status in FAULT_STATUSES:
                p.events.ledger("end", st, status=status)
        except DiskFull as err:  # the disk filled while finishing: what was written stays whole
            status = disk_full(p, st, err, self.plan_path)
        finally:
            p.meter.ledger.close()
        return p.reporting.finish(status, st, p.meter, self.trainer, p.budget)

    # -- the loop ----------------------------------------------------------------------------
    def loop(self) -> str:
        st, spec, p = self.state, self.spec, self.parts
        while True:
            if self.signals.received:
                return interrupted(p, st, self.signals, self.plan_path)
            if st.stage_i < len(st.stages) and st.stage_done >= st.stage.samples:
                if p.guard.transition_over_budget(st):
                    return "budget"
                next_stage(p)
                self.window = None
                continue
            if st.stage_i >= len(st.stages) and not st.beyond:
                beyond_plan(p, self.setup.cand.level)
            if self.trainer.samples_seen >= spec.target.max_samples:
                return "max_samples"
            stop = self._memory_replan() or self._train()
            if stop:
                return stop
            if self.trainer.samples_seen >= st.next_eval:
                self.apply(EvalScheduled(st.next_eval + spec.runtime.eval_every_samples))
                stop = self._evaluate_and_adapt()
                if stop:
                    return stop
            if p.account.now(st) - st.ckpt_t >= spec.runtime.checkpoint_every_s:
                p.recovery.checkpoint(st, "interval")
                self.window = None  # the storage rate changed

    def _train(self) -> str | None:
        """Steps, on the processes of a data-parallel stage as long as they hold together (a
        lost helper: back to the last checkpoint; a group that cannot form: stop)."""
        p = self.parts
        self.apply(Connecting(p.group.pending_connect_s()))
        try:
            return self._steps()
        except WorkerLost as err:
            self.window = None
            return p.recovery.workers_lost(self.state, str(err))
        except GroupUnavailable as err:
            self.window = None
            return p.recovery.workers_unavailable(self.state, err)
        except torch.OutOfMemoryError as err:  # the step in flight is lost, not charged twice
            self.window = None
            halve_after_oom(p, err)
            return None

    def _memory_replan(self) -> str | None:
        """The batch was halved for memory (``paretrain.runtime.run.memory``): replan the rest
        within the offer's new cap (without adaptation, ``runtime.adapt: false``, the stage
        just goes on at the smaller batch)."""
        p = self.parts
        reason, p.adaptation.memory_due = p.adaptation.memory_due, ""
        if not reason or not p.adaptation.enabled or self.state.stage_i >= len(self.state.stages):
            return None
        self.window = None
        return carry_out(p, Decision(Action.REPLAN, reason, detail={"memory": True}))

    def _steps(self) -> str | None:
        """Steps: a full check and one step, or steps inside the open safe window."""
        st, w, p = self.state, self.window, self.parts
        now = p.account.now(st)
        if w is not None and now < w.until and p.meter.ledger.spent < w.spend:
            every = self.spec.runtime.checkpoint_every_s
            timer = self._timer()
            # set once for the window: its spend grows with time only
            with timer.during(p.guard.stop_at(st)) if timer else contextlib.nullcontext():
                holds, done = window_steps(
                    st,
                    self.trainer,
                    p.account,
                    w,
                    stage_left=st.stage.samples - st.stage_done,
                    max_samples=self.spec.target.max_samples,
                    ckpt_at=st.ckpt_t + every,
                    signals=self.signals,
                    on_fault=self.apply,
                    deadline=timer,
                )
        else:
            if not self.prices.available(st.hw, now):
                self.window = None
                return p.recovery.preempted(st)
            if p.guard.over_budget(st):
                return "budget"
            self.window = p.guard.window(st, now)
            stop_at = p.guard.stop_at(st)
            holds, done = checked_step(
                st, self.trainer, p.account, self.prices, self.window, self._timer(), stop_at
            )
        self.apply(done)
        if not holds:
            self.window = None
        if not math.isfinite(done.loss):
            return self._diverged("the training loss", done.loss)
        return None

    def _diverged(self, what: str, value: float) -> str | None:
        self.window = None
        retry = self.spec.runtime.on_divergence == "retry" and self.trainer.lr_scale >= 1.0
        return diverged(self.parts, self.state, what=what, value=value, retry=retry)

    def _evaluate(self) -> float:
        """Evaluate and charge it; the target metric's value (``RunState.level`` holds it)."""
        st, p = self.state, self.parts
        t_before, usd_before = p.meter.t, p.meter.ledger.spent
        ev = timed_evaluation(self.trainer, self._timer(), p.guard.stop_at(st))
        eval_real = None
        if self.setup.emulated(st.hw):
            seconds = st.stage.eval_s * self.prices.slowdown(st.hw, p.meter.t)
            p.account.charge(st, "compute", "eval", seconds=seconds)
        else:
            eval_real = max(st.eval_real * 0.9, ev.seconds)
            p.account.charge(st, "compute", "eval")
        busy_s, busy_usd = p.meter.t - t_before, p.meter.ledger.spent - usd_before
        samples = self.trainer.samples_seen
        self.apply(Evaluated(ev.value, ev.loss, dict(ev.metrics), busy_s, busy_usd, eval_real, samples))
        price = self.prices.price_usd_per_h(st.hw, p.meter.t)
        p.reporting.evaluation(st, p.meter, self.trainer, price)
        return ev.value

    def _evaluate_and_adapt(self) -> str | None:
        p = self.parts
        value = self._evaluate()
        if not math.isfinite(value):
            return self._diverged(f"the evaluated {self.metric.name}", value)
        if self.metric.reached(value, self.setup.cand.level):
            return "target"
        refit = learn(p)
        self.window = None  # a refit took time, and what is carried out changes what the window assumed
        if not p.adaptation.enabled:  # a run that does not adapt still stops for a target out of reach
            return carry_out(p, p.adaptation.out_of_reach(snapshot(p), refit))
        return carry_out(p, p.adaptation.decide(snapshot(p), refit))

    def _timer(self) -> Deadline | None:
        """The deadline for the user's code now: none in a data-parallel stage (a collective
        cut mid-way would hang the other processes; ``paretrain.runtime.train.deadline``)."""
        st = self.state
        if st.stage_i < len(st.stages) and self.parts.group.processes(st.stage) > 1:
            return None
        return self.deadline

    def _enter_stage(self) -> None:
        enter_stage(self.parts)
        self.window = None
