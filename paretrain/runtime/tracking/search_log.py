"""A search trial in MLflow: one child run of the search's (or plan's) parent per trial."""

from __future__ import annotations

from typing import Any

from paretrain.runtime.tracking.client import Tracker

__all__ = ["log_trial"]


def log_trial(
    tracker: Tracker | None,
    parent: str | None,
    study: str,
    trial: Any,
    config: Any,
    metric: Any = None,
    *,
    parent_run_id: str | None = None,
) -> str | None:
    """Log a finished Optuna ``trial`` of ``config``: params, target metric, cost, latency and spend,
    as a child of the handle ``parent`` or of the MLflow run ``parent_run_id`` (a search worker
    started by another process). Returns the child's handle (None when tracking is off)."""
    if tracker is None:
        return None
    child = tracker.start_run(
        f"trial-{trial.number}-{config.family}",
        parent=parent,
        tags={
            "paretrain.kind": "trial",
            "paretrain.study": study,
            "paretrain.trial": str(trial.number),
            "paretrain.extrapolated": str(bool(trial.user_attrs.get("extrapolated"))).lower(),
        },
        params={**{k: v for k, v in config.to_dict().items() if k != "id"}, "trial": trial.number},
        parent_run_id=parent_run_id,
    )
    name = metric.name if metric is not None else "val_accuracy"
    value = metric.level(trial.values[0]) if metric is not None else trial.values[0]
    tracker.log_metrics(
        child,
        {
            name: value,
            "cost_usd": trial.values[1],
            "latency_ms": trial.values[2],
            "spend_usd": trial.user_attrs.get("spend_usd", 0.0),
            "params": trial.user_attrs.get("params", 0),
        },
    )
    tracker.end_run(child)
    return child
