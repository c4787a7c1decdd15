"""Building a plan from the solver's Pareto schedules: candidates, their stages, the models.

Each schedule is re-costed as its providers bill (``paretrain.planner.program.stagecost.bill_front``),
turned into a ``Candidate`` at its level of the target metric with its prediction intervals
(``paretrain.planner.measure.uncertainty``), and offered as ``paretrain.planner.plan.choices``
decides; ``stage_plan`` writes one stage the way the plan and every replan do.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from paretrain.planner.inputs.catalog import Offer
from paretrain.planner.inputs.metric import ACCURACY, Metric
from paretrain.planner.inputs.space import Config
from paretrain.planner.inputs.spec import Spec
from paretrain.planner.measure.uncertainty import (
    MODELED_SPREAD,
    StageDraw,
    candidate_intervals,
    convergence_spread,
)
from paretrain.planner.plan.choices import filter_by_confidence, merge_overlapping, renumber
from paretrain.planner.plan.fitted import (
    ConvergenceRecord,
    LearningCurveRecord,
    NoiseCurveRecord,
    PlanModels,
    StepModelRecord,
)
from paretrain.planner.plan.left_out import left_out_notes
from paretrain.planner.plan.plan import Candidate, Plan, StagePlan
from paretrain.planner.plan.plan_body import figure
from paretrain.planner.program.pareto import knee_index
from paretrain.planner.program.reuse import stage_work
from paretrain.planner.program.stagecost import bill_front

if TYPE_CHECKING:
    from paretrain.planner.measure.fits import ConvergenceFit
    from paretrain.planner.measure.throughput import StepModel
    from paretrain.planner.program.milp import Front
    from paretrain.planner.program.problem import Option, Problem, ProblemContext, Schedule

__all__ = ["make_plan", "stage_plan"]


def make_plan(
    *,
    spec: Spec,
    profile_key: str,
    problem: Problem,
    ctx: ProblemContext,
    front: Front,
    configs: Sequence[Config],
    offers: Sequence[Offer],
    solver: str,
) -> Plan:
    """Turn the solver's Pareto schedules into candidates, ids ordered by cost. Each schedule is
    first re-costed as its providers bill (``paretrain.planner.program.stagecost.bill_front``: increments and
    minimums, applied after the linear solve); a stage's cost includes the billing of the hold
    it ends."""
    cfg = {c.id: c for c in configs}
    metric = spec.target.metric_obj
    billed, bill_notes = bill_front(problem, front.schedules, {o.id: o for o in offers}, ctx.instances)
    billing = {(s.choice, s.options): extra for s, extra in billed}
    scheds = sorted((s for s, _ in billed), key=lambda s: (s.cost_usd, s.wall_s, -s.score))
    width = max(2, len(str(len(scheds))))
    cands = [
        _candidate(f"p{i + 1:0{width}d}", s, billing[(s.choice, s.options)], problem, ctx, cfg, metric)
        for i, s in enumerate(scheds)
    ]
    cands, offered_notes = _offered(cands, spec, problem)
    points = [(c.cost_usd, c.wall_s, metric.score(c.level)) for c in cands]
    knee = cands[knee_index(points)].id
    cheapest = min(cands, key=lambda c: (c.cost_usd, c.wall_s, -metric.score(c.level))).id
    fastest = min(cands, key=lambda c: (c.wall_s, c.cost_usd, -metric.score(c.level))).id
    used = {c.config_id for c in cands}
    status = "optimal" if front.proven_optimal else "not proven optimal (a solve hit its time limit)"
    return Plan(
        spec_digest=spec.digest,
        profile_key=profile_key,
        spec=spec,
        configs=tuple(cfg[c] for c in sorted(used)),
        offers=tuple(offers),
        candidates=tuple(cands),
        chosen=knee,
        cheapest=cheapest,
        fastest=fastest,
        solver={
            "name": solver if front.method == "milp" else "paths",
            "status": status,
            "solves": front.solves,
            "method": front.method,
        },
        models=_plan_models(ctx, used, metric),
        notes=tuple(ctx.notes)
        + tuple(front.notes)
        + tuple(bill_notes)
        + tuple(offered_notes)
        + tuple(left_out_notes(problem, cands)),
    )


def _candidate(
    ident: str,
    s: Schedule,
    billing: Sequence[float],
    problem: Problem,
    ctx: ProblemContext,
    cfg: dict[str, Config],
    metric: Metric,
) -> Candidate:
    """One schedule as a candidate: its stages (``billing``: the dollars billing adds to each),
    the notes on where the models extrapolate or the run moves, and its intervals."""
    ch = problem.choices[s.choice]
    fit = ctx.convergence[(ch.config_id, ch.score)]
    start = ctx.starts.get(s.choice)
    stages = []
    notes: list[str] = []
    if start is not None:
        notes.append(
            f"stage 0: starts from the profile's checkpoint of {ch.config_id} at {start.samples:,} "
            "samples; the predictions count only the samples still needed"
        )
    for k, o in enumerate(s.options):
        opt = problem.options[o]
        model = ctx.step_models[(opt.hardware, ch.config_id, opt.precision, opt.workers)]
        st = stage_plan(
            k,
            opt,
            model,
            fit,
            cfg[ch.config_id],
            samples=problem.samples[s.choice, k, o],
            time_s=problem.time_s[s.choice, k, o],
            cost_usd=problem.cost_usd[s.choice, k, o] + billing[k],
            b_noise=ctx.b_noise_stage[(s.choice, k)],
            instances=ctx.instances[(opt.hardware, opt.workers)],
            step_s=model.predict(opt.batch_size, opt.workers),
            eval_s=model.eval_s,
        )
        if st.extrapolated:
            notes.append(
                f"stage {k}: batch {opt.batch_size} x {opt.workers} workers is outside the "
                "measured range (extrapolated)"
            )
        if st.modeled:
            notes.append(f"stage {k}: {opt.hardware} step time is modeled, not measured")
        stages.append(st)
        if k and problem.option_hw[o] != problem.option_hw[s.options[k - 1]]:
            notes.append(f"stage {k}: moves to {opt.hardware}")
    return Candidate(
        id=ident,
        config_id=ch.config_id,
        level=metric.level(ch.score),
        cost_usd=figure(s.cost_usd),
        wall_s=figure(s.wall_s),
        stages=tuple(stages),
        notes=tuple(notes),
        start=start,
        **_intervals_of(s, problem, ctx, fit),
    )


def _intervals_of(s: Any, problem: Problem, ctx: ProblemContext, fit: ConvergenceFit) -> dict[str, Any]:
    """A schedule's prediction intervals (``paretrain.planner.measure.uncertainty``)."""
    ch = problem.choices[s.choice]
    # the progress of the checkpoint a choice starts from, shared by its stages as their work is
    done = stage_work(fit.e_min, problem.stages, ctx.starts.get(s.choice))[0] / problem.stages
    draws = []
    for k, o in enumerate(s.options):
        opt = problem.options[o]
        model = ctx.step_models[(opt.hardware, ch.config_id, opt.precision, opt.workers)]
        b_noise = ctx.b_noise_stage[(s.choice, k)]
        draws.append(
            StageDraw(
                opt.hardware,
                opt.global_batch,
                float(problem.samples[s.choice, k, o]),
                float(problem.time_s[s.choice, k, o]),
                float(problem.cost_usd[s.choice, k, o]),
                b_noise,
                MODELED_SPREAD if model.modeled else getattr(model, "spread", 0.0),
                done * (1.0 + opt.global_batch / b_noise),
            )
        )
    fixed_s = s.wall_s - sum(d.time_s for d in draws)
    fixed_usd = s.cost_usd - sum(d.cost_usd for d in draws)
    cost, wall, p_reach, needed = candidate_intervals(
        draws,
        convergence_spread(fit.points, fit.e_min, fit.b_noise, fit.crossing, fit.crossing_dof),
        max(fixed_s, 0.0),
        max(fixed_usd, 0.0),
    )
    return {"cost_interval": cost, "wall_interval": wall, "samples_interval": needed, "p_reach": p_reach}


def _offered(cands: list[Candidate], spec: Spec, problem: Problem) -> tuple[list[Candidate], list[str]]:
    """The candidates a user is offered: within budget and deadline at ``planner.confidence``,
    one of each group within the prediction's spread unless ``planner.exact_front``
    (``paretrain.planner.plan.choices``); ids renumbered by cost."""
    confidence = spec.planner.confidence
    kept, notes = filter_by_confidence(cands, confidence, problem.budget_usd, problem.deadline_s)
    if not kept:  # nothing fits at the quantile: offer the front as it is, and say so
        notes.append(
            f"no candidate fits the budget and deadline at planner.confidence {confidence:g}; "
            "all are listed at their point prediction"
        )
        kept = list(cands)
    if not spec.planner.exact_front:
        kept, merged = merge_overlapping(kept)
        notes += merged
    return renumber(kept), notes


def stage_plan(
    index: int,
    option: Option,
    step: StepModel,
    fit: ConvergenceFit,
    config: Config,
    *,
    samples: float,
    time_s: float,
    cost_usd: float,
    b_noise: float,
    instances: int,
    step_s: float,
    eval_s: float,
) -> StagePlan:
    """One stage as the plan and every replan write it: whole steps, the LR for its global
    batch, the predictions of ``paretrain.planner.program.stagecost`` and where the models extrapolate."""
    per_step = option.global_batch
    steps = max(1, math.ceil(float(samples) / per_step - 1e-9))
    extrap = step.extrapolated(option.batch_size, option.workers) or (
        bool(fit.points) and per_step < min(b for b, _ in fit.points)
    )
    return StagePlan(
        index=index,
        hardware=option.hardware,
        precision=option.precision,
        batch_size=option.batch_size,
        workers=option.workers,
        samples=steps * per_step,
        steps=steps,
        lr=float(f"{config.lr_at(per_step):.6g}"),
        cost_usd=figure(cost_usd),
        wall_s=figure(time_s),
        b_noise=float(f"{b_noise:.6g}"),
        modeled=bool(step.modeled),
        extrapolated=extrap,
        spot=option.hardware.endswith(":spot"),
        instances=int(instances),
        step_s=float(f"{step_s:.6g}"),
        eval_s=float(f"{eval_s:.6g}"),
    )


def _plan_models(ctx: ProblemContext, used: set[str], metric: Metric = ACCURACY) -> PlanModels:
    """The models of the configs the candidates use, every option of theirs included."""
    steps = tuple(
        StepModelRecord.of(key, m, ctx.instances[(key[0], key[3])], ctx.storage_bytes[key])
        for key, m in sorted(ctx.step_models.items())
        if key[1] in used
    )
    conv = []
    for (cid, level), fit in sorted(ctx.convergence.items()):
        if cid in used:
            noise = ctx.stage_noise.get((cid, level))
            scale = noise.scale if noise is not None and noise.curve is not None else None
            conv.append(
                ConvergenceRecord(
                    cid,
                    float(metric.level(level)),
                    float(fit.e_min),
                    float(fit.b_noise),
                    tuple((int(b), int(n)) for b, n in fit.points),
                    int(fit.max_batch),
                    None if scale is None else float(scale),
                    bool(fit.extrapolated),
                )
            )
    noise_curves = tuple(
        NoiseCurveRecord(cid, float(c.a), float(c.slope), int(c.p_min), int(c.p_max))
        for cid, c in sorted(ctx.noise_curves.items())
        if cid in used
    )
    curves = tuple(
        LearningCurveRecord(cid, int(b), tuple((int(n), float(a)) for n, a in curve))
        for cid in sorted(used)
        for b, curve in sorted(ctx.curves.get(cid, {}).items())
    )
    return PlanModels(steps, tuple(conv), noise_curves, curves, float(ctx.egress_bytes), int(ctx.pruned))
