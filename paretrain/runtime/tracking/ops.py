"""The tracking ops carried out against an MLflow client: live, from the tracker's thread
(``paretrain.runtime.tracking.client.Tracker``), or replayed from the spool
(``sync_spool``), where ``dedupe`` skips what MLflow already holds.

An op is a dict with ``op`` (its kind) and ``handle`` (the tracker's name for a run, known before
MLflow gives the run an id): ``create``, ``params``, ``tags``, ``metrics``, ``input``,
``artifact``, ``end`` and ``end_stale`` (mark KILLED the other attempts of a paretrain run that
are still RUNNING).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["apply_op", "experiment_id"]


def experiment_id(client: Any, name: str) -> str:
    """The id of experiment ``name``, made (or restored from deleted) when needed."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    try:
        return client.create_experiment(name)
    except Exception:
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def apply_op(client: Any, op: dict[str, Any], run_ids: dict[str, str], *, dedupe: bool = False) -> str:
    """Carry out one tracking op; returns the MLflow run id of its handle."""
    handle = op["handle"]
    if op["op"] == "create":
        return _create(client, op, run_ids, dedupe)
    run_id = run_ids.get(handle) or op.get("run_id")
    if run_id is None:
        raise RuntimeError(f"run of handle {handle} was never created")
    _OPS[op["op"]](client, run_id, op, dedupe)
    return run_id


def _create(client: Any, op: dict[str, Any], run_ids: dict[str, str], dedupe: bool) -> str:
    handle = op["handle"]
    tags = dict(op.get("tags", {}))
    parent = op.get("parent_run_id") or (run_ids.get(op["parent"]) if op.get("parent") else None)
    if parent:
        tags["mlflow.parentRunId"] = parent
    tags.setdefault("mlflow.runName", op["name"])
    tags.setdefault("paretrain.handle", handle)
    exp_id = experiment_id(client, op["experiment"])
    if dedupe:  # the server may have made it before it died and its answer was lost
        found = client.search_runs([exp_id], f"tags.`paretrain.handle` = '{handle}'", max_results=1)
        if found:
            return str(found[0].info.run_id)
    return str(client.create_run(exp_id, tags=tags, run_name=op["name"]).info.run_id)


def _params(client: Any, run_id: str, op: dict[str, Any], dedupe: bool) -> None:
    from mlflow.entities import Param

    params = op["params"]
    if dedupe:
        have = client.get_run(run_id).data.params
        params = {k: v for k, v in params.items() if k not in have}
    items = list(params.items())
    for i in range(0, len(items), 100):
        client.log_batch(run_id, params=[Param(k, v) for k, v in items[i : i + 100]])


def _tags(client: Any, run_id: str, op: dict[str, Any], _dedupe: bool) -> None:
    from mlflow.entities import RunTag

    client.log_batch(run_id, tags=[RunTag(k, v) for k, v in op["tags"].items()])


def _metrics(client: Any, run_id: str, op: dict[str, Any], dedupe: bool) -> None:
    from mlflow.entities import Metric

    points = op["points"]
    if dedupe:
        seen: dict[str, set[tuple[int, int, float]]] = {}
        for key in {p[0] for p in points}:
            seen[key] = {(m.step, m.timestamp, m.value) for m in client.get_metric_history(run_id, key)}
        points = [p for p in points if (p[3], p[2], p[1]) not in seen[p[0]]]
    for i in range(0, len(points), 1000):
        client.log_batch(run_id, metrics=[Metric(k, v, ts, st) for k, v, ts, st in points[i : i + 1000]])


def _input(client: Any, run_id: str, op: dict[str, Any], dedupe: bool) -> None:
    from mlflow.entities import Dataset, DatasetInput, InputTag

    ds = Dataset(op["name"], op["digest"], "code", op["source"], None, json.dumps(op["profile"]))
    if dedupe:
        have = client.get_run(run_id).inputs.dataset_inputs
        if any(d.dataset.digest == op["digest"] for d in have):
            return
    client.log_inputs(run_id, datasets=[DatasetInput(ds, [InputTag("mlflow.data.context", op["context"])])])


def _artifact(client: Any, run_id: str, op: dict[str, Any], _dedupe: bool) -> None:
    if Path(op["path"]).exists():
        client.log_artifact(run_id, op["path"], op.get("artifact_path"))


def _end(client: Any, run_id: str, op: dict[str, Any], _dedupe: bool) -> None:
    client.set_terminated(run_id, op.get("status", "FINISHED"))


def _end_stale(client: Any, run_id: str, op: dict[str, Any], _dedupe: bool) -> None:
    exp_id = client.get_run(run_id).info.experiment_id
    query = f"tags.`paretrain.run_id` = '{op['paretrain_run']}' and attributes.status = 'RUNNING'"
    for r in client.search_runs([exp_id], query, max_results=1000):
        if r.info.run_id != run_id:
            client.set_terminated(r.info.run_id, "KILLED")


_OPS = {
    "params": _params,
    "tags": _tags,
    "metrics": _metrics,
    "input": _input,
    "artifact": _artifact,
    "end": _end,
    "end_stale": _end_stale,
}
