"""Runs a plan's candidate stage by stage: real training under a hard budget cap.

The executor owns the run's state (``paretrain.runtime.run.state.RunState``) and composes the parts it
calls with that state: the account and event log (``paretrain.runtime.run.account``), the budget guard
(``paretrain.runtime.run.guard``), the trainer's processes (``paretrain.runtime.run.processes``), checkpoints,
resume, preemption and moves (``paretrain.runtime.run.recovery``), the status file and MLflow run
(``paretrain.runtime.run.reporting``) and the adaptive side (``paretrain.runtime.adapt.adaptation``), which
observes a snapshot at each evaluation and returns a decision that the executor applies. The
run ends at the candidate's accuracy level, at ``target.max_samples``, at the budget or (an
offer gone past it) at the deadline.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from paretrain.planner.errors import InputError
from paretrain.planner.inputs.spec import Spec
from paretrain.planner.plan.plan import Candidate, Plan
from paretrain.runtime.adapt.adaptation import Adaptation, Change, Snapshot
from paretrain.runtime.adapt.policy import Action, Decision
from paretrain.runtime.files import atomic_write_bytes
from paretrain.runtime.money.ledger import Ledger
from paretrain.runtime.money.meter import Meter
from paretrain.runtime.money.prices import PriceSource, ScriptedEvents, StaticPrices, parse_events
from paretrain.runtime.run.account import Account, EventLog
from paretrain.runtime.run.guard import BudgetGuard, Window, run_cap
from paretrain.runtime.run.processes import TrainerGroup
from paretrain.runtime.run.recovery import Recovery
from paretrain.runtime.run.reporting import Reporting
from paretrain.runtime.run.runs import LedgerEnd, RunResult, find_resumable, ledger_end
from paretrain.runtime.run.state import RunSetup, RunState
from paretrain.runtime.run.steps import checked_step, window_steps
from paretrain.runtime.tracking.client import Tracker
from paretrain.runtime.train.checkpoint import checkpoint_paths
from paretrain.runtime.train.devices import local_devices
from paretrain.runtime.train.elastic import GroupUnavailable, WorkerLost
from paretrain.runtime.train.trainer import warm_up_torch
from paretrain.runtime.train.workloads import load_workload

__all__ = ["Executor", "RunResult", "find_resumable", "run_setup"]


def run_setup(
    plan: Plan, cand: Candidate, workdir: Path, run_id: str | None = None, spec: Spec | None = None
) -> RunSetup:
    """The run's fixed facts; ``InputError`` when a stage's local hardware is not here."""
    spec = spec or plan.spec
    rid = run_id or f"run-{plan.fingerprint[:8]}-{cand.id}-{time.strftime('%Y%m%dT%H%M%S')}"
    devices = local_devices()
    local = frozenset(d.id for d in devices)
    cpus = sorted((d for d in devices if d.kind == "cpu"), key=lambda d: d.threads)
    emulate_on = spec.runtime.emulate_on or (cpus[-1].id if cpus else "local/cpu-1")
    if emulate_on not in local:
        raise InputError(
            f"runtime.emulate_on: {emulate_on} is not a device here (here: "
            f"{', '.join(sorted(local))}). To fix: name a local device"
        )
    for st in cand.stages:
        if plan.offer(st.hardware).local and st.hardware not in local:
            raise InputError(
                f"plan stage {st.index} uses {st.hardware}, which is not present on this "
                f"machine (here: {', '.join(sorted(local))}). To fix: plan on this "
                "machine, or run the plan where that hardware is"
            )
    state = Path(workdir) / ".paretrain"
    return RunSetup(
        plan=plan,
        cand=cand,
        spec=spec,
        run_id=rid,
        run_dir=state / "runs" / rid,
        ledger_path=state / "ledger" / f"{rid}.jsonl",
        local=local,
        emulate_on=emulate_on,
    )


class Executor:
    """Executes one candidate of a plan. ``run()`` returns a ``RunResult``, or raises
    ``BudgetExhausted`` (carrying the result) when the budget, the deadline or the sample
    limit stops it before the target."""

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
    ) -> None:
        self.setup = run_setup(plan, candidate, Path(workdir), run_id, spec)
        self.spec = self.setup.spec
        self.workdir = Path(workdir)
        self.tracker, self.resume, self.plan_path = tracker, resume, plan_path
        base = prices or StaticPrices({o.id: o.price_usd_per_h for o in plan.offers})
        events = parse_events(self.spec.runtime.events)
        self.prices: PriceSource = ScriptedEvents(base, events) if events else base
        self.log = log or (lambda msg: None)
        self.metric = self.spec.target.metric_obj
        self.state = RunState(
            stages=list(candidate.stages), hw=candidate.stages[0].hardware, accuracy=self.metric.initial()
        )
        self.window: Window | None = None

    @property
    def run_id(self) -> str:
        return self.setup.run_id

    @property
    def trainer(self) -> Any:
        return self.group.trainer

    def run(self) -> RunResult:
        """Set up, train until a stop condition, and finish (see the module docstring)."""
        try:
            early = self.start()
            return self.finish(early or self.loop())
        finally:
            if hasattr(self, "group"):
                self.group.close()

    # -- start and finish --------------------------------------------------------------------
    def start(self) -> str | None:
        """Build the parts, the trainer and tracking; restore on resume. Returns a stop status
        when not even the first step fits the budget."""
        s, st = self.setup, self.state
        s.run_dir.mkdir(parents=True, exist_ok=True)
        if self.tracker is not None:
            self.tracker.wait_ready()
        warm_up_torch()
        ledger = Ledger(s.ledger_path, s.run_id)
        self.budget = run_cap(self.spec, s.ledger_path.parent, ledger.spent)
        workload = load_workload(self.spec.workload, self.workdir / ".paretrain" / "cache")
        self.group = TrainerGroup(s, workload, s.plan.config(s.cand.config_id))
        trainer = self.group.start(st.stage)
        # the meter starts once data and model are ready (like the library loading before it,
        # building them is the same for every candidate and is not charged)
        self.ended = ledger_end(s.ledger_path) if self.resume else LedgerEnd()
        self.meter = Meter(ledger, self.prices, start_t=self.ended.t)
        self.account = Account(s, self.meter)
        self.events = EventLog(s, self.meter)
        self.guard = BudgetGuard(s, self.account, self.prices, self.budget, trainer.parameter_count())
        self.recovery = Recovery(self.account, self.guard, self.group, self.events, self.prices, self.log)
        self.reporting = Reporting(s, self.tracker, self.events, self.plan_path)
        self.adaptation = Adaptation(s.plan, s.cand, self.spec, self.prices, self.meter.cost_ahead)
        self._enter_stage()
        if self.group.processes(st.stage) > 1:
            self.events("workers", stage=0, workers=self.group.processes(st.stage))
        st.storage_t = st.ckpt_t = self.meter.t
        st.samples, st.batch_size = trainer.samples_seen, trainer.batch_size
        self.reporting.start(trainer, self.budget)
        self.reporting.status("running", emulated=s.emulated_any)
        return self._first_checkpoint()

    def _first_checkpoint(self) -> str | None:
        st = self.state
        resumed = self.recovery.load_latest() if self.resume else None
        if resumed is not None:
            st.kept_bytes = [p.stat().st_size for p in checkpoint_paths(self.setup.run_dir)]
            hw = str(resumed[0]["run"].get("hardware", st.hw))
            began = self.ended.hold  # the killed process's hold, still billed
            orphan = None if began is None else (*began, self.meter.t)
            if self.guard.restore_over_budget(
                st, hw, self.meter.t, extra_usd=self.account.interrupted_usd(orphan)
            ):
                self.account.settle_interrupted(st, orphan)
                st.dirty = False
                return "budget"
            self.recovery.restore(st, resumed, reason="resume")
            self.account.settle_interrupted(st, orphan)
            st.dirty = False
        elif self.guard.start_over_budget(st):
            st.dirty = False  # not even provisioning, a first step and its checkpoint fit: spend nothing
            return "budget"
        else:
            self.recovery.provision(st)
            self.recovery.checkpoint(st, "start")
        every = self.spec.runtime.eval_every_samples
        st.next_eval = (self.trainer.samples_seen // every + 1) * every
        self._enter_stage()
        return None

    def finish(self, status: str) -> RunResult:
        st = self.state
        try:
            if st.dirty:  # nothing to save when the last checkpoint holds this very state
                self.recovery.checkpoint(st, "final" if status == "target" else status)
            self.account.charge(st, "compute", "teardown")
            self.account.settle(st)  # the offer is released: its provider bills the hold
        finally:
            self.meter.ledger.close()
        return self.reporting.finish(status, st, self.meter, self.trainer, self.budget)

    # -- the loop ----------------------------------------------------------------------------
    def loop(self) -> str:
        st, spec = self.state, self.spec
        while True:
            if st.stage_i < len(st.stages) and st.stage_done >= st.stage.samples:
                if self.guard.transition_over_budget(st):
                    return "budget"
                self._next_stage()
                continue
            if st.stage_i >= len(st.stages) and not st.beyond:
                self._beyond_plan()
            if self.trainer.samples_seen >= spec.target.max_samples:
                return "max_samples"
            stop = self._train()
            if stop:
                return stop
            if self.trainer.samples_seen >= st.next_eval:
                st.next_eval += spec.runtime.eval_every_samples
                stop = self._evaluate_and_adapt()
                if stop:
                    return stop
            if self.account.now(st) - st.ckpt_t >= spec.runtime.checkpoint_every_s:
                self.recovery.checkpoint(st, "interval")
                self.window = None  # the storage rate changed

    def _train(self) -> str | None:
        """Steps, on the processes of a data-parallel stage as long as they hold together (a
        lost helper: back to the last checkpoint; a group that cannot form: stop)."""
        st = self.state
        st.connect_s = self.group.pending_connect_s()
        try:
            return self._steps()
        except WorkerLost as err:
            self.window = None
            return self.recovery.workers_lost(st, str(err))
        except GroupUnavailable as err:
            self.window = None
            return self.recovery.workers_unavailable(st, err)

    def _steps(self) -> str | None:
        """Steps: a full check and one step, or steps inside the open safe window."""
        st, w = self.state, self.window
        now = self.account.now(st)
        if w is not None and now < w.until and self.meter.ledger.spent < w.spend:
            every = self.spec.runtime.checkpoint_every_s
            if not window_steps(
                st,
                self.trainer,
                self.account,
                w,
                stage_left=st.stage.samples - st.stage_done,
                max_samples=self.spec.target.max_samples,
                ckpt_at=st.ckpt_t + every,
            ):
                self.window = None
            return None
        if not self.prices.available(st.hw, now):
            self.window = None
            return self.recovery.preempted(st)
        if self.guard.over_budget(st):
            return "budget"
        self.window = self.guard.window(st, now)
        if not checked_step(st, self.trainer, self.account, self.prices, self.window):
            self.window = None
        return None

    def _beyond_plan(self) -> None:
        st = self.state
        st.beyond = True
        st.stage_i = len(st.stages) - 1
        st.stage_done = -(1 << 62)  # stay on the last stage's settings from here on
        self.events("beyond_plan", samples=self.trainer.samples_seen, accuracy=st.accuracy)
        self.log(
            f"the plan's samples are used up at {self.metric.name} {st.accuracy:.4f} before "
            f"{self.setup.cand.level:g}; continuing with the last stage's settings"
        )

    def _evaluate(self) -> float:
        """Evaluate and charge it; the target metric's value (``RunState.accuracy`` holds it)."""
        st = self.state
        emu = self.setup.emulated(st.hw)
        t_before, usd_before = self.meter.t, self.meter.ledger.spent
        ev = self.trainer.evaluate()
        if emu:
            self.account.charge(
                st, "compute", "eval", seconds=st.stage.eval_s * self.prices.slowdown(st.hw, self.meter.t)
            )
        else:
            st.eval_real = max(st.eval_real * 0.9, ev.seconds)
            self.account.charge(st, "compute", "eval")
        st.accuracy, st.val_loss, st.metrics = ev.value, ev.loss, dict(ev.metrics)
        st.busy_s += self.meter.t - t_before
        st.busy_usd += self.meter.ledger.spent - usd_before
        self.reporting.evaluation(
            st, self.meter, self.trainer, self.prices.price_usd_per_h(st.hw, self.meter.t)
        )
        return ev.value

    def _evaluate_and_adapt(self) -> str | None:
        if self.metric.reached(self._evaluate(), self.setup.cand.level):
            return "target"
        if not self.adaptation.enabled:
            return None
        decision = self.adaptation.decide(self.snapshot())
        return self.apply(decision)

    # -- stages ------------------------------------------------------------------------------
    def _enter_stage(self) -> None:
        """The meter charges for every instance the current stage rents."""
        self.meter.scale = max(1, int(self.state.stage.instances))
        self.state.form_group(self.setup.form_s(self.state.stage))
        self.window = None

    def _next_stage(self) -> None:
        st = self.state
        self.recovery.checkpoint(st, f"end of stage {st.stage_i}")
        st.stage_i, st.stage_done = st.stage_i + 1, 0
        if st.stage_i >= len(st.stages):
            return
        gb = self._take_up_stage()
        self.events("stage", stage=st.stage_i, hardware=st.hw, batch_size=gb)

    def _take_up_stage(self) -> int:
        """Take up the current stage's settings: its offer (moving there if needed) and its
        global batch (learning rate rescaled, short warm-up). Returns the global batch."""
        st = self.state
        self._enter_stage()
        stage = st.stage
        if stage.hardware != st.hw:
            self.recovery.move_to(st, stage.hardware)
        if self.group.regroup(stage):
            self.events("workers", stage=st.stage_i, workers=self.group.processes(stage))
        gb = stage.batch_size * stage.workers
        if gb != self.trainer.batch_size:
            self.trainer.set_batch_size(gb, warmup_steps=5)
        st.batch_size = self.trainer.batch_size
        return gb

    # -- adaptation --------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        st = self.state
        return Snapshot(
            now=self.account.now(st),
            spent=self.meter.spent,
            budget=self.budget,
            reserve_usd=self.guard.reserve_usd(st),
            hw=st.hw,
            stage_i=st.stage_i,
            stages=tuple(st.stages),
            stage_done=st.stage_done,
            progress=st.progress,
            beyond=st.beyond,
            samples=self.trainer.samples_seen,
            batch_size=self.trainer.batch_size,
            busy_s=st.busy_s,
            busy_usd=st.busy_usd,
            val_loss=st.val_loss,
            accuracy=st.accuracy,
            held_s=self.account.held_s(),
        )

    def apply(self, decision: Decision) -> str | None:
        """Carry a policy decision out; returns a stop status or None to go on."""
        if decision.action == Action.CONTINUE:
            return None
        if decision.action == Action.PAUSE:
            self._pause(float(decision.detail["until"]), decision.reason)
            return None
        if decision.rollback:
            self._rollback(decision.reason)
        snap = self.snapshot()
        change = self.adaptation.replan(snap, decision)
        return self._apply_change(change, snap)

    def _apply_change(self, change: Change, snap: Snapshot) -> str | None:
        st = self.state
        self.events("replan", **change.record)
        self.events.ledger(
            "replan", st, **{k: v for k, v in change.record.items() if k not in ("stages", "step_factor")}
        )
        self.log(
            f"replan at {snap.now:.1f} s: {change.reason} (predicted rest "
            f"${change.record['old_cost_usd']:.3g} / {change.record['old_wall_s']:.1f} s -> "
            f"${change.record['new_cost_usd']:.3g} / {change.record['new_wall_s']:.1f} s)"
        )
        if change.action == Action.CONTINUE:
            return None
        if change.action == Action.STOP:
            return "budget"
        if change.first is not None and self.guard.change_over_budget(st, change.first[0]):
            self.events("replan_unaffordable", reason="the checkpoint and move do not fit the budget left")
            return "budget"
        self.recovery.checkpoint(st, "before adaptation")
        self._save_rollback_point()
        self.adaptation.committed(change, snap)
        st.stages = st.stages[: st.stage_i] + list(change.stages)
        st.stage_done = 0
        self._take_up_stage()
        self.recovery.checkpoint(
            st, "after adaptation"
        )  # resume and preemption restore to the new plan, here
        return None

    @property
    def _rollback_path(self) -> Path:
        return self.setup.run_dir / "before-adaptation.pt"

    def _save_rollback_point(self) -> None:
        st = self.state
        saved = {
            "trainer": self.trainer.state_dict(),
            "run": {
                "stage": st.stage_i,
                "stage_samples": st.stage_done,
                "progress": st.progress,
                "hardware": st.hw,
            },
        }
        buf = io.BytesIO()
        torch.save(saved, buf)
        atomic_write_bytes(self._rollback_path, buf.getvalue())

    def _rollback(self, reason: str) -> None:
        """Back to the state just before the last adaptation; its option is avoided from now on."""
        if not self._rollback_path.exists():
            return
        stages = self.adaptation.rollback()
        if stages is None:
            return
        st = self.state
        saved = torch.load(self._rollback_path, map_location="cpu", weights_only=True)
        self.trainer.load_state_dict(saved["trainer"])
        run = saved["run"]
        st.stage_i, st.stage_done, st.progress = (
            int(run["stage"]),
            int(run["stage_samples"]),
            float(run["progress"]),
        )
        st.stages = list(stages)
        st.samples, st.batch_size = self.trainer.samples_seen, self.trainer.batch_size
        self._enter_stage()
        if str(run["hardware"]) != st.hw:
            self.recovery.move_to(st, str(run["hardware"]))
        self.events("rollback", reason=reason, bad=sorted(map(list, self.adaptation.bad)))
        self.events.ledger("rollback", st, reason=reason)

    def _pause(self, until: float, reason: str) -> None:
        st = self.state
        emu = self.setup.emulated(st.hw)
        if self.guard.change_over_budget(st, st.hw, extra_s=until - self.meter.now(emu)):
            return  # the checkpoint and the storage of the wait do not fit: keep going (the cap holds)
        self.recovery.checkpoint(st, "pause")
        now = self.meter.now(emu)
        self.events("pause", reason=reason, until=until, seconds=until - now)
        self.events.ledger("pause", st, reason=reason, seconds=round(until - now, 6))
        self.account.settle(st)  # the machine is let go while paused
        self.meter.wait(st.hw, until - now, stage=st.stage_name, emulated=emu)
        self.account.open_hold(st)
        self.account.charge_storage(st, "checkpoints while paused")
        self.meter.skip_real()
        self.window = None
        self.adaptation.paused()
