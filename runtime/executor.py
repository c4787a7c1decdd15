"""Runs a plan's candidate stage by stage: real training, metered money, a hard budget cap.

The meter charges the ledger for every second the hardware is held, continuously: each
charge covers the time since the previous one, so nothing escapes (setup, steps, evaluation,
checkpoints). Before each step the executor reserves the next step (three times the slowest
recent step, as a margin against a slow step on the real clock), the evaluation if one is
due, and a final checkpoint; if the spend plus that reserve would pass the budget, it
checkpoints and stops (exit 3). The run ends when validation accuracy reaches the
candidate's level, or when ``target.max_samples`` is used up.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from planner.errors import BudgetExhausted, InputError
from planner.plan import Candidate, Plan, plan_to_json
from planner.spec import Spec, parse_spec
from runtime.checkpoint import load_latest, save_checkpoint
from runtime.devices import claim, local_devices
from runtime.files import atomic_write_text
from runtime.ledger import Ledger
from runtime.prices import PriceSource, StaticPrices
from runtime.tracking import Tracker, git_commit
from runtime.trainer import Trainer, warm_up_torch
from runtime.workloads import WORKLOADS, load_workload

__all__ = ["Executor", "RunResult", "find_resumable"]


@dataclass
class RunResult:
    run_id: str
    candidate: str
    status: str  # "target" | "budget" | "max_samples"
    cost_usd: float
    wall_s: float
    accuracy: float
    samples: int
    predicted_cost_usd: float
    predicted_wall_s: float
    predicted_accuracy: float
    budget_usd: float
    ledger_path: str
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
        if d.get("fingerprint") == fingerprint and d.get("candidate") == candidate and \
                d.get("status") != "target":
            key = (status.stat().st_mtime, status.parent.name)
            best = max(best, key) if best else key
    return best[1] if best else None


class Executor:
    """Executes one candidate of a plan; ``run()`` returns a ``RunResult`` or raises
    ``BudgetExhausted`` (carrying the result) when the budget or the sample limit stops it."""

    def __init__(self, plan: Plan, candidate: Candidate, *, workdir: Path, tracker: Tracker | None = None,
                 prices: PriceSource | None = None, run_id: str | None = None, resume: bool = False,
                 plan_path: Path | None = None, log: Any = None) -> None:
        self.plan, self.cand = plan, candidate
        self.workdir = Path(workdir)
        self.spec: Spec = parse_spec(dict(plan.spec), "plan:spec", WORKLOADS)
        self.tracker = tracker
        self.prices = prices or StaticPrices({o["id"]: o["price_usd_per_h"] for o in plan.offers})
        self.resume = resume
        self.run_id = run_id or f"run-{plan.fingerprint[:8]}-{candidate.id}-{time.strftime('%Y%m%dT%H%M%S')}"
        self.run_dir = self.workdir / ".paretrain" / "runs" / self.run_id
        self.ledger_path = self.workdir / ".paretrain" / "ledger" / f"{self.run_id}.jsonl"
        self.plan_path = plan_path
        self.log = log or (lambda msg: None)
        self.budget = self.spec.budget.train_usd
        self.events: list[dict[str, Any]] = []
        here = {d.id for d in local_devices()}
        for st in candidate.stages:
            if st.hardware not in here:
                raise InputError(f"plan stage {st.index} uses {st.hardware}, which is not present on this "
                                 f"machine (here: {', '.join(sorted(here))}). To fix: plan on this machine, "
                                 "or run the plan where that hardware is")

    # -- bookkeeping -----------------------------------------------------------------------
    def _event(self, name: str, **data: Any) -> None:
        ev = {"t": round(time.time(), 3), "event": name, **data}
        self.events.append(ev)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / "events.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(ev) + "\n")

    def _status(self, status: str, **data: Any) -> None:
        atomic_write_text(self.run_dir / "status.json", json.dumps({
            "run_id": self.run_id, "fingerprint": self.plan.fingerprint, "candidate": self.cand.id,
            "status": status, **data}, indent=1) + "\n")

    # -- the run ---------------------------------------------------------------------------
    def run(self) -> RunResult:
        spec, cand = self.spec, self.cand
        cfg = self.plan.config(cand.config_id)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.tracker is not None:
            self.tracker.wait_ready()
        warm_up_torch()
        ledger = Ledger(self.ledger_path, self.run_id)
        t_run0 = time.perf_counter()
        last = t_run0
        stage_i, stage_done = 0, 0
        first = cand.stages[0]
        hw = first.hardware
        workload = load_workload(spec.workload, self.workdir / ".paretrain" / "cache")
        trainer = Trainer(workload, cfg, batch_size=first.batch_size, precision=first.precision,
                          device=claim(hw), seed=spec.workload.seed)
        handle = None
        if self.tracker is not None:
            handle = self.tracker.start_run(f"{cand.id}-{cfg.id}", tags={
                "paretrain.kind": "run", "paretrain.plan_fingerprint": self.plan.fingerprint,
                "paretrain.candidate": cand.id, "paretrain.config": cfg.id,
                "paretrain.run_id": self.run_id, "mlflow.source.git.commit": git_commit(),
                "paretrain.emulated": "false"})
            self.tracker.log_params(handle, {
                "candidate": cand.id, "config": cfg.id, "level": cand.accuracy, "budget_usd": self.budget,
                **{f"stage{s.index}": f"{s.hardware} {s.precision} b={s.batch_size} n={s.workers} "
                                      f"samples={s.samples}" for s in cand.stages}})
        resumed = load_latest(self.run_dir) if self.resume else None
        if resumed is not None:
            state, path = resumed
            trainer.load_state_dict(state["trainer"])
            run = state["run"]
            stage_i, stage_done = int(run["stage"]), int(run["stage_samples"])
            lost = ledger.spent - float(run["spent_usd"])
            hw = str(run.get("hardware", hw))
            claim(hw)
            self._event("resume", checkpoint=path.name, lost_usd=lost)
            ledger.charge("event", 0.0, stage=f"stage{stage_i}", hardware=hw, event="resume",
                          lost_usd=lost, checkpoint=path.name)
            self.log(f"resumed {self.run_id} from {path.name}: stage {stage_i}, "
                     f"{trainer.samples_seen} samples, ${ledger.spent:.6g} spent (${lost:.3g} of work lost)")
        self._status("running")
        level = cand.accuracy
        eval_every = spec.runtime.eval_every_samples
        next_eval = (trainer.samples_seen // eval_every + 1) * eval_every
        slowest, eval_s, ckpt_s = 0.0, 0.0, 0.05
        last_ckpt = time.perf_counter()
        accuracy, status = 0.0, ""
        last_eval_acc = 0.0
        beyond = False

        def charge(kind: str, what: str, **extra: Any) -> float:
            nonlocal last
            now = time.perf_counter()
            dt = now - last
            last = now
            price_s = self.prices.price_usd_per_h(hw, now - t_run0) / 3600.0
            ledger.charge(kind, dt * price_s, seconds=dt, stage=f"stage{stage_i}", hardware=hw,
                          what=what, **extra)
            return dt

        def checkpoint(reason: str) -> None:
            """Save the state; the spend recorded with it is the ledger up to this moment, so on
            resume whatever the ledger holds beyond it (including this write) is work lost."""
            nonlocal ckpt_s, last_ckpt
            t0 = time.perf_counter()
            charge("compute", "train")
            state = {"trainer": trainer.state_dict(), "run": {
                "stage": stage_i, "stage_samples": stage_done, "spent_usd": ledger.spent,
                "lines": ledger.lines, "hardware": hw}}
            _, size = save_checkpoint(self.run_dir, state, spec.runtime.keep_checkpoints)
            charge("checkpoint", reason, bytes=size)
            ckpt_s = max(ckpt_s * 0.5, time.perf_counter() - t0)
            last_ckpt = time.perf_counter()

        charge("compute", "setup")
        try:
            while True:
                if stage_i < len(cand.stages):
                    st = cand.stages[stage_i]
                    if stage_done >= st.samples:
                        stage_i, stage_done = stage_i + 1, 0
                        if stage_i < len(cand.stages):
                            nxt = cand.stages[stage_i]
                            if nxt.hardware != hw:
                                charge("compute", "train")
                                hw = nxt.hardware
                                claim(hw)
                            if nxt.batch_size != trainer.batch_size:
                                trainer.set_batch_size(nxt.batch_size, warmup_steps=5)
                            self._event("stage", stage=stage_i, hardware=hw, batch_size=nxt.batch_size)
                        continue
                elif not beyond:
                    beyond = True
                    self._event("beyond_plan", samples=trainer.samples_seen,
                                note="the plan's samples are used up before the target; continuing")
                    self.log(f"plan's samples used up at val_accuracy {last_eval_acc:.4f} < {level:g}; "
                             "continuing with the last stage's settings")
                if trainer.samples_seen >= spec.target.max_samples:
                    status = "max_samples"
                    break
                price_s = self.prices.price_usd_per_h(hw, time.perf_counter() - t_run0) / 3600.0
                due_eval = trainer.samples_seen + trainer.batch_size >= next_eval
                pending = (time.perf_counter() - last) * price_s
                reserve = price_s * (3 * slowest + (2 * eval_s if due_eval else 0.0) + 3 * ckpt_s + 0.01)
                if ledger.spent + pending + reserve > self.budget:
                    status = "budget"
                    break
                t0 = time.perf_counter()
                loss = trainer.step()
                slowest = max(slowest * 0.995, time.perf_counter() - t0)
                stage_done += trainer.batch_size
                charge("compute", "train", step=trainer.steps)
                if trainer.samples_seen >= next_eval:
                    next_eval += eval_every
                    ev = trainer.evaluate()
                    eval_s = max(eval_s * 0.9, ev.seconds)
                    charge("compute", "eval")
                    accuracy = last_eval_acc = ev.accuracy
                    if handle is not None and self.tracker is not None:
                        wall = time.perf_counter() - t_run0
                        self.tracker.log_metrics(handle, {
                            "loss": loss, "val_loss": ev.loss, "val_accuracy": ev.accuracy,
                            "spend_usd": ledger.spent, "spend_rate_usd_per_h": ledger.spent / wall * 3600,
                            "batch_size": trainer.batch_size, "lr": trainer.lr, "stage": stage_i,
                            "samples": trainer.samples_seen}, step=trainer.steps)
                    if ev.accuracy >= level:
                        status = "target"
                        break
                if time.perf_counter() - last_ckpt >= spec.runtime.checkpoint_every_s:
                    checkpoint("interval")
            checkpoint("final" if status == "target" else status)
        finally:
            charge("compute", "teardown")
            ledger.close()
        wall = time.perf_counter() - t_run0
        result = RunResult(
            run_id=self.run_id, candidate=cand.id, status=status, cost_usd=ledger.spent, wall_s=wall,
            accuracy=accuracy, samples=trainer.samples_seen, predicted_cost_usd=cand.cost_usd,
            predicted_wall_s=cand.wall_s, predicted_accuracy=cand.accuracy, budget_usd=self.budget,
            ledger_path=str(self.ledger_path), events=self.events)
        self._status(status, cost_usd=result.cost_usd, wall_s=wall, val_accuracy=accuracy,
                     samples=trainer.samples_seen)
        self._event("end", status=status, cost_usd=result.cost_usd, val_accuracy=accuracy)
        if handle is not None and self.tracker is not None:
            self.tracker.log_metrics(handle, {
                "cost_usd": result.cost_usd, "wall_s": wall, "val_accuracy": accuracy,
                "predicted_cost_usd": cand.cost_usd, "predicted_wall_s": cand.wall_s,
                "predicted_accuracy": cand.accuracy, "samples": trainer.samples_seen},
                step=trainer.steps)
            if self.plan_path is None:
                atomic_write_text(self.run_dir / "plan.json", plan_to_json(self.plan))
            self.tracker.log_artifact(handle, self.plan_path or self.run_dir / "plan.json")
            self.tracker.log_artifact(handle, self.ledger_path)
            self.tracker.log_artifact(handle, self.run_dir / "events.jsonl")
            self.tracker.set_tags(handle, {"paretrain.status": status})
            self.tracker.end_run(handle, "FINISHED" if status == "target" else "KILLED")
            result.tracking_run = handle
        if status != "target":
            why = ("its budget" if status == "budget" else f"target.max_samples ({spec.target.max_samples})")
            err = BudgetExhausted(
                f"run {self.run_id} stopped at {why} before its target: spent ${result.cost_usd:.6g} of "
                f"${self.budget:.6g}; val_accuracy {accuracy:.4f} reached of {level:g} after "
                f"{trainer.samples_seen} samples. To fix: raise budget.envelopes.train (or "
                f"target.max_samples) and continue with 'paretrain run PLAN --candidate {cand.id} --resume'")
            err.result = result  # type: ignore[attr-defined]
            raise err
        return result


def fmt_money(x: float) -> str:
    return f"${x:.6f}" if math.isfinite(x) else "-"
