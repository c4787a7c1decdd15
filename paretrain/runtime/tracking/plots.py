"""Plots: the Pareto set of a plan, and predicted against realized runs (PNG, headless)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from paretrain.planner.plan.plan import Plan

__all__ = ["plot_compare", "plot_pareto"]


def plot_pareto(plan: Plan, path: str | Path) -> Path:
    """Cost against wall time of every candidate, coloured by the level of the target metric; the knee starred."""
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    xs = [c.wall_s for c in plan.candidates]
    ys = [c.cost_usd for c in plan.candidates]
    levels = [c.level for c in plan.candidates]
    sc = ax.scatter(xs, ys, c=levels, cmap="viridis", s=46, edgecolors="k", linewidths=0.4, zorder=3)
    for c in plan.candidates:
        ax.annotate(c.id, (c.wall_s, c.cost_usd), textcoords="offset points", xytext=(4, 4), fontsize=7)
    knee = plan.candidate("knee")
    ax.scatter(
        [knee.wall_s],
        [knee.cost_usd],
        marker="*",
        s=260,
        facecolors="none",
        edgecolors="red",
        linewidths=1.4,
        zorder=4,
        label=f"knee ({knee.id})",
    )
    fig.colorbar(sc, ax=ax, label=f"predicted {plan.metric.name}")
    ax.set_xlabel("predicted wall time (s)")
    ax.set_ylabel("predicted cost (USD)")
    ax.set_title(f"Pareto set: {len(plan.candidates)} candidates (plan {plan.fingerprint})", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    return _save(fig, path)


def plot_compare(rows: Sequence[dict], path: str | Path, title: str = "") -> Path:
    """Predicted points (hollow, with P10-P90 error bars where the plan had them) joined to
    realized ones (filled), cost against wall time."""
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for r in rows:
        px, py = r.get("predicted_wall_s"), r.get("predicted_cost_usd")
        rx, ry = r.get("wall_s"), r.get("cost_usd")
        wiv, civ = r.get("predicted_wall_s_interval"), r.get("predicted_cost_usd_interval")
        if px is not None and py is not None and wiv and civ:
            ax.errorbar(
                [px],
                [py],
                xerr=[[max(px - wiv["p10"], 0)], [max(wiv["p90"] - px, 0)]],
                yerr=[[max(py - civ["p10"], 0)], [max(civ["p90"] - py, 0)]],
                fmt="none",
                ecolor="tab:blue",
                alpha=0.5,
                lw=1,
                capsize=3,
                zorder=2,
            )
        if px is not None and py is not None:
            ax.scatter([px], [py], facecolors="none", edgecolors="tab:blue", s=50, zorder=3)
        if rx is not None and ry is not None:
            ax.scatter([rx], [ry], color="tab:orange", s=40, zorder=4)
            if px is not None and py is not None:
                ax.annotate(
                    "",
                    xy=(rx, ry),
                    xytext=(px, py),
                    arrowprops={"arrowstyle": "->", "color": "0.5", "lw": 0.8},
                )
            ax.annotate(
                str(r.get("candidate", "")), (rx, ry), textcoords="offset points", xytext=(4, 4), fontsize=7
            )
    ax.scatter([], [], facecolors="none", edgecolors="tab:blue", label="predicted")
    ax.scatter([], [], color="tab:orange", label="realized")
    ax.set_xlabel("wall time (s)")
    ax.set_ylabel("cost (USD)")
    ax.set_title(title or "predicted against realized", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def _save(fig: plt.Figure, path: str | Path) -> Path:
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
