r"""One stage's samples, seconds and dollars: the cost model of the plan and of every replan.

For a stage of ideal progress W (samples at the noise-free limit: E_min / K when planning)
run with option o = (offer h, precision q, per-worker batch b, workers n), global batch B = n b:

    samples   S  = W (1 + B / B_noise)                  B_noise at the stage's midpoint
    compute   T0 = f (S / B * t(b, n) + S / eval_every * t_eval)
    ckpt      T0 += t_ckpt (c + T0 / ckpt_every)        c = 2 for the run's first stage, else 1
    rework    T  = T0 (1 + rate(h) / 3600 * (ckpt_every / 2 + switch_s(h)))      (spot offers)
    cost      C  = T (instances(h, n) * price(h) + storage(h) * bytes / 1e9 / month)

``t(b, n)`` is the step model (``planner.throughput``: measured or modeled, with the all-reduce
term for n > 1), ``f`` an observed step-time factor (1 when planning), ``price(h)`` the offer's
price per instance (a replan passes the current one). Checkpoints are written once at each
stage's end (and at the run's start) and once every ``ckpt_every`` seconds.

Between stages, moving the run onto offer h costs ``switch_s(h)`` seconds at h's price (free on
local offers) and leaving offer h costs the checkpoint's egress.

>>> from planner.catalog import Offer
>>> from planner.models import StepTimeModel
>>> from planner.problem import Option
>>> from planner.throughput import StepModel, SyncModel
>>> step = StepModel(StepTimeModel(0.01, 0.0, 1, 1024), SyncModel(0.0, 1e15), 0.0, 0.0, False, {})
>>> offer = Offer("x", "test", "cpu", 3.6, memory_gib=1.0)
>>> c = stage_cost(work=1000.0, b_noise=1e9, option=Option("x", "fp32", 100), step=step, offer=offer,
...                instances=1, storage_bytes=0.0, first=False, eval_every=10**9, ckpt_every=1e9)
>>> round(c.samples), round(c.time_s, 6), round(c.cost_usd, 6)
(1000, 0.1, 0.0001)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from planner.catalog import Offer
    from planner.problem import Option
    from planner.throughput import StepModel

__all__ = ["StageCost", "stage_cost", "option_fits", "entry_cost", "exit_usd", "SECONDS_PER_MONTH"]

SECONDS_PER_MONTH = 730.0 * 3600.0


@dataclass(frozen=True, slots=True)
class StageCost:
    """What one stage needs under one option: samples, seconds, dollars, and its step times."""

    samples: float
    time_s: float
    cost_usd: float
    step_s: float  # seconds per step, the factor applied
    eval_s: float  # seconds per evaluation, the factor applied


def stage_cost(*, work: float, b_noise: float, option: "Option", step: "StepModel", offer: "Offer",
               instances: int, storage_bytes: float, first: bool, eval_every: float, ckpt_every: float,
               price_usd_per_h: float | None = None, step_factor: float = 1.0) -> StageCost:
    """The module docstring's stage: ``work`` ideal samples at ``b_noise`` under ``option``."""
    B = option.global_batch
    t_step = step.predict(option.batch_size, option.workers) * step_factor
    t_eval = step.eval_s * step_factor
    s = work * (1.0 + B / b_noise)
    t0 = s / B * t_step + s / eval_every * t_eval
    t0 += step.ckpt_s * ((2 if first else 1) + t0 / ckpt_every)
    rework = offer.interruption_per_h / 3600.0 * (ckpt_every / 2.0 + offer.switch_s)
    t = t0 * (1.0 + rework)
    price_h = offer.price_usd_per_h if price_usd_per_h is None else price_usd_per_h
    store_rate = offer.storage_usd_per_gb_month * (storage_bytes / 1e9) / SECONDS_PER_MONTH
    return StageCost(s, t, t * ((price_h / 3600.0) * instances + store_rate), t_step, t_eval)


def option_fits(option: "Option", step: "StepModel", offer: "Offer", max_batch: int) -> bool:
    """Whether an option may be planned: its global batch was measured to reach the level and
    its per-worker batch fits the offer's memory."""
    if option.global_batch > max_batch:
        return False
    mem = step.memory_at(option.batch_size)
    return mem is None or mem <= offer.memory_gib * 2**30


def entry_cost(offer: "Offer", price_usd_per_h: float | None = None) -> tuple[float, float]:
    """Seconds and dollars to move a run onto ``offer`` between stages (provision and restore
    at its price); moving between local thread counts costs nothing."""
    if offer.local:
        return 0.0, 0.0
    price_h = offer.price_usd_per_h if price_usd_per_h is None else price_usd_per_h
    return offer.switch_s, offer.switch_s * (price_h / 3600.0)


def exit_usd(offer: "Offer", egress_bytes: float) -> float:
    """Dollars to move a run off ``offer``: its checkpoint's egress."""
    return offer.egress_usd_per_gb * (egress_bytes / 1e9)
