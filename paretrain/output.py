"""What the planning commands show: plans, profiles and searches (runs, comparisons, ledgers and
tracking: ``paretrain.run_output``).

Each ``show_*`` prints for people in table format and fills the JSON record in ``--format
json`` (see ``paretrain.console.Output``). Scripts read some of these lines (the Pareto table,
``plan ... written to``, the predicted/realized table): keep their words stable.
"""

from __future__ import annotations

from typing import Any

from paretrain.console import Output, usd

__all__ = [
    "show_fits",
    "show_plan",
    "show_plan_written",
    "show_profile",
    "show_profile_cost",
    "show_search",
]


def show_profile(ui: Output, prof: Any, reused: bool, where: Any = None) -> None:
    ui.put(
        "profile",
        {
            "key": prof.key,
            "reused": reused,
            "spend_usd": prof.spend_usd,
            "checkpoints": [c.path for c in getattr(prof, "checkpoints", ())],
            **({"path": str(where)} if where is not None else {}),
        },
    )
    if where is not None:
        ui.line(f"profile {prof.key} ({'reused' if reused else 'measured'}, ${usd(prof.spend_usd)}): {where}")
    else:
        ui.line(f"profile {prof.key}: {'reused' if reused else 'measured'} (${usd(prof.spend_usd)})")


def show_diverged(ui: Output, prof: Any) -> None:
    """One line on stderr per config whose convergence run diverged while profiling."""
    for cid, why in prof.diverged().items():
        ui.line(f"paretrain: {cid} diverged while profiling ({why}): marked failed, not planned", err=True)


def knowing(profile_usd: float, run_usd: float, start: Any) -> dict[str, float]:
    """The profile's cost against a run's, two ways.

    ``share`` is the profile's whole spend over the run's. When the run starts from the
    profile's checkpoint (``start``, a ``StartFrom``), part of the profile's spend trained the
    run's first samples (``start.trained_usd``): training the run would have paid for anyway, so
    the price of knowing is what is left, ``knowing_usd = profile - trained``, and the run's whole
    training is ``training_usd = run + trained``. ``knowing_share`` is the one over the other
    (equal to ``share`` for a run from scratch). Both are shown: neither hides the other."""
    trained = float(start.trained_usd) if start is not None else 0.0
    trained = min(trained, profile_usd)
    know, training = profile_usd - trained, run_usd + trained
    return {
        "profile_usd": profile_usd,
        "run_usd": run_usd,
        "share": profile_usd / run_usd if run_usd > 0 else float("inf"),
        "reused_usd": trained,
        "knowing_usd": know,
        "training_usd": training,
        "knowing_share": know / training if training > 0 else float("inf"),
    }


def knowing_line(k: dict[str, float], samples: int, whose: str) -> str:
    """``knowing``'s second figure as a line (empty when the run reuses nothing)."""
    if k["reused_usd"] <= 0:
        return ""
    return (
        f"of it, ${usd(k['reused_usd'])} trained {whose} first {samples} samples (reused, not paid twice): "
        f"knowing cost ${usd(k['knowing_usd'])} = {k['knowing_share']:.0%} of {whose} whole training "
        f"(${usd(k['training_usd'])})"
    )


def show_profile_cost(ui: Output, prof: Any, reused: bool, plan: Any) -> None:
    """What the profile cost against what the plan's knee is predicted to cost (the profile's
    budget is ``planner.profile_fraction`` of it; ``paretrain.planner.measure.budgeted``); with a
    knee that starts from the profile's checkpoint, what knowing cost net of that start
    (``knowing``)."""
    knee = plan.candidate("knee")
    k = knowing(prof.spend_usd, knee.cost_usd, knee.start)
    share = k["share"]
    truncated = dict(prof.notes).get("truncated") or {}
    record = {
        "spend_usd": prof.spend_usd,
        "knee_cost_usd": knee.cost_usd,
        "share": share,
        "profile_fraction": plan.spec.planner.profile_fraction,
        "convergence": plan.spec.planner.convergence,
        "reused": reused,
        "knee_reused_samples": knee.reused_samples,
        "reused_usd": k["reused_usd"],
        "knowing_usd": k["knowing_usd"],
        "knowing_share": k["knowing_share"],
    }
    ui.put("profile_cost", record)
    how = (
        f"truncated runs, {truncated.get('rounds')} round{'s' if truncated.get('rounds') != 1 else ''}: "
        f"{truncated.get('stopped')}"
        if truncated
        else f"planner.convergence: {plan.spec.planner.convergence}"
    )
    ui.line(
        f"profile ${usd(prof.spend_usd)} = {share:.0%} of the knee's predicted ${usd(knee.cost_usd)}"
        f"{' (reused: paid before)' if reused else ''}; {how}"
    )
    if knee.start is not None:
        ui.line(
            f"the knee's run starts from the profile's checkpoint at {knee.start.samples} samples "
            "(not paid twice: its prediction counts only the samples left)"
        )
        if line := knowing_line(k, knee.start.samples, "the knee's"):
            ui.line(line)


def show_fits(ui: Output, plan: Any) -> None:
    conv: dict[str, dict[str, dict[str, Any]]] = {}
    for c in plan.models.convergence:
        conv.setdefault(c.config_id, {})[f"{c.level:g}"] = {
            "e_min": c.e_min,
            "b_noise": c.b_noise,
            "points": [list(p) for p in c.points],
        }
    ui.put("convergence", conv)
    for cid, levels in conv.items():
        parts = [f"{lv}: E_min={d['e_min']:.0f} B_noise={d['b_noise']:.0f}" for lv, d in levels.items()]
        ui.line(f"convergence {cid}: " + "; ".join(parts))


def _marks(plan: Any, cid: str) -> list[str]:
    return [
        v
        for k, v in ((plan.cheapest, "cheapest"), (plan.chosen, "knee"), (plan.fastest, "fastest"))
        if k == cid
    ]


def _span(iv: Any, fmt: str) -> str:
    return "-" if iv is None else f"{iv.p10:{fmt}}-{iv.p90:{fmt}}"


def show_plan(ui: Output, plan: Any) -> None:
    """The Pareto table (point predictions and P10-P90), the solver line and the plan's notes.
    Its level column is titled by the target metric (``val_accuracy``, ``val_bpb``)."""
    metric = plan.metric.name
    ui.put("candidates", [_candidate_record(plan, c) for c in plan.candidates])
    ui.put("chosen", plan.chosen)
    ui.put("solver", dict(plan.solver))
    ui.put("notes", list(plan.notes))
    ui.table(
        ["id", "config", metric, "cost_usd", "cost P10-P90", "wall_s", "wall P10-P90", "stages", ""],
        _pareto_rows(plan),
    )
    how = (
        "exact front by label-setting over stages (no MILP needed)"
        if plan.solver.get("method") == "paths"
        else f"{plan.solver.get('name')}, {plan.solver.get('solves')} solves"
    )
    n = len(plan.candidates)
    ui.line(f"solver: {how} ({plan.solver.get('status')}); {n} Pareto candidate{'s' if n != 1 else ''}")
    if any(_extrapolated(plan, c) for c in plan.candidates):
        ui.line(f"~: {metric} extrapolated from a truncated run's learning curve (see the notes)")
    for note in plan.notes:
        ui.line(f"note: {note}")


def _extrapolated(plan: Any, c: Any) -> bool:
    """Whether the candidate's level lies beyond its config's truncated run (marked ``~``)."""
    try:
        return bool(plan.models.convergence_of(c.config_id, c.level).extrapolated)
    except (KeyError, LookupError):
        return False


def _level_text(level: float, metric: str) -> str:
    """A level as the table shows it: two decimals for an accuracy, three for another metric,
    more when those would show a different level (0.985 is not "0.98"; 0.0005 is not "0.001")."""
    text = f"{level:.2f}" if metric == "val_accuracy" else f"{level:.3f}"
    return text if float(text) == level else f"{level:g}"


def _pareto_rows(plan: Any) -> list[list[str]]:
    rows = []
    budget = plan_budget(plan)
    for c in plan.candidates:
        stages = " | ".join(f"{s.hardware.split('/')[-1]} b{s.batch_size}" for s in c.stages)
        marks = _marks(plan, c.id)
        if budget is not None and c.cost_interval is not None and c.cost_interval.p90 > budget:
            marks.append("P90>budget")
        rows.append(
            [
                c.id,
                c.config_id,
                _level_text(c.level, plan.metric.name) + ("~" if _extrapolated(plan, c) else ""),
                usd(c.cost_usd),
                "-" if c.cost_interval is None else f"{usd(c.cost_interval.p10)}-{usd(c.cost_interval.p90)}",
                f"{c.wall_s:.1f}",
                _span(c.wall_interval, ".1f"),
                stages,
                ",".join(marks),
            ]
        )
    return rows


def _candidate_record(plan: Any, c: Any) -> dict[str, Any]:
    """A candidate in ``plan --format json``: ``level`` in the units of ``metric``."""
    return {
        "id": c.id,
        "config": c.config_id,
        "level": c.level,
        "metric": plan.metric.name,
        "cost_usd": c.cost_usd,
        "wall_s": c.wall_s,
        "marks": _marks(plan, c.id),
        "cost_usd_interval": c.cost_interval.to_dict() if c.cost_interval else None,
        "wall_s_interval": c.wall_interval.to_dict() if c.wall_interval else None,
        "p_reach": c.p_reach,
        "stages": [
            {
                "hardware": s.hardware,
                "precision": s.precision,
                "batch_size": s.batch_size,
                "workers": s.workers,
                "samples": s.samples,
            }
            for s in c.stages
        ],
    }


def show_plan_written(ui: Output, plan: Any, path: Any, png: Any) -> None:
    ui.put("plan", str(path))
    ui.put("fingerprint", plan.fingerprint)
    ui.put("plot", str(png))
    ui.line(f"plan {plan.fingerprint} written to {path}; plot {png}")


def show_search(ui: Output, result: Any) -> None:
    def params(c: Any) -> str:
        return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in c.params)

    rows = [
        [
            str(info["trial"]),
            c.family,
            params(c),
            c.optimizer,
            f"{c.lr:.2g}",
            f"{info['value']:.3f}" + ("*" if info["extrapolated"] else ""),
            f"{info['cost_usd']:.7f}",
            f"{info['latency_ms']:.3f}" if info["latency_ms"] < 1e9 else "-",  # not measured: money ran out
        ]
        for c, info in result.front
    ]
    ui.put(
        "search",
        {
            "study": result.study_name,
            "trials": result.trials,
            "new_trials": result.new_trials,
            "spent_usd": result.spent_usd,
            "stopped_for_budget": result.stopped_for_budget,
            "front": [{**c.to_dict(), **dict(info)} for c, info in result.front],
        },
    )
    metric = result.front[0][1].get("metric", "val_accuracy") if result.front else "val_accuracy"
    ui.table(["trial", "family", "params", "opt", "lr", metric, "cost_usd", "latency_ms"], rows)
    ui.line(
        f"search '{result.study_name}': {result.trials} trials ({result.new_trials} new, "
        f"${usd(result.spent_usd)} spent){'; stopped at its envelope' if result.stopped_for_budget else ''}"
        "; * = extrapolated from a learning curve"
    )


def plan_budget(plan: Any) -> float | None:
    """The plan's training budget (from its spec), for marking candidates whose P90 passes it."""
    spec = getattr(plan, "spec", None)
    return None if spec is None else float(spec.budget.train_usd)
