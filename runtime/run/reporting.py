"""How a run reports, for the executor: its MLflow run at the start, and at the end its last
checkpoint, status file, result, artifacts and, when it stopped short of its target, the error
that says why and how to go on."""

from __future__ import annotations

import io

import torch

from planner.errors import BudgetExhausted
from planner.plan import plan_to_json
from runtime.files import atomic_write_bytes, atomic_write_text
from runtime.run.runs import RunResult
from runtime.tracking.client import git_commit

__all__ = ["Reporting"]


class Reporting:
    """Mixin of ``runtime.run.executor.Executor``: tracking at the start, the finish."""

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
