"""Training steps and their charges: one fully checked step, or a run of steps inside a safe
window (``paretrain.runtime.run.guard.Window``) with nothing but training and the per-step charge.

Both do the same work on the run state; the fast path keeps the bookkeeping in locals
(``benchmarks/runtime_overhead.py`` measures it). On a local offer a scripted slowdown holds
the hardware that much longer; on an emulated offer the virtual clock charges the plan's step
time times the slowdown.
"""

from __future__ import annotations

import math
import time
from typing import Any

from paretrain.runtime.money.prices import PriceSource
from paretrain.runtime.run.account import Account
from paretrain.runtime.run.guard import Window
from paretrain.runtime.run.state import RunState

__all__ = ["checked_step", "window_steps"]


def checked_step(
    state: RunState, trainer: Any, account: Account, prices: PriceSource, window: Window | None
) -> bool:
    """One step, charged; returns False when it was slower than ``window`` assumed (close it)."""
    meter, emu = account.meter, account.setup.emulated(state.hw)
    t_before, usd_before = meter.t, meter.ledger.spent
    slow = window.slow if window is not None else prices.slowdown(state.hw, meter.now(emu))
    if emu and state.form_s > 0:  # the stage's group forms first (reserved with the step)
        account.charge(state, "compute", "rendezvous", seconds=state.form_s)
        state.form_s = 0.0
    t0 = time.perf_counter()
    state.loss = trainer.step()
    real = time.perf_counter() - t0
    keep = True
    if emu:
        seconds = state.stage.step_s * slow
    else:
        seconds = math.nan  # the real time since the last charge
        if slow > 1.0:  # a scripted slowdown on a local device: hold it that much longer
            time.sleep(real * (slow - 1.0))
        state.compute_s += real
        state.compute_steps += 1
        state.slowest = max(state.slowest * 0.995, real)
        keep = window is None or state.slowest <= window.slowest
    if window is not None:
        window.charger(window.price_s, seconds, trainer.steps)
    else:
        account.charge(
            state, "compute", "train", seconds=None if seconds != seconds else seconds, step=trainer.steps
        )
    state.advance(trainer.batch_size, trainer.batch_size)
    state.busy_s += meter.t - t_before
    state.busy_usd += meter.ledger.spent - usd_before
    return keep


def window_steps(
    state: RunState,
    trainer: Any,
    account: Account,
    window: Window,
    *,
    stage_left: int,
    max_samples: int,
    ckpt_at: float,
) -> bool:
    """Steps until anything else is due (window end, spend threshold, stage end, evaluation,
    checkpoint, ``max_samples``, a step slower than the window assumed). Returns False when
    the window must close."""
    meter, emu = account.meter, account.setup.emulated(state.hw)
    step, perf, charge = trainer.step, time.perf_counter, window.charger
    price, until, spend, slow, limit = window.price_s, window.until, window.spend, window.slow, window.slowest
    batch, eval_at = trainer.batch_size, state.next_eval
    virtual_s = state.stage.step_s * slow
    slowest = state.slowest
    done, compute = 0, 0.0
    spent = start_spent = meter.ledger.spent  # then a running float: the window's margin dwarfs its rounding
    t_start = meter.t
    while True:
        t0 = perf()
        loss = step()
        real = perf() - t0
        if emu:
            spent += charge(price, virtual_s, trainer.steps)
        else:
            if slow > 1.0:
                time.sleep(real * (slow - 1.0))
            compute += real
            slowest = max(slowest * 0.995, real)
            spent += charge(price, math.nan, trainer.steps)
        done += batch
        now = meter.t if emu else meter.t + meter.real_pending_s()
        if (
            done >= stage_left
            or trainer.samples_seen >= eval_at
            or trainer.samples_seen >= max_samples
            or now >= ckpt_at
            or now >= until
            or slowest > limit
            or spent >= spend
        ):
            break
    state.loss = loss
    state.busy_s += meter.t - t_start
    state.busy_usd += spent - start_spent
    state.advance(done, batch)
    if not emu:
        state.compute_s += compute
        state.compute_steps += done // batch
        state.slowest = slowest
        return slowest <= limit
    return True
