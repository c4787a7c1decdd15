"""A plan in MLflow: the parent run's tags, params and artifacts, one child run per candidate.

The parent (started by the command, ``kind`` plan) gets the plan's fingerprint as a tag and
run name, the spec and solver as params, and the spec, plan file and Pareto plot as
artifacts; each Pareto candidate becomes a child run with its stage table as params and its
predicted cost, wall time and level of the target metric as metrics (``predicted_cost_usd``,
``predicted_wall_s``, ``predicted_<metric>``, with ``_p10``/``_p50``/``_p90`` where the plan has
intervals: what ``paretrain compare`` and the MLflow UI compare runs against).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from paretrain.runtime.tracking.client import Tracker

__all__ = ["candidate_params", "interval_metrics", "log_plan", "plan_params"]


def plan_params(spec: Any, plan: Any) -> dict[str, Any]:
    """The parent run's params."""
    return {
        "spec": spec.name,
        "spec_digest": spec.digest,
        "fingerprint": plan.fingerprint,
        "solver": plan.solver.get("name"),
        "solver_status": plan.solver.get("status"),
        "candidates": len(plan.candidates),
        "chosen": plan.chosen,
        "budget_train_usd": spec.budget.train_usd,
        "deadline_s": spec.deadline_s,
    }


def candidate_params(candidate: Any) -> dict[str, Any]:
    """A candidate child run's params: its config, level of the target metric, the samples of the
    profile's checkpoint its run starts from (0: from scratch) and one line per stage."""
    return {
        "config": candidate.config_id,
        "level": candidate.level,
        "reused_samples": getattr(candidate, "reused_samples", 0),
        **{
            f"stage{s.index}": f"{s.hardware} {s.precision} b={s.batch_size} n={s.workers} "
            f"samples={s.samples}"
            for s in candidate.stages
        },
    }


def log_plan(
    tracker: Tracker | None,
    parent: str | None,
    spec: Any,
    plan: Any,
    *,
    artifacts: tuple[str | Path, ...] = (),
) -> list[str]:
    """Log ``plan`` under the run ``parent``: tags, params, a child per candidate and the
    ``artifacts`` (spec, plan file, plot). Returns the children's handles (none untracked)."""
    if tracker is None or parent is None:
        return []
    tracker.set_tags(
        parent, {"paretrain.plan_fingerprint": plan.fingerprint, "mlflow.runName": f"plan-{plan.fingerprint}"}
    )
    tracker.log_params(parent, plan_params(spec, plan))
    children = []
    for c in plan.candidates:
        child = tracker.start_run(
            f"{c.id}-{c.config_id}",
            parent=parent,
            params=candidate_params(c),
            tags={
                "paretrain.kind": "candidate",
                "paretrain.plan_fingerprint": plan.fingerprint,
                "paretrain.candidate": c.id,
                "paretrain.config": c.config_id,
            },
        )
        tracker.log_metrics(
            child,
            {
                "predicted_cost_usd": c.cost_usd,
                "predicted_wall_s": c.wall_s,
                f"predicted_{plan.metric.name}": c.level,
                **interval_metrics(c),
            },
        )
        tracker.end_run(child)
        children.append(child)
    for path in artifacts:
        tracker.log_artifact(parent, path)
    return children


def interval_metrics(cand: Any) -> dict[str, float]:
    """A candidate's predicted P10/P50/P90 as MLflow metrics (``predicted_cost_usd_p10``, ...)."""
    out: dict[str, float] = {}
    for name, iv in (("cost_usd", cand.cost_interval), ("wall_s", cand.wall_interval)):
        if iv is not None:
            out.update(
                {
                    f"predicted_{name}_p10": iv.p10,
                    f"predicted_{name}_p50": iv.p50,
                    f"predicted_{name}_p90": iv.p90,
                }
            )
    if cand.p_reach is not None:
        out["predicted_p_reach"] = cand.p_reach
    return out
