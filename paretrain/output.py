"""What the command line prints: tables, the progress bar, plans, runs, searches."""

from __future__ import annotations

from typing import Any

import click

__all__ = ["Bar", "table", "print_fits", "print_plan", "print_tracking", "print_search", "print_result"]


class Bar:
    """A one-line progress bar on stderr."""

    def __init__(self, title: str) -> None:
        self.title = title

    def __call__(self, label: str, i: int, n: int) -> None:
        width = 24
        done = int(width * i / max(n, 1))
        end = "\n" if i >= n else ""
        click.echo(f"\r{self.title} [{'#' * done}{'.' * (width - done)}] {i}/{n} {label[:48]:<48}",
                   err=True, nl=False)
        if end:
            click.echo("", err=True)


def print_fits(plan: Any) -> None:
    conv = plan.models.get("convergence", {})
    for cid, levels in conv.items():
        parts = [f"{lv}: E_min={d['e_min']:.0f} B_noise={d['b_noise']:.0f}" for lv, d in levels.items()]
        click.echo(f"convergence {cid}: " + "; ".join(parts))


def print_plan(plan: Any) -> None:
    marks = {plan.chosen: "knee", plan.cheapest: "cheapest", plan.fastest: "fastest"}
    rows = []
    for c in plan.candidates:
        tag = ",".join(v for k, v in ((plan.cheapest, "cheapest"), (plan.chosen, "knee"),
                                      (plan.fastest, "fastest")) if k == c.id)
        stages = " | ".join(f"{s.hardware.split('/')[-1]} b{s.batch_size}" for s in c.stages)
        rows.append([c.id, c.config_id, f"{c.accuracy:.2f}", f"{c.cost_usd:.6f}", f"{c.wall_s:.1f}",
                     stages, tag])
    del marks
    table(["id", "config", "accuracy", "cost_usd", "wall_s", "stages", ""], rows)
    click.echo(f"solver: {plan.solver.get('name')} ({plan.solver.get('status')}, "
               f"{plan.solver.get('solves')} solves); {len(plan.candidates)} Pareto candidates")
    for note in plan.notes:
        click.echo(f"note: {note}")


def table(head: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip())
    click.echo("  ".join("-" * w for w in widths))
    for r in rows:
        click.echo("  ".join(str(x).ljust(w) for x, w in zip(r, widths)).rstrip())


def print_tracking(tr: Any, handle: str, uri: str, experiment: str, ok: bool) -> None:
    run_id = tr.run_id(handle)
    if ok and run_id:
        click.echo(f"MLflow: {uri}, experiment '{experiment}', run {run_id} "
                   f"(see it with: paretrain server, or mlflow ui --backend-store-uri {uri})")
    else:
        click.echo(f"MLflow: not reachable at {uri}; records spooled to {tr.spool_path} "
                   "(replay with: paretrain sync)", err=True)


def print_search(result: Any) -> None:
    rows = [[str(info["trial"]), c.family,
             " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in c.params), c.optimizer,
             f"{c.lr:.2g}", f"{info['accuracy']:.3f}" + ("*" if info["extrapolated"] else ""),
             f"{info['cost_usd']:.7f}", f"{info['latency_ms']:.3f}"] for c, info in result.front]
    table(["trial", "family", "params", "opt", "lr", "accuracy", "cost_usd", "latency_ms"], rows)
    click.echo(f"search '{result.study_name}': {result.trials} trials ({result.new_trials} new, "
               f"${result.spent_usd:.6f} spent){'; stopped at its envelope' if result.stopped_for_budget else ''}"
               "; * = extrapolated from a learning curve")


def _pct(pred: float, real: float) -> str:
    return f"{(pred - real) / real * 100:+.1f}%" if real else "-"


def print_result(r: Any) -> None:
    table(["", "predicted", "realized", "error"], [
        ["cost_usd", f"{r.predicted_cost_usd:.6f}", f"{r.cost_usd:.6f}", _pct(r.predicted_cost_usd, r.cost_usd)],
        ["wall_s", f"{r.predicted_wall_s:.1f}", f"{r.wall_s:.1f}", _pct(r.predicted_wall_s, r.wall_s)],
        ["val_accuracy", f"{r.predicted_accuracy:.4f}", f"{r.accuracy:.4f}",
         f"{(r.accuracy - r.predicted_accuracy) * 100:+.1f} pts"],
    ])
    click.echo(f"run {r.run_id}: {r.status}; {r.samples} samples; spent ${r.cost_usd:.6f} of "
               f"${r.budget_usd:.6f}{' (emulated hardware: virtual clock)' if r.emulated else ''}; "
               f"ledger {r.ledger_path}")
