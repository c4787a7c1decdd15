"""Replanning the rest of a run from what the run has seen (DESIGN §6).

The runtime sends: the candidate's config and accuracy level, the ideal progress done so far
(samples at the noise-free limit, in units of E_min), a convergence factor (observed samples
needed against the plan's), a step-time factor per offer (observed against planned), the
current price of every offer, the money and time left, the options marked bad, and what to
optimize. The plan file holds the fitted models (step time per offer, E(B) per level, the
gradient-noise curve), so the remaining work is a fresh single-choice ``Problem`` over the
remaining stages, solved by the same MILP: cheapest within the deadline and budget left
(``prefer: cost``) or fastest within the budget left (``prefer: time``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from planner.milp import Formulation
from planner.models import NoiseCurve
from planner.plan import Candidate, Plan, StagePlan
from planner.problem import Choice, Option, Problem

__all__ = ["ReplanRequest", "Replanned", "replan", "stage_ideal_samples"]


@dataclass(frozen=True)
class ReplanRequest:
    current_hardware: str  # where the run is now: moving off it costs the new offer's switch time
    stage_index: int  # the stage the new stages start at
    stages_left: int
    progress_done: float  # ideal samples done (E_min units)
    convergence_factor: float  # observed / planned samples to the same accuracy (>1: slower)
    step_factor: Mapping[str, float]  # offer -> observed / planned step time
    prices_usd_per_h: Mapping[str, float]  # offer -> price now
    budget_left_usd: float
    time_left_s: float
    prefer: str = "cost"  # "cost" | "time"
    bad: frozenset[tuple[str, int]] = field(default_factory=frozenset)  # (offer, batch) to avoid


@dataclass(frozen=True)
class Replanned:
    stages: tuple[StagePlan, ...]
    cost_usd: float
    wall_s: float
    feasible: bool  # within the budget and the deadline left
    reason: str = ""


def stage_ideal_samples(samples: float, batch: int, b_noise: float) -> float:
    """Ideal progress (E_min units) made by ``samples`` at global batch ``batch``."""
    return samples / (1.0 + batch / b_noise)


def _curve(plan: Plan, config_id: str) -> NoiseCurve | None:
    d = plan.models.get("noise", {}).get(config_id)
    if not d:
        return None
    return NoiseCurve(d["log_a"], d["slope"], int(d["progress_range"][0]), int(d["progress_range"][1]))


def replan(plan: Plan, cand: Candidate, req: ReplanRequest, *, solver: str = "highs") -> Replanned:
    """New stages for the rest of ``cand``; ``feasible`` False means even the best schedule
    breaks the budget or the deadline left (the runtime then stops or takes the cheapest)."""
    spec: Mapping[str, Any] = plan.spec
    level = f"{cand.accuracy:g}"
    conv = plan.models["convergence"][cand.config_id][level]
    e_min = float(conv["e_min"]) * req.convergence_factor
    b_fit = float(conv["b_noise"])
    max_batch = max((b for b, _ in conv.get("points", [])), default=1 << 30)
    work = max(e_min - req.progress_done, 0.0)
    K = max(1, req.stages_left)
    curve = _curve(plan, cand.config_id)
    # B_noise along the remaining progress, from the same curve the plan used (harmonic mean
    # of the whole run kept at the fitted value)
    if curve is not None and b_fit < 1e9:
        full = [curve.at(float(conv["e_min"]) * (j + 0.5) / 8) for j in range(8)]
        scale = b_fit * float(np.mean([1.0 / v for v in full]))
        b_noise = [min(curve.at(req.progress_done + work * (j + 0.5) / K) * scale, 1e9) for j in range(K)]
    else:
        b_noise = [b_fit] * K
    eval_every = int(spec["runtime"]["eval_every_samples"])
    models = plan.models.get("step_time", {})
    offers = {o.id: o for o in plan.offers}
    opts: list[Option] = []
    for key in sorted(models):
        h, cid, q = key.split("|")
        if cid != cand.config_id or h not in offers:
            continue
        for b in spec["planner"]["batch_sizes"]:
            if b <= max_batch and (h, b) not in req.bad:
                opts.append(Option(h, q, int(b), 1))
    if not opts:
        return Replanned((), math.inf, math.inf, False, "no option is left for the remaining work")
    hardware = tuple(dict.fromkeys(o.hardware for o in opts))
    time = np.full((1, K, len(opts)), np.inf)
    cost = np.full((1, K, len(opts)), np.inf)
    samples = np.zeros((1, K, len(opts)))
    steps_s = {}
    for o, opt in enumerate(opts):
        m = models[f"{opt.hardware}|{cand.config_id}|{opt.precision}"]
        factor = req.step_factor.get(opt.hardware, 1.0)
        step = (m["alpha_s"] + m["beta_s"] * opt.batch_size) * factor
        steps_s[o] = (step, m["eval_s"] * factor)
        price = req.prices_usd_per_h.get(opt.hardware, offers[opt.hardware].price_usd_per_h) / 3600.0
        for k in range(K):
            s = work / K * (1.0 + opt.batch_size / b_noise[k])
            t = s / opt.batch_size * step + s / eval_every * m["eval_s"] * factor
            t += m.get("ckpt_s", 0.0) * (1 + t / float(spec["runtime"]["checkpoint_every_s"]))
            samples[0, k, o], time[0, k, o], cost[0, k, o] = s, t, t * price
    # the first new stage starts with a move when it is on another offer than the run's now
    for o, opt in enumerate(opts):
        if opt.hardware != req.current_hardware and not offers[opt.hardware].local:
            move = offers[opt.hardware].switch_s
            price = req.prices_usd_per_h.get(opt.hardware, offers[opt.hardware].price_usd_per_h) / 3600.0
            time[0, 0, o] += move
            cost[0, 0, o] += move * price
    hw_index = {h: i for i, h in enumerate(hardware)}
    switch_s = np.array([0.0 if offers[h].local else offers[h].switch_s for h in hardware])
    switch_usd = np.array([switch_s[i] * req.prices_usd_per_h.get(h, offers[h].price_usd_per_h) / 3600.0
                           for i, h in enumerate(hardware)])
    problem = Problem((Choice(cand.config_id, cand.accuracy),), tuple(opts), hardware, time, cost, samples,
                      np.array([hw_index[o.hardware] for o in opts]), switch_s, switch_usd,
                      budget_usd=max(req.budget_left_usd, 0.0), deadline_s=max(req.time_left_s, 0.0),
                      accuracy_floor=0.0)
    f = Formulation(problem, solver, time_limit_s=10.0)
    sched = f.min_time() if req.prefer == "time" else f.min_cost()
    feasible = sched is not None
    reason = ""
    if sched is None:  # nothing fits both: the cheapest schedule, ignoring the deadline
        f.deadline_s = math.inf
        sched = f.min_cost()
        reason = "no schedule fits the budget and the deadline left"
        if sched is None:
            f.budget_usd = math.inf
            sched = f.min_cost()
            reason = "no schedule fits the budget left"
    assert sched is not None  # with both caps lifted any option is a schedule
    stages = []
    cfg = plan.config(cand.config_id)
    for j, o in enumerate(sched.options):
        opt = opts[o]
        s = float(samples[0, j, o])
        n_steps = max(1, math.ceil(s / opt.batch_size - 1e-9))
        stages.append(StagePlan(
            index=req.stage_index + j, hardware=opt.hardware, precision=opt.precision,
            batch_size=opt.batch_size, workers=1, samples=n_steps * opt.batch_size, steps=n_steps,
            lr=float(f"{cfg.lr_at(opt.batch_size):.6g}"), cost_usd=float(cost[0, j, o]),
            wall_s=float(time[0, j, o]), b_noise=round(b_noise[j], 3),
            modeled=bool(models[f"{opt.hardware}|{cand.config_id}|{opt.precision}"].get("modeled")),
            spot=opt.hardware.endswith(":spot"), step_s=float(f"{steps_s[o][0]:.6g}"),
            eval_s=float(f"{steps_s[o][1]:.6g}")))
    feasible = feasible and sched.cost_usd <= req.budget_left_usd and sched.wall_s <= req.time_left_s
    return Replanned(tuple(stages), sched.cost_usd, sched.wall_s, feasible, reason)
