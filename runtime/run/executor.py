"""Runs a plan's candidate stage by stage: real training under a hard budget cap.

The loop: steps (with a fast path inside a safe window), evaluations, stage changes, and at
each evaluation the adaptive policy (``runtime.adapt.adaptation``). The cap and its reserve live in
``runtime.run.guard``; checkpoints, resume, preemption and moves in ``runtime.run.recovery``; the
tracking run and the finish in ``runtime.run.reporting``; data-parallel workers in
``runtime.train.parallel``; the meter that charges the ledger in ``runtime.money.meter``. The run ends at the candidate's accuracy
level, at ``target.max_samples``, at the budget or (an offer gone past it) at the deadline.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable

import torch

from planner.errors import InputError
from planner.plan import Candidate, Plan, StagePlan
from planner.spec import Spec, parse_spec
from runtime.adapt.adaptation import Adaptation
from runtime.train.checkpoint import load_latest
from runtime.train.devices import claim, local_devices
from runtime.files import atomic_write_text
from runtime.run.guard import BudgetGuard
from runtime.money.ledger import Ledger
from runtime.money.meter import Meter
from runtime.money.prices import PriceSource, ScriptedEvents, StaticPrices, parse_events
from runtime.run.recovery import Recovery
from runtime.run.reporting import Reporting
from runtime.run.runs import RunResult, find_resumable, last_run_time
from runtime.tracking.client import Tracker
from runtime.train.trainer import Trainer, warm_up_torch
from runtime.train.workloads import WORKLOADS, load_workload

__all__ = ["Executor", "RunResult", "find_resumable"]


class Executor(BudgetGuard, Recovery, Reporting):
    """Executes one candidate of a plan. ``run()`` returns a ``RunResult``, or raises
    ``BudgetExhausted`` (carrying the result) when the budget, the deadline or the sample
    limit stops it before the target."""

    def __init__(self, plan: Plan, candidate: Candidate, *, workdir: Path, tracker: Tracker | None = None,
                 prices: PriceSource | None = None, run_id: str | None = None, resume: bool = False,
                 plan_path: Path | None = None, log: Callable[[str], None] | None = None) -> None:
        self.plan, self.cand = plan, candidate
        self.workdir = Path(workdir)
        self.spec: Spec = parse_spec(dict(plan.spec), "plan:spec", WORKLOADS)
        self.tracker = tracker
        base = prices or StaticPrices({o.id: o.price_usd_per_h for o in plan.offers})
        events = parse_events(self.spec.runtime.events)
        self.prices: PriceSource = ScriptedEvents(base, events) if events else base
        self.resume = resume
        self.run_id = run_id or f"run-{plan.fingerprint[:8]}-{candidate.id}-{time.strftime('%Y%m%dT%H%M%S')}"
        self.run_dir = self.workdir / ".paretrain" / "runs" / self.run_id
        self.ledger_dir = self.workdir / ".paretrain" / "ledger"
        self.ledger_path = self.ledger_dir / f"{self.run_id}.jsonl"
        self.plan_path = plan_path
        self.log = log or (lambda msg: None)
        self.events: list[dict[str, Any]] = []
        self.local = {d.id for d in local_devices()}
        self.offers = {o.id: o for o in plan.offers}
        cpus = sorted((d for d in local_devices() if d.kind == "cpu"), key=lambda d: d.threads)
        self.emulate_on = self.spec.runtime.emulate_on or (cpus[-1].id if cpus else "local/cpu-1")
        if self.emulate_on not in self.local:
            raise InputError(f"runtime.emulate_on: {self.emulate_on} is not a device here (here: "
                             f"{', '.join(sorted(self.local))}). To fix: name a local device")
        for st in candidate.stages:
            offer = plan.offer(st.hardware)
            if offer.local and st.hardware not in self.local:
                raise InputError(f"plan stage {st.index} uses {st.hardware}, which is not present on this "
                                 f"machine (here: {', '.join(sorted(self.local))}). To fix: plan on this "
                                 "machine, or run the plan where that hardware is")

    # -- small helpers -------------------------------------------------------------------
    def emulated(self, hardware: str) -> bool:
        return hardware not in self.local

    def event(self, name: str, **data: Any) -> None:
        ev = {"t": round(time.time(), 3), "t_run": round(self.meter.t, 3), "event": name, **data}
        self.events.append(ev)
        with open(self.run_dir / "events.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(ev) + "\n")
        if self.handle is not None and self.tracker is not None:
            self.tracker.set_tags(self.handle, {f"paretrain.event.{len(self.events)}": json.dumps(ev)})

    def _status(self, status: str, **data: Any) -> None:
        atomic_write_text(self.run_dir / "status.json", json.dumps({
            "run_id": self.run_id, "fingerprint": self.plan.fingerprint, "candidate": self.cand.id,
            "status": status, **data}, indent=1) + "\n")

    @property
    def stage(self) -> StagePlan:
        return self.stages[min(self.stage_i, len(self.stages) - 1)]

    def enter_stage(self) -> None:
        """The meter charges for every instance the current stage rents."""
        self.meter.scale = max(1, int(getattr(self.stage, "instances", 1)))
        self.fast_until = 0.0

    @property
    def stage_name(self) -> str:
        return f"stage{self.stage_i}"

    def _charge(self, kind: str, what: str, seconds: float | None = None, **extra: Any) -> float:
        emu = self.emulated(self.hw)
        if emu and seconds is None:
            seconds = 0.0  # real time on an emulated stage is not the offer's time
        return self.meter.charge(kind, self.hw, stage=self.stage_name, what=what, emulated=emu,
                                 seconds=seconds, **extra)

    def run(self) -> RunResult:
        """Set up, train until a stop condition, and finish (see the class docstring)."""
        try:
            early = self.setup()
            return self._finish(early or self._loop(), self.emulated_any)
        finally:
            self.close_trainer()

    def setup(self) -> str | None:
        """Build the trainer, the meter and tracking; restore on resume. Returns a stop status
        when not even the first step fits the budget."""
        spec, cand = self.spec, self.cand
        cfg = self.plan.config(cand.config_id)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.handle = None
        if self.tracker is not None:
            self.tracker.wait_ready()
        warm_up_torch()
        ledger = Ledger(self.ledger_path, self.run_id)
        self.budget = self._cap(ledger.spent)
        self.stage_i, self.stage_done = 0, 0
        self.stages: list[StagePlan] = list(cand.stages)  # replans replace the tail
        self.hw = cand.stages[0].hardware
        self.slowest, self.eval_real, self.ckpt_real = 0.0, 0.0, 0.02
        self.dirty = True
        self.beyond = False  # the plan's samples are used up before the target
        self.fast_until, self.fast_spend, self.fast_slow, self.window_slowest = 0.0, 0.0, 1.0, 0.0
        self.fast_price_s, self._charger_key, self._charger = 0.0, None, None
        self.compute_s, self.compute_steps = 0.0, 0
        self.progress = 0.0  # ideal samples done (E_min units): samples / (1 + B / B_noise)
        self.busy_s = self.busy_usd = 0.0  # run time and money of training steps and evaluations
        self.adaptation = Adaptation(self)
        self.kept_bytes: list[int] = []
        emulated_any = self.emulated_any = any(self.emulated(s.hardware) for s in cand.stages)
        start_t = last_run_time(self.ledger_path) if self.resume else 0.0
        self.workload = load_workload(spec.workload, self.workdir / ".paretrain" / "cache")
        self.trainer = self._make_trainer(cand.stages[0])
        # the meter starts once data and model are ready (like the library loading before it,
        # building them is the same for every candidate and is not charged)
        self.meter = Meter(ledger, self.prices, start_t=start_t)
        self.meter.scale = max(1, int(cand.stages[0].instances))
        if self._processes(cand.stages[0]) > 1:
            self.event("workers", stage=0, workers=self._processes(cand.stages[0]))
        self.storage_t = self.meter.t
        self.ckpt_t = self.meter.t
        self.next_eval = 0
        self.accuracy, self.loss = 0.0, math.nan
        if self.tracker is not None:
            self._start_tracking(cfg.id, emulated_any)
        self._status("running", emulated=emulated_any)
        resumed = load_latest(self.run_dir) if self.resume else None
        if resumed is not None:
            from runtime.train.checkpoint import checkpoint_paths

            self.kept_bytes = [p.stat().st_size for p in checkpoint_paths(self.run_dir)]
            self.hw = str(resumed[0]["run"].get("hardware", self.hw))
            restart = self.plan.offer(self.hw).switch_s if self.emulated(self.hw) else 0.05
            if self.meter.spent + self.meter.cost_ahead(self.hw, self.meter.t, restart + self._ckpt_s()) > self.budget:
                self.dirty = False
                return "budget"
            self._restore(resumed, reason="resume")
            self.dirty = False
        elif self._over_budget():
            self.dirty = False  # not even a first step and its checkpoint fit: spend nothing
            return "budget"
        else:
            self.checkpoint("start")
        eval_every = spec.runtime.eval_every_samples
        self.next_eval = (self.trainer.samples_seen // eval_every + 1) * eval_every
        self.enter_stage()
        return None

    def _device(self, hardware: str) -> str:
        return claim(self.emulate_on if self.emulated(hardware) else hardware)

    def _processes(self, st: StagePlan) -> int:
        """Worker processes a stage runs on here: its workers on a local offer (data parallel,
        ``runtime.train.parallel``); one on an emulated offer, whose clock charges the workers."""
        return 1 if self.emulated(st.hardware) else max(1, st.workers)

    def _make_trainer(self, st: StagePlan) -> Trainer:
        cfg = self.plan.config(self.cand.config_id)
        device = self._device(st.hardware)
        n = self._processes(st)
        if n > 1:
            from runtime.train.parallel import ParallelTrainer

            return ParallelTrainer(self.workload, cfg, workers=n, threads=torch.get_num_threads(),
                                   batch_size=st.batch_size * st.workers, precision=st.precision,
                                   seed=self.spec.workload.seed)
        return Trainer(self.workload, cfg, batch_size=st.batch_size * st.workers, precision=st.precision,
                       device=device, seed=self.spec.workload.seed)

    def _regroup(self, st: StagePlan) -> None:
        """Move the training state onto as many processes as ``st`` runs on, if that changed."""
        if self._processes(st) == getattr(self.trainer, "world", 1):
            return
        state = self.trainer.state_dict()
        self.close_trainer()
        self.trainer = self._make_trainer(st)
        self.trainer.load_state_dict(state)
        self.event("workers", stage=self.stage_i, workers=self._processes(st))

    def close_trainer(self) -> None:
        close = getattr(getattr(self, "trainer", None), "close", None)
        if close is not None:
            close()

    def _loop(self) -> str:
        spec, cand = self.spec, self.cand
        level = cand.accuracy
        eval_every = spec.runtime.eval_every_samples
        while True:
            if self.stage_i < len(self.stages) and self.stage_done >= self.stage.samples:
                if self._transition_over_budget():
                    return "budget"
                self._next_stage()
                self.fast_until = 0.0
                continue
            if self.stage_i >= len(self.stages) and not self.beyond:
                self.beyond = True
                self.stage_i = len(self.stages) - 1
                self.stage_done = -(1 << 62)  # stay on the last stage's settings from here on
                self.event("beyond_plan", samples=self.trainer.samples_seen, accuracy=self.accuracy)
                self.log(f"the plan's samples are used up at val_accuracy {self.accuracy:.4f} < {level:g}; "
                         "continuing with the last stage's settings")
            if self.trainer.samples_seen >= spec.target.max_samples:
                return "max_samples"
            emu = self.emulated(self.hw)
            now = self.meter.now(emu)
            if not (now < self.fast_until and self.meter.ledger.spent < self.fast_spend):
                if not self.prices.available(self.hw, now):
                    self.stop_reason = "deadline"
                    if not self._preempted():
                        return self.stop_reason
                    self.fast_until = 0.0
                    continue
                if self._over_budget():
                    return "budget"
                self._open_window(now, emu)
                self._step()
            else:
                self._fast_steps(emu)
            if self.trainer.samples_seen >= self.next_eval:
                self.next_eval += eval_every
                if self._evaluate() >= level:
                    return "target"
                if self.adaptation.enabled:
                    decision = self.adaptation.observe(self.val_loss, self.accuracy)
                    stop = self.adaptation.act(decision, self.val_loss)
                    if stop:
                        return stop
            if self.meter.now(emu) - self.ckpt_t >= spec.runtime.checkpoint_every_s:
                self.checkpoint("interval")
                self.fast_until = 0.0  # the storage rate changed

    def _fast_steps(self, emu: bool) -> None:
        """Steps inside a safe window, with nothing but training and the per-step charge: it
        returns as soon as anything else is due (window end, spend threshold, stage end,
        evaluation, checkpoint, max_samples, a step slower than the window assumed). The same
        work as ``_step``, with the bookkeeping in locals (benchmarks/runtime_overhead.py)."""
        tr, meter, ledger = self.trainer, self.meter, self.meter.ledger
        step, perf, charge = tr.step, time.perf_counter, self._charger
        assert charge is not None
        price, until, spend = self.fast_price_s, self.fast_until, self.fast_spend
        batch = tr.batch_size
        stage_left = self.stage.samples - self.stage_done
        eval_at, max_samples = self.next_eval, self.spec.target.max_samples
        ckpt_at = self.ckpt_t + self.spec.runtime.checkpoint_every_s
        slow = self.fast_slow
        virtual_s = self.stage.step_s * slow
        slowest, limit = self.slowest, self.window_slowest
        done = 0
        compute = 0.0
        spent = start_spent = ledger.spent  # then a running float: the window's margin dwarfs its rounding
        t_start = meter.t
        while True:
            t0 = perf()
            loss = step()
            t1 = perf()
            real = t1 - t0
            if emu:
                spent += charge(price, virtual_s, tr.steps)
            else:
                if slow > 1.0:
                    time.sleep(real * (slow - 1.0))
                compute += real
                slowest = max(slowest * 0.995, real)
                spent += charge(price, math.nan, tr.steps)
            done += batch
            now = meter.t if emu else meter.t + (perf() - meter._real)
            if (done >= stage_left or tr.samples_seen >= eval_at or tr.samples_seen >= max_samples
                    or now >= ckpt_at or now >= until or slowest > limit or spent >= spend):
                break
        self.loss = loss
        self.busy_s += meter.t - t_start
        self.busy_usd += spent - start_spent
        self.stage_done += done
        self.progress += done / (1.0 + batch / self.stage.b_noise)
        self.dirty = True
        if not emu:
            self.compute_s += compute
            self.compute_steps += done // batch
            self.slowest = slowest
            if slowest > limit:
                self.fast_until = 0.0

    def _step(self) -> None:
        t_before, usd_before = self.meter.t, self.meter.ledger.spent
        self._step_inner()
        self.busy_s += self.meter.t - t_before
        self.busy_usd += self.meter.ledger.spent - usd_before

    def _step_inner(self) -> None:
        emu = self.emulated(self.hw)
        fast = self.fast_until > 0.0  # inside a safe window: price and speed are constant
        slow = self.fast_slow if fast else self.prices.slowdown(self.hw, self.meter.now(emu))
        t0 = time.perf_counter()
        self.loss = self.trainer.step()
        real = time.perf_counter() - t0
        if emu:
            seconds = self.stage.step_s * slow
        else:
            seconds = math.nan  # the real time since the last charge
            if slow > 1.0:  # a scripted slowdown on a local device: hold it that much longer
                time.sleep(real * (slow - 1.0))
            self.compute_s += real
            self.compute_steps += 1
            self.slowest = max(self.slowest * 0.995, real)
            if self.slowest > self.window_slowest:
                self.fast_until = 0.0  # slower than the window assumed: check fully again
        if fast and self._charger is not None:
            self._charger(self.fast_price_s, seconds, self.trainer.steps)
        else:
            self._charge("compute", "train", seconds=None if seconds != seconds else seconds,
                         step=self.trainer.steps)
        b = self.trainer.batch_size
        self.stage_done += b
        self.progress += b / (1.0 + b / self.stage.b_noise)
        self.dirty = True

    def _evaluate(self) -> float:
        emu = self.emulated(self.hw)
        t_before, usd_before = self.meter.t, self.meter.ledger.spent
        ev = self.trainer.evaluate()
        if emu:
            self._charge("compute", "eval", seconds=self.stage.eval_s * self.prices.slowdown(self.hw, self.meter.t))
        else:
            self.eval_real = max(self.eval_real * 0.9, ev.seconds)
            self._charge("compute", "eval")
        self.accuracy, self.val_loss = ev.accuracy, ev.loss
        self.busy_s += self.meter.t - t_before
        self.busy_usd += self.meter.ledger.spent - usd_before
        if self.handle is not None and self.tracker is not None:
            t = max(self.meter.t, 1e-9)
            self.tracker.log_metrics(self.handle, {
                "loss": self.loss, "val_loss": ev.loss, "val_accuracy": ev.accuracy,
                "spend_usd": self.meter.spent, "spend_rate_usd_per_h": self.meter.spent / t * 3600,
                "batch_size": self.trainer.batch_size, "lr": self.trainer.lr, "stage": self.stage_i,
                "samples": self.trainer.samples_seen, "run_time_s": self.meter.t,
                "price_usd_per_h": self.prices.price_usd_per_h(self.hw, self.meter.t)}, step=self.trainer.steps)
        return ev.accuracy

    def _next_stage(self) -> None:
        self.checkpoint(f"end of stage {self.stage_i}")
        self.stage_i, self.stage_done = self.stage_i + 1, 0
        if self.stage_i >= len(self.stages):
            return
        gb = self.apply_stage()
        self.event("stage", stage=self.stage_i, hardware=self.hw, batch_size=gb)

    def apply_stage(self) -> int:
        """Take up the current stage's settings: its offer (moving there if needed) and its
        global batch (learning rate rescaled, short warm-up). Returns the global batch."""
        self.enter_stage()
        st = self.stage
        if st.hardware != self.hw:
            self.move_to(st.hardware)
        self._regroup(st)
        gb = st.batch_size * st.workers
        if gb != self.trainer.batch_size:
            self.trainer.set_batch_size(gb, warmup_steps=5)
        return gb
