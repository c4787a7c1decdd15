"""Predicted against realized: the execution runs of an MLflow experiment, side by side.

A row names the target metric's predicted level and realized value by the metric
(``predicted_val_mse``, ``val_mse``), and gives each error as a number: (realized - predicted) /
predicted, so +0.1 is 10% over the prediction (None where nothing was predicted).

A run that refitted its learning curve (``paretrain.runtime.adapt.learning``) logged the P10 /
P50 / P90 of the samples to its target at each refit (``curve_samples_to_target_p10`` ...,
step = the samples seen). Its row holds the first and the last refit,
``samples_to_target_first`` and ``samples_to_target_last`` ({samples, p10, p50, p90}; None for
a count the curve never reaches), and ``refits``: how the prediction tightened as the run went.

One row per paretrain run, not per MLflow run: a run stopped part-way (a signal, a full disk, a
workload fault) and continued with ``--resume`` logs one MLflow run per attempt, all tagged with
its ``paretrain.run_id``, and the last attempt's figures hold the whole run (its ledger is the
run's). So the row is the latest attempt with a final record, and ``attempts`` counts them. A
row whose status is still an interruption (``INTERRUPTED``: not resumed yet) holds partial
figures: it is shown, but not judged against the front (``on_front`` None).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from paretrain.planner.errors import InputError
from paretrain.planner.inputs.metric import Metric
from paretrain.planner.program.pareto import non_dominated

__all__ = [
    "CURVE_METRICS",
    "INTERRUPTED",
    "check_store",
    "compare_rows",
    "latest_plan_run",
    "log_plot",
    "relative_error",
]

#: a run's statuses after a stop that ``--resume`` continues (its figures are the run so far)
INTERRUPTED = ("SIGTERM", "SIGINT", "disk", "workload")


def relative_error(predicted: float, realized: float) -> float | None:
    """(realized - predicted) / predicted; None when nothing (zero) was predicted."""
    return (realized - predicted) / predicted if predicted else None


def latest_plan_run(uri: str, experiment: str) -> str | None:
    """The newest plan run of ``experiment`` (where ``compare`` files its plot)."""
    from paretrain.runtime.tracking.client import _client

    client = _client(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None
    runs = client.search_runs(
        [exp.experiment_id],
        "tags.`paretrain.kind` = 'plan'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def log_plot(uri: str, run_id: str, path: str) -> bool:
    from paretrain.runtime.tracking.client import _client

    try:
        _client(uri).log_artifact(run_id, path)
        return True
    except Exception:
        return False


def _intervals(m: dict[str, float]) -> dict[str, Any]:
    """The predicted P10/P50/P90 a run logged, and whether the realized figure fell inside."""
    out: dict[str, Any] = {}
    for name, short in (("cost_usd", "cost"), ("wall_s", "wall")):
        keys = [f"predicted_{name}_p{q}" for q in (10, 50, 90)]
        if all(k in m for k in keys):
            lo, mid, hi = (m[k] for k in keys)
            out[f"predicted_{name}_interval"] = {"p10": lo, "p50": mid, "p90": hi}
            out[f"{short}_inside"] = bool(lo <= m.get(name, float("nan")) <= hi)
        else:
            out[f"{short}_inside"] = None
    return out


def check_store(uri: str) -> None:
    """A sqlite store that does not exist is bad input: opening it would make an empty one where
    the user looks for runs (``compare`` in the wrong folder)."""
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        raise InputError(
            f"--tracking-uri: no MLflow store at {uri} (nothing was planned or run with tracking "
            "from this folder). To fix: run the command from the folder you planned in, or pass "
            "--tracking-uri"
        )


def compare_rows(uri: str, experiment: str | None) -> tuple[str, list[dict[str, Any]]]:
    """One row per execution run: predicted and realized cost, wall time and target metric,
    the errors, and whether the realized point is on the front of the realized points."""
    from paretrain.runtime.tracking.client import _client

    client = _client(uri)
    exp = _experiment(client, uri, experiment)
    runs = client.search_runs(
        [exp.experiment_id],
        "tags.`paretrain.kind` = 'run'",
        order_by=["attributes.start_time ASC"],
        max_results=5000,
    )
    # a run still running, or stopped before its final record, has no cost_usd yet
    latest: dict[str, Any] = {}
    attempts: dict[str, int] = {}
    for r in (r for r in runs if "cost_usd" in r.data.metrics):  # oldest first: the last one stays
        key = r.data.tags.get("paretrain.run_id") or r.info.run_id
        latest.pop(key, None)  # re-inserted: the row goes where its latest attempt started
        latest[key], attempts[key] = r, attempts.get(key, 0) + 1
    rows = [{**_row(r), **_refits(client, r), "attempts": attempts[key]} for key, r in latest.items()]
    keep = _front(rows)
    for i, r in enumerate(rows):
        r["on_front"] = None if r["status"] in INTERRUPTED else i in keep
    return exp.name, rows


def _front(rows: list[dict[str, Any]]) -> set[int]:
    """The rows on the realized front: not dominated in cost, wall time and target metric by a
    row of the same metric and direction (runs of specs that share an experiment but aim at
    different metrics are not compared with each other); interrupted rows are not judged."""
    groups: dict[tuple[str, str], list[int]] = {}
    for i, r in enumerate(rows):
        if r["status"] not in INTERRUPTED:
            groups.setdefault((r["metric"], r["direction"]), []).append(i)
    keep: set[int] = set()
    for (metric, direction), judged in groups.items():
        m = Metric(metric, direction)
        points = [(rows[i]["cost_usd"], rows[i]["wall_s"], m.score(rows[i][metric])) for i in judged]
        keep |= {judged[j] for j in non_dominated(points)}
    return keep


def _experiment(client: Any, uri: str, experiment: str | None) -> Any:
    """The named experiment, or the only one there is."""
    if experiment is None:
        exps = [e for e in client.search_experiments() if e.name != "Default"]
        if len(exps) != 1:
            names = ", ".join(sorted(e.name for e in exps)) or "none"
            raise InputError(
                f"--experiment: {len(exps)} experiments at {uri} ({names}). To fix: name one "
                "with --experiment NAME"
            )
        return exps[0]
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise InputError(
            f"--experiment: no experiment named {experiment!r} at {uri}. To fix: check "
            "the name (the spec's tracking.experiment, else its name)"
        )
    return exp


#: the metrics a refit of a run's curve logs, P10 / P50 / P90 of the samples to the target
CURVE_METRICS = tuple(f"curve_samples_to_target_p{q}" for q in (10, 50, 90))


def _count(v: float) -> float | None:
    """A sample count as logged; None for never (MLflow stores an infinity as the largest float)."""
    return None if v >= 1e300 or not math.isfinite(v) else v


def _refits(client: Any, r: Any) -> dict[str, Any]:
    """The first and last refit of the run's curve (see the module docstring); nothing when the
    run never refitted it."""
    if CURVE_METRICS[1] not in r.data.metrics:
        return {"refits": 0, "samples_to_target_first": None, "samples_to_target_last": None}
    history = {
        key: {m.step: m.value for m in client.get_metric_history(r.info.run_id, key)} for key in CURVE_METRICS
    }
    steps = sorted(set.intersection(*(set(h) for h in history.values())))

    def at(step: int) -> dict[str, Any]:
        lo, mid, hi = (_count(history[key][step]) for key in CURVE_METRICS)
        return {"samples": step, "p10": lo, "p50": mid, "p90": hi}

    return {
        "refits": len(steps),
        "samples_to_target_first": at(steps[0]) if steps else None,
        "samples_to_target_last": at(steps[-1]) if steps else None,
    }


def _row(r: Any) -> dict[str, Any]:
    m, t = r.data.metrics, r.data.tags
    metric = Metric(t.get("paretrain.metric") or "val_accuracy", t.get("paretrain.direction") or "maximize")
    # runs logged before the predicted level was named by its metric call it predicted_accuracy
    predicted = m.get(f"predicted_{metric.name}", m.get("predicted_accuracy", 0.0))
    value = m.get(metric.name, 0.0)
    predicted_cost, predicted_wall = m.get("predicted_cost_usd", 0.0), m.get("predicted_wall_s", 0.0)
    return {
        "run": r.info.run_id,
        "candidate": t.get("paretrain.candidate", ""),
        "plan": t.get("paretrain.plan_fingerprint", ""),
        "status": t.get("paretrain.status", ""),
        "predicted_cost_usd": predicted_cost,
        "cost_usd": m["cost_usd"],
        "cost_err": relative_error(predicted_cost, m["cost_usd"]),
        "predicted_wall_s": predicted_wall,
        "wall_s": m.get("wall_s", 0.0),
        "wall_err": relative_error(predicted_wall, m.get("wall_s", 0.0)),
        "metric": metric.name,
        "direction": metric.direction,
        f"predicted_{metric.name}": predicted,
        metric.name: value,
        "metric_err": relative_error(predicted, value),
        **_intervals(m),
    }
