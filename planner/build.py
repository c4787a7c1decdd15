"""Fill a ``Problem`` from the spec, the offers and the profile (DESIGN §4-§5).

For choice m = (config c, accuracy level a), stage k of K and option o = (offer h,
precision q, per-worker batch b, workers n) with global batch B = n b:

    samples   S = E_min(c, a) / K * (1 + B / B_noise(c, a, k))
    compute   T0 = S / B * t(b, n) + S / eval_every * t_eval + checkpoints
    rework    T = T0 + T0 / 3600 * rate(h) * (ckpt_every / 2 + switch_s(h))   (spot offers)
    cost      C = T * instances(h, n) * price(h) + storage(h) * T

Checkpoints add their write time: one at each stage's end (and the start) and one every
``runtime.checkpoint_every_s``. ``B_noise(c, a, k)`` follows the measured gradient-noise curve (``planner.models``); ``t(b, n)``
is measured or modeled (``planner.throughput``). An option is absent when its memory does not
fit the device, its global batch is above the largest one measured to reach the level, or it
needs more local threads than the machine has. Options dominated on the same hardware are then
pruned (exactly; ``planner.problem.prune_dominated``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from planner.models import ConvergenceFit, NoiseCurve, fit_convergence, fit_noise_curve, stage_b_noise
from planner.problem import Choice, Option, Problem, ProblemContext, prune_dominated
from planner.profile import worker_counts
from planner.throughput import instances_for, step_models

if TYPE_CHECKING:
    from planner.catalog import Offer
    from planner.profile import Profile
    from planner.space import Config
    from planner.spec import Spec

__all__ = ["build_problem", "fit_all_convergence"]

_SECONDS_PER_MONTH = 730.0 * 3600.0


def fit_all_convergence(spec: "Spec", profile: "Profile",
                        configs: Sequence["Config"]) -> tuple[dict[tuple[str, float], ConvergenceFit], list[str]]:
    """Fit E(B) per (config, level) from the profile's runs (or take the spec's hints)."""
    fits: dict[tuple[str, float], ConvergenceFit] = {}
    notes: list[str] = []
    hints = spec.convergence or {}
    for cfg in configs:
        if cfg.id in hints:
            h = hints[cfg.id]
            fits[(cfg.id, h.accuracy)] = ConvergenceFit(h.e_min, h.b_noise, (), 1 << 30)
            continue
        runs = profile.runs_for(cfg.id)
        for level in spec.target.levels:
            pts = [(r.batch_size, n) for r in runs for a, n in r.reached
                   if abs(a - level) < 1e-9 and n is not None]
            if len(pts) < 2:
                notes.append(f"{cfg.id}: accuracy {level:g} reached at {len(pts)} of {len(runs)} "
                             "measured batch sizes; not planned")
                continue
            fits[(cfg.id, level)] = fit_convergence(pts)
    return fits, notes


def build_problem(spec: "Spec", offers: Sequence["Offer"], profile: "Profile",
                  configs: Sequence["Config"], *, budget_usd: float | None = None,
                  deadline_s: float | None = None, prune: bool = True) -> tuple[Problem, ProblemContext]:
    """The ``Problem`` of the module docstring, with its context for the plan file."""
    K = spec.planner.stages
    fits, notes = fit_all_convergence(spec, profile, configs)
    choices = tuple(Choice(cid, acc) for (cid, acc) in sorted(fits))
    workers = worker_counts(spec.planner.max_workers)
    models = step_models(profile, offers, [c.id for c in configs], spec.planner.precisions, workers)
    options = tuple(Option(o.id, q, b, n) for o in offers for q in spec.planner.precisions
                    for n in workers for b in spec.planner.batch_sizes
                    if any((o.id, c.id, q, n) in models for c in configs))
    hardware = tuple(o.id for o in offers)
    offer_of = {o.id: o for o in offers}
    hw_index = {h: i for i, h in enumerate(hardware)}
    curves: dict[str, NoiseCurve] = {}
    for cfg in configs:
        points = [(n.progress_samples, n.b_simple) for n in profile.noise_for(cfg.id)]
        curve = fit_noise_curve(points)
        if curve is not None:
            curves[cfg.id] = curve
        elif len(points) >= 3:
            notes.append(f"{cfg.id}: the measured gradient noise shows no significant trend along "
                         "training; one B_noise for all stages")
    M, O = len(choices), len(options)
    time = np.full((M, K, O), np.inf)
    cost = np.full((M, K, O), np.inf)
    samples = np.zeros((M, K, O))
    eval_every = spec.runtime.eval_every_samples
    ckpt_every = spec.runtime.checkpoint_every_s
    b_noise_stage: dict[tuple[int, int], float] = {}
    instances: dict[int, int] = {}
    for m, ch in enumerate(choices):
        fit = fits[(ch.config_id, ch.accuracy)]
        bn = stage_b_noise(fit.b_noise, curves.get(ch.config_id), fit.e_min, K)
        for k in range(K):
            b_noise_stage[(m, k)] = bn[k]
        for o, opt in enumerate(options):
            model = models.get((opt.hardware, ch.config_id, opt.precision, opt.workers))
            if model is None or opt.global_batch > fit.max_batch:
                continue
            offer = offer_of[opt.hardware]
            mem = model.memory_at(opt.batch_size)
            if mem is not None and mem > offer.memory_gib * 2**30:
                continue
            n_inst = instances_for(offer, opt.workers)
            instances[o] = n_inst
            price = offer.price_usd_per_s * n_inst
            step = model.predict(opt.batch_size, opt.workers)
            store_gb = (_checkpoint_bytes(model.grad_bytes, spec.runtime.keep_checkpoints)
                        + _data_bytes(spec)) / 1e9
            store_rate = offer.storage_usd_per_gb_month * store_gb / _SECONDS_PER_MONTH
            rework = offer.interruption_per_h / 3600.0 * (ckpt_every / 2.0 + offer.switch_s)
            for k in range(K):
                s = fit.e_min / K * (1.0 + opt.global_batch / b_noise_stage[(m, k)])
                t0 = s / opt.global_batch * step + s / eval_every * model.eval_s
                # checkpoints: one at each stage's end (and the run's start), one per interval
                t0 += model.ckpt_s * ((2 if k == 0 else 1) + t0 / ckpt_every)
                t = t0 * (1.0 + rework)
                samples[m, k, o] = s
                time[m, k, o] = t
                cost[m, k, o] = t * (price + store_rate)
    switch_in_s = np.array([0.0 if offer_of[h].local else offer_of[h].switch_s for h in hardware])
    # Moving onto a cloud offer: provisioning and restoring at its price. Leaving one: the
    # checkpoint's egress. Moving between local thread counts costs nothing.
    switch_in_usd = np.array([switch_in_s[i] * offer_of[h].price_usd_per_s for i, h in enumerate(hardware)])
    ckpt_gb = max((_checkpoint_bytes(4.0 * sp.param_count, 1) for sp in profile.steps), default=0.0) / 1e9
    switch_out_usd = np.array([offer_of[h].egress_usd_per_gb * ckpt_gb for h in hardware])
    train_budget = spec.budget.train_usd if budget_usd is None else budget_usd
    problem = Problem(
        choices=choices, options=options, hardware=hardware, time_s=time, cost_usd=cost,
        samples=samples, option_hw=np.array([hw_index[o.hardware] for o in options], dtype=int),
        switch_s=switch_in_s, switch_usd=switch_in_usd, switch_out_usd=switch_out_usd,
        budget_usd=train_budget, deadline_s=spec.deadline_s if deadline_s is None else deadline_s,
        accuracy_floor=spec.target.goal,
    )
    pruned = 0
    if prune:
        problem, pruned = prune_dominated(problem)
    runs = {c.id: {r.batch_size: r.curve for r in profile.runs_for(c.id) if r.curve} for c in configs}
    ctx = ProblemContext(step_models=models, convergence=fits, b_noise_stage=b_noise_stage,
                         noise_curves=curves, instances=instances, notes=tuple(notes), pruned=pruned,
                         curves=runs)
    return problem, ctx


def _checkpoint_bytes(grad_bytes: float, keep: int) -> float:
    # weights + two optimizer slots (Adam), kept ``keep`` times
    return 3.0 * grad_bytes * keep


def _data_bytes(spec: "Spec") -> float:
    if spec.workload.name == "mnist1d":
        return spec.workload.samples * (40 * 4 + 8)
    return 0.0

