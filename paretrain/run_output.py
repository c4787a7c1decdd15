"""What the run-side commands show: a run starting and its result, where its tracking went, the
comparison of runs and the ledger (the plan side: ``paretrain.output``).

Each ``show_*`` prints for people in table format and fills the JSON record in ``--format
json`` (see ``paretrain.console.Output``). Scripts read some of these lines (the
predicted/realized table): keep their words stable.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from paretrain.console import Output, usd

__all__ = ["ERROR_RULE", "show_compare", "show_ledger", "show_result", "show_running", "show_tracking"]


def show_running(ui: Output, cand: Any, how: str = "", metric: str = "val_accuracy") -> None:
    """The run's first line: what trains, stage by stage (and a resume note, if any)."""
    if how:
        ui.log(how)
    start = getattr(cand, "start", None)
    ui.line(
        f"running {cand.id} ({cand.config_id} to {metric} {cand.level:g}): "
        + (f"from the profile's checkpoint at {start.samples} samples -> " if start is not None else "")
        + " -> ".join(f"{s.hardware} b{s.batch_size} x{s.samples}" for s in cand.stages)
    )


#: how every error shown is computed (``paretrain.runtime.tracking.compare.relative_error``)
ERROR_RULE = "(realized-predicted)/predicted"


def _error(predicted: float, realized: float) -> str:
    return _shown_error((realized - predicted) / predicted if predicted else None)


def _shown_error(err: float | None) -> str:
    """An error in percent; "-" when there is none to show (nothing predicted, or a realized
    value that is not finite: a diverged run's metric)."""
    return "-" if err is None or not math.isfinite(err) else f"{err:+.1%}"


def show_result(ui: Output, r: Any) -> None:
    """Predicted (point and P10-P90) against realized, whether it fell inside, and the ledger.

    A run stopped part-way that ``--resume`` continues (a signal, a full disk, a workload fault:
    ``INTERRUPTED``) shows what it did so far, neither judged against the prediction (error and
    inside "-") nor called realized: the resumed run is."""
    from paretrain.runtime.tracking.compare import INTERRUPTED

    ui.put("run", {k: v for k, v in dataclasses.asdict(r).items() if k != "events"})
    partial = r.status in INTERRUPTED

    def inside(what: str) -> str:
        found = None if partial else r.inside(what)
        return "-" if found is None else ("yes" if found else "no")

    def error(predicted: float, realized: float) -> str:
        return "-" if partial else _error(predicted, realized)

    civ, wiv = r.predicted_cost_interval, r.predicted_wall_interval
    ui.table(
        ["", "predicted", "P10-P90", "realized", f"error {ERROR_RULE}", "inside"],
        [
            [
                "cost_usd",
                usd(r.predicted_cost_usd),
                f"{usd(civ[0])}-{usd(civ[2])}" if civ else "-",
                usd(r.cost_usd),
                error(r.predicted_cost_usd, r.cost_usd),
                inside("cost"),
            ],
            [
                "wall_s",
                f"{r.predicted_wall_s:.1f}",
                f"{wiv[0]:.1f}-{wiv[2]:.1f}" if wiv else "-",
                f"{r.wall_s:.1f}",
                error(r.predicted_wall_s, r.wall_s),
                inside("wall"),
            ],
            [
                r.metric,
                f"{r.predicted_level:.4f}",
                "-",
                f"{r.level:.4f}",
                error(r.predicted_level, r.level),
                "-",
            ],
        ],
    )
    if partial:
        ui.line(f"{r.status}: the figures are the run so far, not judged against the prediction")
    reused = getattr(r, "reused_samples", 0)
    ui.line(
        f"run {r.run_id}: {r.status}; {r.samples} samples"
        f"{f' ({reused} of them trained by the profile, not paid twice)' if reused else ''}; spent ${usd(r.cost_usd)} of "
        f"${usd(r.budget_usd)}{' (emulated hardware: virtual clock)' if r.emulated else ''}; "
        f"ledger {r.ledger_path}"
    )


def show_tracking(ui: Output, report: Any) -> None:
    """Where the MLflow records went (a ``paretrain.runtime.tracking.session.TrackingReport``)."""
    if not report.enabled:
        return
    ui.put(
        "tracking",
        {
            "uri": report.uri,
            "experiment": report.experiment,
            "run_id": report.run_id,
            "ok": report.ok,
            **({} if report.ok else {"spool": report.spool_path}),
        },
    )
    if report.ok:
        ui.line(
            f"MLflow: {report.uri}, experiment '{report.experiment}', run {report.run_id} "
            f"(see it with: paretrain server, or mlflow ui --backend-store-uri {report.uri})"
        )
    else:
        why = f" ({report.reason})" if report.reason else ""
        ui.line(
            f"MLflow: records not written to {report.uri}{why}; spooled to {report.spool_path} "
            "(replay with: paretrain sync)",
            err=True,
            style="yellow",
        )


def show_compare(ui: Output, experiment: str, rows: Sequence[dict[str, Any]]) -> None:
    """Predicted against realized, one row per run (``paretrain.runtime.tracking.compare``): the
    target metric's columns named by it, the errors as the JSON record gives them."""
    ui.put("experiment", experiment)
    ui.put("runs", list(rows))
    metrics = list(dict.fromkeys(r.get("metric", "val_accuracy") for r in rows)) or ["val_accuracy"]
    for metric in metrics:  # one table per target metric: runs of specs aiming at others apart
        _compare_table(ui, metric, [r for r in rows if r.get("metric", "val_accuracy") == metric])


def _compare_table(ui: Output, metric: str, rows: Sequence[dict[str, Any]]) -> None:
    def yn(v: Any) -> str:
        return "-" if v is None else ("yes" if v else "no")

    ui.table(
        [
            "candidate",
            "run",
            "status",
            "pred_cost",
            "cost",
            "err",
            "in",
            "pred_wall",
            "wall",
            "err",
            "in",
            f"pred_{metric}",
            metric,
            "err",
            "front",
            "to_target (first -> last)",
        ],
        [
            [
                r["candidate"],
                r["run"][:8],
                r["status"] + (f" ({r['attempts']} attempts)" if r.get("attempts", 1) > 1 else ""),
                usd(r["predicted_cost_usd"]),
                usd(r["cost_usd"]),
                _shown_error(r["cost_err"]),
                yn(r.get("cost_inside")),
                f"{r['predicted_wall_s']:.1f}",
                f"{r['wall_s']:.1f}",
                _shown_error(r["wall_err"]),
                yn(r.get("wall_inside")),
                f"{r['predicted_' + r['metric']]:.3f}",
                f"{r[r['metric']]:.3f}",
                _shown_error(r.get("metric_err")),
                yn(r["on_front"]),
                _refit_spans(r),
            ]
            for r in rows
        ],
        title=f"err = {ERROR_RULE}; to_target: samples to the target, P10-P90, at the first and last refit",
    )


def _refit_spans(r: dict[str, Any]) -> str:
    """The first and last refit's P10-P90 of the samples to the target ("-": no refit)."""

    def n(v: float | None) -> str:
        return "inf" if v is None else f"{v / 1e3:.3g}k" if v >= 1e3 else f"{v:.0f}"

    first, last = r.get("samples_to_target_first"), r.get("samples_to_target_last")
    if first is None or last is None:
        return "-"
    return " -> ".join(f"{n(e['p10'])}-{n(e['p90'])}" for e in (first, last))


def show_ledger(ui: Output, rows: Sequence[Sequence[Any]], total: float, period: str) -> None:
    ui.put("period", period)
    ui.put("rows", [dict(zip(("run", "stage", "kind", "usd", "seconds"), r, strict=False)) for r in rows])
    ui.put("total_usd", total)
    ui.table(["run", "stage", "kind", "usd", "seconds"], rows)
    ui.line(f"total ${usd(total)} ({period})")
