"""Synthetic planning instances with closed-form curves, sized for the benchmarks."""

from __future__ import annotations

import numpy as np

from paretrain.planner.program.problem import Choice, Option, Problem


def instance(
    seed: int,
    *,
    configs: int,
    offers: int,
    batches: int,
    precisions: int,
    workers: int,
    stages: int,
    levels: int = 1,
    budget: float = np.inf,
    deadline: float = np.inf,
) -> Problem:
    """configs x levels choices; offers x batches x precisions x workers options; ``stages`` stages.

    Faster offers cost more per hour; bf16 is faster on offers that support it; more workers
    add an all-reduce term; B_noise grows with the stage, so larger batches pay off later."""
    rng = np.random.default_rng(seed)
    chs = tuple(
        Choice(f"c{c}", round(0.7 + 0.05 * lv + 0.01 * c, 3)) for c in range(configs) for lv in range(levels)
    )
    bs = [16 * 2**i for i in range(batches)]
    qs = ["fp32", "bf16"][:precisions]
    ns = [2**i for i in range(workers)]
    opts = tuple(Option(f"o{h}", q, b, n) for h in range(offers) for q in qs for n in ns for b in bs)
    speed = rng.uniform(0.3, 20.0, size=offers)
    price = speed**1.3 * rng.uniform(0.7, 1.4, size=offers) / 3600.0
    bf16 = rng.uniform(1.2, 3.0, size=offers)
    M, K, O = len(chs), stages, len(opts)
    time = np.empty((M, K, O))
    samples = np.empty((M, K, O))
    hw = np.array([int(o.hardware[1:]) for o in opts])
    b = np.array([o.batch_size for o in opts], dtype=float)
    n = np.array([o.workers for o in opts], dtype=float)
    q = np.array([o.precision == "bf16" for o in opts])
    alpha = rng.uniform(1e-3, 3e-3)
    for m, ch in enumerate(chs):
        c = int(ch.config_id[1:])
        e_min = rng.uniform(2e4, 2e5) * (1 + 5 * (ch.score - 0.7))
        beta = rng.uniform(1e-5, 1e-4) * (1 + c)
        for k in range(K):
            b_noise = rng.uniform(100, 300) * (1 + 2 * k / max(1, K - 1))
            s = e_min / K * (1 + b * n / b_noise)
            step = (alpha + beta * b / np.where(q, bf16[hw], 1.0)) / speed[hw] + 2e-4 * (n - 1) * (1 + c)
            samples[m, k] = s
            time[m, k] = s / (b * n) * step
    cost = time * price[hw][None, None, :] * n[None, None, :]
    sw_t = rng.uniform(30, 300, size=offers)
    return Problem(
        chs,
        opts,
        tuple(f"o{h}" for h in range(offers)),
        time,
        cost,
        samples,
        hw,
        sw_t,
        sw_t * price,
        rng.uniform(0, 0.01, size=offers),
        budget_usd=budget,
        deadline_s=deadline,
        score_floor=0.0,
    )
