"""Synthetic planning problems and a brute-force front, for checking the MILP exactly."""

from __future__ import annotations

import itertools
import math

import numpy as np

from paretrain.planner.program.pareto import non_dominated
from paretrain.planner.program.problem import Choice, Option, Problem, Schedule


def random_problem(
    seed: int,
    *,
    choices: int = 3,
    stages: int = 2,
    hardware: int = 2,
    batches: int = 3,
    switch: bool = True,
    absent: float = 0.1,
    budget: float = math.inf,
    deadline: float = math.inf,
) -> Problem:
    """A small random instance with closed-form curves: larger batches run faster per sample
    but need more samples (E = E_min (1 + B / B_noise)); faster hardware costs more."""
    rng = np.random.default_rng(seed)
    accs = np.round(rng.uniform(0.6, 0.95, size=choices), 2)
    chs = tuple(Choice(f"c{m}", float(accs[m])) for m in range(choices))
    bs = [16 * 2**i for i in range(batches)]
    opts = tuple(Option(f"hw{h}", "fp32", b) for h in range(hardware) for b in bs)
    speed = rng.uniform(0.5, 3.0, size=hardware)
    price = speed * rng.uniform(0.6, 1.6, size=hardware) / 3600
    alpha, beta = rng.uniform(1e-3, 3e-3), rng.uniform(1e-5, 5e-5)
    M, K, O = choices, stages, len(opts)
    time = np.full((M, K, O), np.inf)
    samples = np.zeros((M, K, O))
    for m in range(M):
        e_min = rng.uniform(2e4, 1e5) * (1 + 3 * (accs[m] - 0.6))
        for k in range(K):
            b_noise = rng.uniform(50, 400) * (1 + k)
            for o, opt in enumerate(opts):
                if rng.random() < absent:
                    continue
                h = int(opt.hardware[2:])
                s = e_min / K * (1 + opt.batch_size / b_noise)
                samples[m, k, o] = s
                time[m, k, o] = s / opt.batch_size * (alpha + beta * opt.batch_size) / speed[h]
    hw_of = np.array([int(o.hardware[2:]) for o in opts])
    cost = time * price[hw_of][None, None, :]
    sw_t = rng.uniform(1, 20, size=hardware) if switch else np.zeros(hardware)
    sw_c = sw_t * price if switch else np.zeros(hardware)
    out_c = rng.uniform(0, 2e-3, size=hardware) * price * 3600 if switch else np.zeros(hardware)
    return Problem(
        chs,
        opts,
        tuple(f"hw{h}" for h in range(hardware)),
        time,
        cost,
        samples,
        hw_of,
        sw_t,
        sw_c,
        out_c,
        budget_usd=budget,
        deadline_s=deadline,
        score_floor=float(accs.min()),
    )


def brute_force_front(p: Problem) -> list[Schedule]:
    """Every schedule evaluated; the non-dominated feasible ones (sorted like the MILP's)."""
    found = []
    O = len(p.options)
    for m in range(len(p.choices)):
        for opts in itertools.product(range(O), repeat=p.stages):
            s = p.evaluate(m, opts)
            if p.feasible(s):
                found.append(s)
    found.sort(key=lambda s: (s.cost_usd, s.wall_s, -s.score, s.choice, s.options))
    keep = non_dominated([(s.cost_usd, s.wall_s, s.score) for s in found])
    return [found[i] for i in keep]
