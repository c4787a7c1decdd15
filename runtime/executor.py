"""Runs a plan's candidate stage by stage: real training, metered money, a hard budget cap.

Before every step the executor reserves what the next step, a due evaluation, a final
checkpoint and the storage accrued until then would cost, priced exactly over the coming
interval; if the spend plus that reserve would pass the budget (the training envelope, or
what the project-wide ceiling leaves), it checkpoints and stops with exit 3. On emulated
hardware (virtual clock) durations are known in advance, so the guarantee is exact; on the
real clock the reserve takes three times the slowest recent step as its margin.

Checkpoints (every ``runtime.checkpoint_every_s`` of run time, at stage ends and at the end)
hold the trainer, the stage position, the run time and the ledger position. A preemption
(price trace or scripted event) loses the work since the last checkpoint (already charged;
recorded as lost), waits, storage charged, until the offer is back (the wait counts against
the deadline), and resumes from that checkpoint. ``--resume`` after a kill does the same.
"""

from __future__ import annotations

import io
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from planner.errors import BudgetExhausted, InputError
from planner.plan import Candidate, Plan, StagePlan, plan_to_json
from planner.spec import Spec, parse_spec
from runtime.adaptation import Adaptation
from runtime.checkpoint import load_latest, save_checkpoint
from runtime.devices import claim, local_devices
from runtime.files import atomic_write_bytes, atomic_write_text
from runtime.ledger import Ledger
from runtime.ledger_report import project_spend
from runtime.meter import Meter
from runtime.prices import PriceSource, ScriptedEvents, StaticPrices, next_available, parse_events
from runtime.tracking import Tracker, git_commit
from runtime.trainer import Trainer, warm_up_torch
from runtime.workloads import WORKLOADS, load_workload

__all__ = ["Executor", "RunResult", "find_resumable"]

_SECONDS_PER_MONTH = 730.0 * 3600.0


@dataclass
class RunResult:
    run_id: str
    candidate: str
    status: str  # "target" | "budget" | "max_samples" | "deadline"
    cost_usd: float
    wall_s: float
    accuracy: float
    samples: int
    predicted_cost_usd: float
    predicted_wall_s: float
    predicted_accuracy: float
    budget_usd: float
    ledger_path: str
    emulated: bool = False
    compute_s: float = 0.0  # real seconds inside training steps on local hardware
    compute_steps: int = 0
    tracking_run: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def reached(self) -> bool:
        return self.status == "target"


def find_resumable(workdir: Path, fingerprint: str, candidate: str) -> str | None:
    """The newest unfinished run of this plan and candidate, if any."""
    runs = workdir / ".paretrain" / "runs"
    best: tuple[float, str] | None = None
    for status in runs.glob("*/status.json") if runs.is_dir() else []:
        try:
            d = json.loads(status.read_text())
        except ValueError:
            continue
        if d.get("fingerprint") == fingerprint and d.get("candidate") == candidate and d.get("status") != "target":
            key = (status.stat().st_mtime, status.parent.name)
            best = max(best, key) if best else key
    return best[1] if best else None


class Executor:
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
        base = prices or StaticPrices({o["id"]: o["price_usd_per_h"] for o in plan.offers})
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
        self.offers = {o["id"]: o for o in plan.offers}
        cpus = sorted((d for d in local_devices() if d.kind == "cpu"), key=lambda d: d.threads)
        self.emulate_on = self.spec.runtime.emulate_on or (cpus[-1].id if cpus else "local/cpu-1")
        if self.emulate_on not in self.local:
            raise InputError(f"runtime.emulate_on: {self.emulate_on} is not a device here (here: "
                             f"{', '.join(sorted(self.local))}). To fix: name a local device")
        for st in candidate.stages:
            offer = plan.offer(st.hardware)
            if offer.get("local") and st.hardware not in self.local:
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

    @property
    def stage_name(self) -> str:
        return f"stage{self.stage_i}"

    def _charge(self, kind: str, what: str, seconds: float | None = None, **extra: Any) -> float:
        emu = self.emulated(self.hw)
        if emu and seconds is None:
            seconds = 0.0  # real time on an emulated stage is not the offer's time
        return self.meter.charge(kind, self.hw, stage=self.stage_name, what=what, emulated=emu,
                                 seconds=seconds, **extra)

    def _storage_rate(self) -> float:
        """Dollars per second of keeping the retained checkpoints on the current offer."""
        offer = self.offers[self.hw]
        return float(offer.get("storage_usd_per_gb_month", 0.0)) * sum(self.kept_bytes) / 1e9 / _SECONDS_PER_MONTH

    def charge_storage(self, what: str) -> None:
        dt = self.meter.t - self.storage_t
        self.storage_t = self.meter.t
        usd = self._storage_rate() * dt
        if usd > 0:
            self.meter.charge_amount("storage", usd, self.hw, stage=self.stage_name, what=what,
                                     emulated=self.emulated(self.hw), seconds_covered=dt,
                                     bytes=sum(self.kept_bytes))

    # -- durations -------------------------------------------------------------------------
    def _step_s(self) -> float:
        """Seconds the next step is expected to take (exact on the virtual clock)."""
        st, t = self.stage, self.meter.now(self.emulated(self.hw))
        slow = self.prices.slowdown(self.hw, t)
        if self.emulated(self.hw):
            return st.step_s * slow
        return 3.0 * max(self.slowest, st.step_s) * slow + 0.002

    def _eval_s(self) -> float:
        if self.emulated(self.hw):
            return self.stage.eval_s * self.prices.slowdown(self.hw, self.meter.t)
        return 2.0 * max(self.eval_real, self.stage.eval_s) + 0.002

    def _ckpt_s(self) -> float:
        if self.emulated(self.hw):
            return self._virtual_ckpt_s()
        return 3.0 * self.ckpt_real + 0.01

    def _virtual_ckpt_s(self) -> float:
        """Writing a checkpoint on an emulated offer: 50 ms plus its size at 200 MB/s, the size
        bounded in advance (weights, two optimizer slots and 64 KiB) so the reserve is exact."""
        return 0.05 + (12.0 * self.trainer.parameter_count() + 65536) / 2e8

    # -- the run -----------------------------------------------------------------------------
    def run(self) -> RunResult:
        """Set up, train until a stop condition, and finish (see the class docstring)."""
        early = self.setup()
        return self._finish(early or self._loop(), self.emulated_any)

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
        start_t = _last_run_time(self.ledger_path) if self.resume else 0.0
        workload = load_workload(spec.workload, self.workdir / ".paretrain" / "cache")
        first = cand.stages[0]
        self.trainer = Trainer(workload, cfg, batch_size=first.batch_size * first.workers,
                               precision=first.precision, device=self._device(first.hardware),
                               seed=spec.workload.seed)
        # the meter starts once data and model are ready (like the library loading before it,
        # building them is the same for every candidate and is not charged)
        self.meter = Meter(ledger, self.prices, start_t=start_t)
        self.storage_t = self.meter.t
        self.ckpt_t = self.meter.t
        self.next_eval = 0
        self.accuracy, self.loss = 0.0, math.nan
        if self.tracker is not None:
            self._start_tracking(cfg.id, emulated_any)
        self._status("running", emulated=emulated_any)
        resumed = load_latest(self.run_dir) if self.resume else None
        if resumed is not None:
            from runtime.checkpoint import checkpoint_paths

            self.kept_bytes = [p.stat().st_size for p in checkpoint_paths(self.run_dir)]
            self.hw = str(resumed[0]["run"].get("hardware", self.hw))
            restart = float(self.plan.offer(self.hw).get("switch_s", 0.0)) if self.emulated(self.hw) else 0.05
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
        return None

    def _cap(self, own_spent: float) -> float:
        """The run's budget: the training envelope, or what the project ceiling leaves."""
        cap = self.spec.budget.train_usd
        ceiling = self.spec.budget.project_ceiling_usd
        if ceiling is not None:
            others = project_spend(self.ledger_dir, self.spec.budget.period) - own_spent
            cap = min(cap, own_spent + max(0.0, ceiling - others))
        return cap

    def _device(self, hardware: str) -> str:
        return claim(self.emulate_on if self.emulated(hardware) else hardware)

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

    def _over_budget(self) -> bool:
        emu = self.emulated(self.hw)
        now = self.meter.now(emu)
        step_s = self._step_s()
        due_eval = self.trainer.samples_seen + self.trainer.batch_size >= self.next_eval
        ahead = step_s + (self._eval_s() if due_eval else 0.0)
        ckpt = self._ckpt_s()
        # the final checkpoint may come now (if we stop) or after the step: reserve the dearer
        reserve = self.meter.cost_ahead(self.hw, now, ahead) + max(
            self.meter.cost_ahead(self.hw, now, ckpt), self.meter.cost_ahead(self.hw, now + ahead, ckpt))
        storage = self._storage_rate() * (now + ahead + ckpt - self.storage_t)
        return self.meter.spent + self.meter.pending_usd(self.hw, emu) + reserve + storage > self.budget

    def _open_window(self, now: float, emu: bool) -> None:
        """Skip the full checks for the next steps while it is safe: up to one second of run time,
        ending before the next price, availability or speed change minus a full reserve, and
        while the spend stays under the budget minus a reserve at the window's (constant) price.
        A step slower than the slowest seen when the window opened closes it."""
        window = 1.0
        reserve_s = self._step_s() + self._eval_s() + self._ckpt_s() + 0.01
        changes = self.prices.changes(self.hw, now, now + window + reserve_s)
        end = min(now + window, (changes[0] if changes else math.inf) - reserve_s)
        if end <= now:
            self.fast_until = 0.0
            return
        price_s = self.prices.price_usd_per_h(self.hw, now) / 3600.0
        storage = self._storage_rate() * (end + reserve_s - self.storage_t)
        self.fast_spend = self.budget - price_s * reserve_s - storage
        self.fast_until = end
        self.fast_slow = self.prices.slowdown(self.hw, now)
        self.fast_price_s = price_s
        self.window_slowest = self.slowest
        key = (self.hw, self.stage_name, emu)
        if self._charger_key != key:
            self._charger_key = key
            self._charger = self.meter.step_charger(self.hw, self.stage_name, emu)

    def planned_price(self, hardware: str) -> float:
        return float(self.offers[hardware]["price_usd_per_h"])

    def reserve_usd(self) -> float:
        """What the next step, an evaluation and a final checkpoint would cost now."""
        now = self.meter.now(self.emulated(self.hw))
        return self.meter.cost_ahead(self.hw, now, self._step_s() + self._eval_s() + self._ckpt_s())

    def move_to(self, hardware: str) -> None:
        """Move the run onto ``hardware``: the checkpoint's egress off the old offer, the move
        (provisioning and restore, on emulated offers their switch time) on the new one."""
        old = self.hw
        egress = float(self.offers[old].get("egress_usd_per_gb", 0.0)) * \
            (self.kept_bytes[-1] if self.kept_bytes else 0) / 1e9
        if egress > 0:
            self.meter.charge_amount("egress", egress, old, stage=self.stage_name,
                                     what="checkpoint to the next offer", emulated=self.emulated(old))
        self.hw = hardware
        self._device(hardware)
        self._charge("compute", "move", seconds=float(self.offers[hardware].get("switch_s", 0.0))
                     if self.emulated(hardware) else None)
        self.event("switch", stage=self.stage_i, hardware=hardware)
        self.fast_until = 0.0

    def _transition_over_budget(self) -> bool:
        """Whether ending this stage (checkpoint, move to the next stage's offer, a final
        checkpoint there) could pass the budget."""
        nxt = self.stages[self.stage_i + 1].hardware if self.stage_i + 1 < len(self.stages) else self.hw
        return self.change_over_budget(nxt)

    def change_over_budget(self, new_hw: str, extra_s: float = 0.0) -> bool:
        """Whether a checkpoint now, moving to ``new_hw`` (its egress, switch time) and a final
        checkpoint there, plus ``extra_s`` seconds of storage-only waiting, could pass the budget."""
        emu = self.emulated(self.hw)
        now = self.meter.now(emu)
        ckpt = self._ckpt_s()
        need = self.meter.pending_usd(self.hw, emu) + self.meter.cost_ahead(self.hw, now, ckpt)
        need += self._storage_rate() * (now + 2 * ckpt + extra_s - self.storage_t)
        after = now + ckpt + extra_s
        if new_hw != self.hw:
            offer = self.offers[new_hw]
            need += float(self.offers[self.hw].get("egress_usd_per_gb", 0.0)) * \
                (self.kept_bytes[-1] if self.kept_bytes else 0) / 1e9
            move = float(offer.get("switch_s", 0.0)) if self.emulated(new_hw) else 0.05
            need += self.meter.cost_ahead(new_hw, after, move + ckpt)
        else:
            need += self.meter.cost_ahead(self.hw, after, ckpt)
        return self.meter.spent + need > self.budget

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

    def checkpoint(self, reason: str) -> None:
        """Save the state. The spend recorded with it is the ledger up to this moment, so on a
        resume whatever the ledger holds beyond it (this write included) is work lost."""
        emu = self.emulated(self.hw)
        t0 = time.perf_counter()
        if not emu:
            self._charge("compute", "train")
        state = {"trainer": self.trainer.state_dict(), "run": {
            "stage": self.stage_i, "stage_samples": self.stage_done, "spent_usd": self.meter.spent,
            "lines": self.meter.ledger.lines, "t_run": self.meter.t, "hardware": self.hw,
            "accuracy": getattr(self, "accuracy", 0.0), "progress": self.progress,
            "stages": [asdict(st) for st in self.stages]}}
        self.charge_storage("checkpoints")  # storage of the checkpoints kept until now
        _, size = save_checkpoint(self.run_dir, state, self.spec.runtime.keep_checkpoints)
        self.kept_bytes = (self.kept_bytes + [size])[-self.spec.runtime.keep_checkpoints:]
        if emu:
            self._charge("checkpoint", reason, seconds=self._virtual_ckpt_s(), bytes=size)
            self.meter.skip_real()
        else:
            self._charge("checkpoint", reason, bytes=size)
            self.ckpt_real = max(self.ckpt_real * 0.5, time.perf_counter() - t0)
        self.ckpt_t = self.meter.t
        self.dirty = False

    def _restore(self, loaded: tuple[dict[str, Any], Path], reason: str) -> None:
        state, path = loaded
        run = state["run"]
        self.trainer.load_state_dict(state["trainer"])
        self.stage_i, self.stage_done = int(run["stage"]), int(run["stage_samples"])
        self.accuracy = float(run.get("accuracy", 0.0))
        self.progress = float(run.get("progress", 0.0))
        if run.get("stages"):
            self.stages = [StagePlan(**st) for st in run["stages"]]
        old_hw, self.hw = self.hw, str(run.get("hardware", self.hw))
        self._device(self.hw)
        lost = self.meter.spent - float(run["spent_usd"])
        lost_s = self.meter.t - float(run.get("t_run", self.meter.t))
        self.meter.event(reason, self.hw, self.stage_name, checkpoint=path.name, lost_usd=lost,
                         lost_s=round(lost_s, 6), from_line=int(run.get("lines", 0)))
        self.event(reason, checkpoint=path.name, lost_usd=lost, lost_s=lost_s, hardware=self.hw)
        self.log(f"{reason}: back to {path.name} (stage {self.stage_i}, {self.trainer.samples_seen} samples); "
                 f"${lost:.3g} of work since it is lost")
        del old_hw
        self.ckpt_t = self.meter.t
        self.next_eval = (self.trainer.samples_seen // self.spec.runtime.eval_every_samples + 1) * \
            self.spec.runtime.eval_every_samples
        offer = self.plan.offer(self.hw)
        restart = float(offer.get("switch_s", 0.0)) if self.emulated(self.hw) else None
        self._charge("compute", "restore", seconds=restart)

    def _preempted(self) -> bool:
        """The offer is gone: lose the work since the checkpoint, wait (storage charged) until it
        is back, then restore. False when it is not back before the deadline."""
        emu = self.emulated(self.hw)
        now = self.meter.now(emu)
        if not emu:
            self._charge("compute", "train")
        horizon = max(0.0, self.spec.deadline_s - now)
        back = next_available(self.prices, self.hw, now, horizon)
        self.event("preemption", hardware=self.hw, back_at=back)
        self.meter.event("preemption", self.hw, self.stage_name, back_at=back)
        self.dirty = False  # the machine and the work since the checkpoint are gone
        if back is None:
            self.charge_storage("checkpoints while preempted")
            return False
        wait = back - now
        storage = self._storage_rate() * (now + wait - self.storage_t)
        restart = float(self.plan.offer(self.hw).get("switch_s", 0.0)) if emu else 0.05
        if self.meter.spent + storage + self.meter.cost_ahead(self.hw, back, restart + 2 * self._ckpt_s()) > self.budget:
            self.charge_storage("checkpoints while preempted")
            self.stop_reason = "budget"
            return False
        self.meter.wait(self.hw, wait, stage=self.stage_name, emulated=emu)
        self.charge_storage("checkpoints while preempted")
        loaded = load_latest(self.run_dir)
        assert loaded is not None  # a checkpoint is taken when the run starts
        self._restore(loaded, reason="preempted")
        self.dirty = False
        return True

    def _next_stage(self) -> None:
        old = self.stage
        self.checkpoint(f"end of stage {self.stage_i}")
        self.stage_i, self.stage_done = self.stage_i + 1, 0
        if self.stage_i >= len(self.stages):
            return
        new = self.stage
        if new.hardware != old.hardware:
            self.move_to(new.hardware)
        gb = new.batch_size * new.workers
        if gb != self.trainer.batch_size:
            self.trainer.set_batch_size(gb, warmup_steps=5)
        self.event("stage", stage=self.stage_i, hardware=self.hw, batch_size=gb)

    def _start_tracking(self, config_id: str, emulated: bool) -> None:
        assert self.tracker is not None
        cand = self.cand
        self.handle = self.tracker.start_run(f"run-{cand.id}-{config_id}", tags={
            "paretrain.kind": "run", "paretrain.plan_fingerprint": self.plan.fingerprint,
            "paretrain.candidate": cand.id, "paretrain.config": config_id,
            "paretrain.run_id": self.run_id, "mlflow.source.git.commit": git_commit(),
            "paretrain.emulated": str(emulated).lower()})
        data = self.trainer.data
        w = self.spec.workload
        self.tracker.log_input(self.handle, f"{w.name}-{w.samples}", data.digest,
                               f"mnist1d.data.make_dataset(num_samples={w.samples}, seed={w.seed})"
                               if w.name == "mnist1d" else w.name,
                               {"train": data.train_size, "validation": int(data.y_val.shape[0]),
                                "features": list(data.x_train.shape[1:])})
        self.tracker.log_params(self.handle, {
            "candidate": cand.id, "config": config_id, "level": cand.accuracy, "budget_usd": self.budget,
            **{f"stage{s.index}": f"{s.hardware} {s.precision} b={s.batch_size} n={s.workers} "
                                  f"samples={s.samples}" for s in cand.stages}})

    def _finish(self, status: str, emulated: bool) -> RunResult:
        cand = self.cand
        try:
            if self.dirty:  # nothing to save when the last checkpoint holds this very state
                self.checkpoint("final" if status == "target" else status)
            self._charge("compute", "teardown")
        finally:
            self.meter.ledger.close()
        spent = self.meter.ledger.spent
        result = RunResult(
            run_id=self.run_id, candidate=cand.id, status=status, cost_usd=spent, wall_s=self.meter.t,
            accuracy=self.accuracy, samples=self.trainer.samples_seen, predicted_cost_usd=cand.cost_usd,
            predicted_wall_s=cand.wall_s, predicted_accuracy=cand.accuracy, budget_usd=self.budget,
            ledger_path=str(self.ledger_path), emulated=emulated, events=self.events,
            compute_s=self.compute_s, compute_steps=self.compute_steps)
        self._status(status, cost_usd=spent, wall_s=self.meter.t, val_accuracy=self.accuracy,
                     samples=self.trainer.samples_seen, emulated=emulated)
        self.event("end", status=status, cost_usd=spent, val_accuracy=self.accuracy)
        if self.handle is not None and self.tracker is not None:
            self.tracker.log_metrics(self.handle, {
                "cost_usd": spent, "wall_s": self.meter.t, "val_accuracy": self.accuracy,
                "predicted_cost_usd": cand.cost_usd, "predicted_wall_s": cand.wall_s,
                "predicted_accuracy": cand.accuracy, "samples": self.trainer.samples_seen},
                step=self.trainer.steps)
            if self.plan_path is None:
                atomic_write_text(self.run_dir / "plan.json", plan_to_json(self.plan))
            self.tracker.log_artifact(self.handle, self.plan_path or self.run_dir / "plan.json")
            self.tracker.log_artifact(self.handle, self.ledger_path)
            self.tracker.log_artifact(self.handle, self.run_dir / "events.jsonl")
            model_path = self.run_dir / "model.pt"
            buf = io.BytesIO()
            torch.save(self.trainer.model.state_dict(), buf)
            atomic_write_bytes(model_path, buf.getvalue())
            self.tracker.log_artifact(self.handle, model_path)
            self.tracker.set_tags(self.handle, {"paretrain.status": status})
            self.tracker.end_run(self.handle, "FINISHED" if status == "target" else "KILLED")
            result.tracking_run = self.handle
        if status != "target":
            why = {"budget": "its budget", "deadline": "its deadline (the offer was not back in time)",
                   "max_samples": f"target.max_samples ({self.spec.target.max_samples})"}[status]
            err = BudgetExhausted(
                f"run {self.run_id} stopped at {why} before its target: spent ${spent:.6g} of "
                f"${self.budget:.6g}; val_accuracy {self.accuracy:.4f} reached of {cand.accuracy:g} after "
                f"{self.trainer.samples_seen} samples. To fix: raise budget.envelopes.train (or "
                f"target.max_samples, deadline_s) and continue with 'paretrain run PLAN --candidate "
                f"{cand.id} --resume'")
            err.result = result  # type: ignore[attr-defined]
            raise err
        return result


def _last_run_time(ledger_path: Path) -> float:
    """The run time reached by the ledger's last charge (where a resumed run's clock starts)."""
    from runtime.ledger import read_charges

    t = 0.0
    if ledger_path.exists():
        for c in read_charges(ledger_path):
            t = max(t, float(c.get("t_run", 0.0)) + float(c.get("seconds", 0.0)))
    return t


def fmt_money(x: float) -> str:
    return f"${x:.6f}" if math.isfinite(x) else "-"
