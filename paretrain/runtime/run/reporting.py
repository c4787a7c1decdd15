"""How a run reports: its MLflow run at the start, metrics at each evaluation, and at the end
its status file, result, artifacts and, when it stopped short of its target, the error that
says why and how to go on."""

from __future__ import annotations

import io
import math
import signal
from typing import Any

import torch

from paretrain.planner.plan.plan_file import plan_to_json
from paretrain.runtime.adapt.learning import Refit
from paretrain.runtime.adapt.policy import Triple
from paretrain.runtime.files import atomic_write_bytes, atomic_write_text, strict_json
from paretrain.runtime.money.meter import Meter
from paretrain.runtime.run.account import EventLog
from paretrain.runtime.run.runs import (
    FAULT_STATUSES,
    RunFailed,
    RunInterrupted,
    RunResult,
    RunStopped,
    fault_message,
)
from paretrain.runtime.run.state import RunSetup, RunState
from paretrain.runtime.tracking.client import git_commit
from paretrain.runtime.tracking.plan_log import interval_metrics

__all__ = ["Reporting", "predicted_name"]


def _triple(iv: Any) -> tuple[float, float, float] | None:
    return None if iv is None else (iv.p10, iv.p50, iv.p90)


def _finite(v: float) -> float | None:
    """A number for a JSON record: None for a sample count never reached."""
    return v if math.isfinite(v) else None


def predicted_name(metric: Any) -> str:
    """The MLflow metric of a predicted level: ``predicted_<metric>`` (``predicted_val_bpb``)."""
    return f"predicted_{metric.name}"


_WHY = {"budget": "its budget", "deadline": "its deadline (the offer was not back in time)"}


class Reporting:
    """The run's status file and MLflow run (when a tracker is given)."""

    def __init__(self, setup: RunSetup, tracker: Any, events: EventLog, plan_path: Any = None) -> None:
        self.setup, self.tracker, self.events, self.plan_path = setup, tracker, events, plan_path
        self.metric = setup.spec.target.metric_obj
        self.handle: str | None = None

    def status(self, status: str, **data: Any) -> None:
        s = self.setup
        atomic_write_text(
            s.run_dir / "status.json",
            strict_json(
                {
                    "run_id": s.run_id,
                    "fingerprint": s.plan.fingerprint,
                    "candidate": s.cand.id,
                    "status": status,
                    **data,
                },
                indent=1,
            )
            + "\n",
        )

    def start(self, trainer: Any, budget: float) -> None:
        """Open the MLflow run: tags, the dataset as an input, the stages as params."""
        if self.tracker is None:
            return
        s, cand = self.setup, self.setup.cand
        self.handle = self.tracker.start_run(
            f"run-{cand.id}-{cand.config_id}",
            tags={
                "paretrain.kind": "run",
                "paretrain.plan_fingerprint": s.plan.fingerprint,
                "paretrain.candidate": cand.id,
                "paretrain.config": cand.config_id,
                "paretrain.run_id": s.run_id,
                "mlflow.source.git.commit": git_commit(),
                "paretrain.emulated": str(s.emulated_any).lower(),
                "paretrain.metric": self.metric.name,
                "paretrain.direction": self.metric.direction,
            },
        )
        self.tracker.end_stale(self.handle, s.run_id)  # attempts a kill -9 left RUNNING
        self.events.attach(self.tracker, self.handle)
        self._log_dataset(trainer)
        self.tracker.log_params(
            self.handle,
            {
                "candidate": cand.id,
                "config": cand.config_id,
                "level": cand.level,
                "budget_usd": budget,
                **{
                    f"stage{st.index}": f"{st.hardware} {st.precision} b={st.batch_size} n={st.workers} "
                    f"samples={st.samples}"
                    for st in cand.stages
                },
            },
        )

    def reused(self, samples: int, path: str, why: str = "") -> None:
        """The run's start from the profile's checkpoint as MLflow params and a tag (``why``: it
        could not be used, and the run trains from scratch)."""
        if self.handle is None:
            return
        self.tracker.log_params(self.handle, {"reused_samples": samples, "reused_checkpoint": path})
        self.tracker.set_tags(self.handle, {"paretrain.reused": f"false: {why}" if why else "true"})

    def _log_dataset(self, trainer: Any) -> None:
        """The training data as the run's MLflow input: the workload's digest, its source and size."""
        w, wl = self.setup.spec.workload, trainer.workload
        digest = wl.fingerprint() if callable(getattr(wl, "fingerprint", None)) else ""
        source = wl.source() if callable(getattr(wl, "source", None)) else w.name
        val = trainer.val_dataset
        sizes = {"train": trainer.train_size, "validation": len(val) if hasattr(val, "__len__") else 0}
        name = f"{w.name}-{w.samples}" if w.name == "mnist1d" else w.name.rsplit("/", 1)[-1]
        self.tracker.log_input(self.handle, name, str(digest)[:16], source, sizes)

    def evaluation(self, state: RunState, meter: Meter, trainer: Any, price_usd_per_h: float) -> None:
        if self.handle is None:
            return
        t = max(meter.t, 1e-9)
        self.tracker.log_metrics(
            self.handle,
            {
                **state.metrics,
                "loss": state.loss,
                "val_loss": state.val_loss,
                self.metric.name: state.level,
                "spend_usd": meter.spent,
                "spend_rate_usd_per_h": meter.spent / t * 3600,
                "batch_size": trainer.batch_size,
                "lr": trainer.lr,
                "stage": state.stage_i,
                "samples": trainer.samples_seen,
                "run_time_s": meter.t,
                "price_usd_per_h": price_usd_per_h,
            },
            step=trainer.steps,
        )

    def refit(self, refit: Refit, expected: Triple | None) -> None:
        """A refit of the run's curve: an event, and in MLflow the P10 / P50 / P90 of the samples
        to the target at step = the samples seen (never reached: inf, which MLflow stores as the
        largest float)."""
        lo, mid, hi = refit.to_target
        self.events(
            "curve",
            samples=refit.samples,
            points=refit.points,
            samples_to_target=[_finite(v) for v in refit.to_target],
            expected=None if expected is None else [_finite(v) for v in expected],
            fit_s=round(refit.fit_s, 4),
        )
        if self.handle is None:
            return
        self.tracker.log_metrics(
            self.handle,
            {
                "curve_samples_to_target_p10": lo,
                "curve_samples_to_target_p50": mid,
                "curve_samples_to_target_p90": hi,
                "curve_points": refit.points,
                "curve_fit_s": refit.fit_s,
            },
            step=refit.samples,
        )

    def finish(self, status: str, state: RunState, meter: Meter, trainer: Any, budget: float) -> RunResult:
        """The result, status file, last event and MLflow record; ``RunStopped`` (a
        ``BudgetExhausted`` carrying the result) when the run stopped before its target."""
        s, cand = self.setup, self.setup.cand
        spent = meter.ledger.spent
        result = RunResult(
            run_id=s.run_id,
            candidate=cand.id,
            status=status,
            cost_usd=spent,
            wall_s=meter.t,
            level=state.level,
            samples=trainer.samples_seen,
            predicted_cost_usd=cand.cost_usd,
            predicted_wall_s=cand.wall_s,
            predicted_level=cand.level,
            budget_usd=budget,
            ledger_path=str(s.ledger_path),
            emulated=s.emulated_any,
            events=self.events.events,
            metric=self.metric.name,
            direction=self.metric.direction,
            predicted_cost_interval=_triple(cand.cost_interval),
            predicted_wall_interval=_triple(cand.wall_interval),
            compute_s=state.compute_s,
            compute_steps=state.compute_steps,
            reused_samples=state.reused,
        )
        self.status(
            status,
            cost_usd=spent,
            wall_s=meter.t,
            **{self.metric.name: state.level},
            samples=trainer.samples_seen,
            reused_samples=state.reused,
            emulated=s.emulated_any,
        )
        self.events("end", status=status, cost_usd=spent, **{self.metric.name: state.level})
        if self.handle is not None:
            self._close_tracking(status, result, meter, trainer)
            result.tracking_run = self.handle
        if status != "target":
            raise self._stopped(status, result, state, trainer.samples_seen)
        return result

    def _stopped(self, status: str, result: RunResult, state: RunState, samples: int) -> Exception:
        """What a run that stopped before its target raises: ``RunFailed`` (exit 2) for a workload
        member that raised, ``RunInterrupted`` (exit 128 + signal) for a signal, else ``RunStopped``."""
        s, cand, spent, budget = self.setup, self.setup.cand, result.cost_usd, result.budget_usd
        if status in FAULT_STATUSES:  # a fault: the message was written when it was met
            message = fault_message(
                status, state.stop_reason, spent, budget, cand.cost_usd, state.stop_projected_usd
            )
        elif status == "workers":
            message = (
                f"run {s.run_id} stopped before its target: {state.stop_reason}; spent ${spent:.6g} of "
                f"${budget:.6g} (the wait charged for the processes that were there). To fix: start the "
                f"missing machines (or set PARETRAIN_NNODES=1) and continue with 'paretrain run PLAN "
                f"--candidate {cand.id} --resume'"
            )
        elif status == "budget" and state.stop_reason:  # no schedule fits, or a resume with nothing left
            message = state.stop_reason
        else:
            why = _WHY.get(status) or f"target.max_samples ({s.spec.target.max_samples})"
            fix = "raise budget.envelopes.train (or target.max_samples, deadline_s)"
            if status == "budget" and budget < s.spec.budget.train_usd:
                fix = (
                    f"raise budget.project_ceiling_usd (${s.spec.budget.project_ceiling_usd:.6g}: the "
                    "project's other runs had spent or held the rest when this run started) or "
                    "wait for them to end"
                )
            message = (
                f"run {s.run_id} stopped at {why} before its target: spent ${spent:.6g} of "
                f"${budget:.6g}; {self.metric.name} {state.level:.4f} reached of {cand.level:g} after "
                f"{samples} samples. To fix: {fix} and continue with 'paretrain run PLAN --candidate "
                f"{cand.id} --resume'"
            )
        if status == "workload":
            return RunFailed(message, result)
        if status in ("SIGTERM", "SIGINT"):
            return RunInterrupted(message, result, int(getattr(signal, status)))
        return RunStopped(message, result)

    def _close_tracking(self, status: str, result: RunResult, meter: Meter, trainer: Any) -> None:
        s, cand, tr, h = self.setup, self.setup.cand, self.tracker, self.handle
        assert h is not None
        tr.log_metrics(
            h,
            {
                "cost_usd": result.cost_usd,
                "wall_s": meter.t,
                self.metric.name: result.level,
                "predicted_cost_usd": cand.cost_usd,
                "predicted_wall_s": cand.wall_s,
                predicted_name(self.metric): cand.level,
                "samples": trainer.samples_seen,
                **interval_metrics(cand),
            },
            step=trainer.steps,
        )
        if self.plan_path is None:
            atomic_write_text(s.run_dir / "plan.json", plan_to_json(s.plan))
        tr.log_artifact(h, self.plan_path or s.run_dir / "plan.json")
        tr.log_artifact(h, s.ledger_path)
        tr.log_artifact(h, s.run_dir / "events.jsonl")
        model_path = s.run_dir / "model.pt"
        buf = io.BytesIO()
        torch.save(trainer.model.state_dict(), buf)
        atomic_write_bytes(model_path, buf.getvalue())
        tr.log_artifact(h, model_path)
        tr.set_tags(h, {"paretrain.status": status})
        tr.end_run(h, "FINISHED" if status == "target" else "KILLED")
