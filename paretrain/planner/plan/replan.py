"""Replanning the rest of a run from what the run has seen (the docs: concepts, replanning).

The runtime sends: the candidate's config and level of the target metric, the ideal progress done so far
(samples at the noise-free limit, in units of E_min), a convergence factor (observed samples
needed against the plan's), a step-time factor per offer (observed against planned), the
current price of every offer, the money and time left, the options marked bad, and what to
optimize. The plan file holds the fitted models (``paretrain.planner.plan.fitted``), so the remaining work
is a fresh single-choice ``Problem`` over the remaining stages with the options ``paretrain.planner.program.build``
gave the plan (every offer, precision, batch and worker count), each stage costed by the same
function (``paretrain.planner.program.stagecost``) and solved by the same MILP: cheapest within the deadline and
budget left (``prefer: cost``) or fastest within the budget left (``prefer: time``), then
re-costed as providers bill (``paretrain.planner.program.stagecost.billing_usd``; the hold the run is in counts the
``held_s`` it has already held). The run has started: its provisioning onto its offer is paid,
and a move off it is charged as a move. With nothing changed, a replan at a stage boundary
returns the plan's own remaining schedule: at boundary 0, the plan less that provisioning.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from paretrain.planner.inputs.catalog import Offer
from paretrain.planner.plan.make import stage_plan
from paretrain.planner.plan.plan import Candidate, Plan, StagePlan
from paretrain.planner.program.milp import Formulation
from paretrain.planner.program.problem import Choice, Option, Problem, Schedule, prune_dominated
from paretrain.planner.program.stagecost import (
    Held,
    StageCost,
    billing_usd,
    entry_cost,
    exit_usd,
    option_fits,
    stage_cost,
)

__all__ = ["ReplanRequest", "Replanned", "replan", "stage_ideal_samples"]

_TOL = 1e-9  # relative: a schedule meets a cap it equals up to rounding


@dataclass(frozen=True)
class ReplanRequest:
    current_hardware: str  # where the run is now: moving off it costs the new offer's switch time
    stage_index: int  # the stage the new stages start at
    stages_left: int
    progress_done: float  # ideal samples done (E_min units)
    convergence_factor: float  # observed / planned samples to the same level (>1: slower)
    step_factor: Mapping[str, float]  # offer -> observed / planned step time
    prices_usd_per_h: Mapping[str, float]  # offer -> price now
    budget_left_usd: float
    time_left_s: float
    prefer: str = "cost"  # "cost" | "time"
    bad: frozenset[tuple[str, int]] = field(default_factory=frozenset)  # (offer, batch) to avoid
    held_s: float = 0.0  # seconds the run has held its current offer (its billing hold so far)
    #: offer -> the largest per-worker batch a step fits in its memory, as the run found (out
    #: of memory at twice it): larger ones are not planned there, and this one may be
    batch_cap: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Replanned:
    stages: tuple[StagePlan, ...]  # as ``make_plan`` writes stages: their own cost and time, no moves
    cost_usd: float  # the rest's total: stages, the move off the current offer and between stages, billing
    wall_s: float
    feasible: bool  # within the budget and the deadline left
    reason: str = ""


def stage_ideal_samples(samples: float, batch: int, b_noise: float) -> float:
    """Ideal progress (E_min units) made by ``samples`` at global batch ``batch``."""
    return samples / (1.0 + batch / b_noise)


def replan(plan: Plan, cand: Candidate, req: ReplanRequest, *, solver: str = "highs") -> Replanned:
    """New stages for the rest of ``cand``; ``feasible`` False means even the best schedule
    breaks the budget or the deadline left (the runtime then stops or takes the cheapest)."""
    conv = plan.convergence(cand.config_id, cand.level)
    noise = plan.stage_noise(cand.config_id, cand.level)
    work = max(conv.e_min * req.convergence_factor - req.progress_done, 0.0)
    K = max(1, req.stages_left)
    # B_noise at each new stage's midpoint, on the plan's own curve
    b_noise = [noise.at(req.progress_done + work * (j + 0.5) / K) for j in range(K)]
    records = {(r.hardware, r.precision, r.workers): r for r in plan.step_models(cand.config_id)}
    models = {key: r.model() for key, r in records.items()}
    opts = _options(plan, req, records, models, conv.max_batch)
    if not opts:
        return Replanned((), math.inf, math.inf, False, "no option is left for the remaining work")
    hardware = tuple(dict.fromkeys(o.hardware for o in opts))
    costs = _stage_costs(plan, req, opts, records, models, work / K, b_noise)
    problem = _problem(plan, cand, req, opts, hardware, costs, K)
    sched, feasible, reason = _solve(problem, req, solver)
    if sched is None:
        return Replanned((), math.inf, math.inf, False, "no option is left for the remaining work")
    cfg, fit = plan.config(cand.config_id), conv.fit()
    billing = _billing(problem, sched, req, {o.id: o for o in plan.offers}, records, costs)
    stages = []
    for j, o in enumerate(sched.options):
        opt, c = opts[o], costs[(j, o)]
        key = (opt.hardware, opt.precision, opt.workers)
        stages.append(
            stage_plan(
                req.stage_index + j,
                opt,
                models[key],
                fit,
                cfg,
                samples=c.samples,
                time_s=c.time_s,
                cost_usd=c.cost_usd + billing[j],
                b_noise=b_noise[j],
                instances=records[key].instances,
                step_s=c.step_s,
                eval_s=c.eval_s,
            )
        )
    cost = sched.cost_usd + sum(billing)
    feasible = (
        feasible and cost <= req.budget_left_usd * (1 + _TOL) and sched.wall_s <= req.time_left_s * (1 + _TOL)
    )
    return Replanned(tuple(stages), cost, sched.wall_s, feasible, reason)


def _options(
    plan: Plan,
    req: ReplanRequest,
    records: Mapping[tuple[str, str, int], Any],
    models: Mapping[tuple[str, str, int], Any],
    max_batch: int,
) -> list[Option]:
    """The options the rest may use, in the order ``paretrain.planner.program.build`` gives
    them: every planned (offer, precision, workers) at every batch size of the spec that fits,
    less those marked bad; on an offer whose memory the run found short, only batches up to
    its cap, the cap itself included."""
    offers = {o.id: o for o in plan.offers}
    cap_mb = plan.spec.runtime.max_memory_mb
    opts: list[Option] = []
    for key in _option_order(plan, records):
        cap = req.batch_cap.get(key[0])
        sizes = sorted({*plan.spec.planner.batch_sizes, cap}) if cap else plan.spec.planner.batch_sizes
        for b in sizes:
            opt = Option(key[0], key[1], int(b), key[2])
            if (cap is not None and b > cap) or (opt.hardware, opt.global_batch) in req.bad:
                continue
            if option_fits(opt, models[key], offers[opt.hardware], max_batch, cap_mb):
                opts.append(opt)
    return opts


def _stage_costs(
    plan: Plan,
    req: ReplanRequest,
    opts: list[Option],
    records: Mapping[tuple[str, str, int], Any],
    models: Mapping[tuple[str, str, int], Any],
    work: float,
    b_noise: list[float],
) -> dict[tuple[int, int], StageCost]:
    """(new stage j, option o) -> what ``work`` (ideal samples per stage) costs there, at the
    prices and step-time factors the run has seen."""
    offers = {o.id: o for o in plan.offers}
    runtime = plan.spec.runtime
    costs: dict[tuple[int, int], StageCost] = {}
    for o, opt in enumerate(opts):
        key = (opt.hardware, opt.precision, opt.workers)
        for j in range(len(b_noise)):
            costs[(j, o)] = stage_cost(
                work=work,
                b_noise=b_noise[j],
                option=opt,
                step=models[key],
                offer=offers[opt.hardware],
                instances=records[key].instances,
                storage_bytes=records[key].storage_bytes,
                first=req.stage_index + j == 0,
                eval_every=float(runtime.eval_every_samples),
                ckpt_every=float(runtime.checkpoint_every_s),
                price_usd_per_h=_price(req, offers[opt.hardware]),
                step_factor=req.step_factor.get(opt.hardware, 1.0),
            )
    return costs


def _billing(
    problem: Problem,
    sched: Schedule,
    req: ReplanRequest,
    offers: Mapping[str, Offer],
    records: Mapping[tuple[str, str, int], Any],
    costs: Mapping[tuple[int, int], StageCost],
) -> list[float]:
    """Per new stage, the dollars billing adds (``stagecost.billing_usd``): the hold the run is
    in goes on from ``held_s`` when the first new stage stays on its offer."""
    held = []
    for j, o in enumerate(sched.options):
        opt = problem.options[o]
        prev = problem.options[sched.options[j - 1]].hardware if j else req.current_hardware
        offer = offers[opt.hardware]
        move = entry_cost(offer, _price(req, offer))[0] if opt.hardware != prev else 0.0
        instances = records[(opt.hardware, opt.precision, opt.workers)].instances
        held.append(Held(offer, costs[(j, o)].time_s + move, instances, _price(req, offer)))
    stays = bool(held) and problem.options[sched.options[0]].hardware == req.current_hardware
    return billing_usd(held, req.held_s if stays else 0.0)


def _price(req: ReplanRequest, offer: Offer) -> float:
    return float(req.prices_usd_per_h.get(offer.id, offer.price_usd_per_h))


def _option_order(plan: Plan, records: Mapping[tuple[str, str, int], Any]) -> list[tuple[str, str, int]]:
    """(offer, precision, workers) in the plan's offer order, then precision and workers as
    ``paretrain.planner.program.build`` enumerates them: equal options are then pruned the same way."""
    return [
        key
        for o in plan.offers
        for q in plan.spec.planner.precisions
        for key in sorted((k for k in records if k[0] == o.id and k[1] == q), key=lambda k: k[2])
    ]


def _problem(
    plan: Plan,
    cand: Candidate,
    req: ReplanRequest,
    opts: list[Option],
    hardware: tuple[str, ...],
    costs: Mapping[tuple[int, int], StageCost],
    K: int,
) -> Problem:
    """The single-choice ``Problem`` of the remaining stages. Its first stage starts with a move
    when it is on another offer than the run's now: onto the new offer and off the current one."""
    offers = {o.id: o for o in plan.offers}
    time = np.full((1, K, len(opts)), np.inf)
    cost = np.full((1, K, len(opts)), np.inf)
    samples = np.zeros((1, K, len(opts)))
    for (j, o), c in costs.items():
        samples[0, j, o], time[0, j, o], cost[0, j, o] = c.samples, c.time_s, c.cost_usd
    here = offers.get(req.current_hardware)
    leave = exit_usd(here, plan.models.egress_bytes) if here is not None else 0.0
    for o, opt in enumerate(opts):
        if opt.hardware != req.current_hardware:
            move_s, move_usd = entry_cost(offers[opt.hardware], _price(req, offers[opt.hardware]))
            time[0, 0, o] += move_s
            cost[0, 0, o] += move_usd + leave
    entry = [entry_cost(offers[h], _price(req, offers[h])) for h in hardware]
    hw_index = {h: i for i, h in enumerate(hardware)}
    score = plan.metric.score(cand.level)  # the program's accuracy axis is a score: higher is better
    problem = Problem(
        (Choice(cand.config_id, score),),
        tuple(opts),
        hardware,
        time,
        cost,
        samples,
        np.array([hw_index[o.hardware] for o in opts], dtype=int),
        np.array([e[0] for e in entry]),
        np.array([e[1] for e in entry]),
        np.array([exit_usd(offers[h], plan.models.egress_bytes) for h in hardware]),
        budget_usd=max(req.budget_left_usd, 0.0),
        deadline_s=max(req.time_left_s, 0.0),
        score_floor=score,
        metric=plan.metric,
    )
    return prune_dominated(problem)[0]


def _solve(problem: Problem, req: ReplanRequest, solver: str) -> tuple[Schedule | None, bool, str]:
    """Cheapest within the deadline and budget left (fastest within the budget for ``time``);
    when nothing fits both, the cheapest ignoring the deadline, then ignoring the budget too."""
    f = Formulation(problem, solver, time_limit_s=10.0)
    sched = f.min_time() if req.prefer == "time" else f.min_cost()
    if sched is not None:
        return sched, True, ""
    f.deadline_s = math.inf
    sched = f.min_cost()
    if sched is not None:
        return sched, False, "no schedule fits the budget and the deadline left"
    f.budget_usd = math.inf
    return f.min_cost(), False, "no schedule fits the budget left"
