"""Training steps and their charges: one fully checked step, or a run of steps inside a safe
window (``paretrain.runtime.run.guard.Window``) with nothing but training and the per-step
charge. A non-finite loss (a divergence) or a signal ends a run of steps at once; the executor
decides what follows.

Both do the same work and return it as a ``paretrain.runtime.run.changes.Stepped`` record for
the executor to apply (they only read the run state); the fast path keeps the bookkeeping in
locals (``benchmarks/runtime_overhead.py`` measures it). On a local offer a scripted slowdown holds
the hardware that much longer; on an emulated offer the virtual clock charges the plan's step
time times the slowdown.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from paretrain.runtime.money.prices import PriceSource
from paretrain.runtime.run.account import Account
from paretrain.runtime.run.changes import Stepped
from paretrain.runtime.run.guard import Window
from paretrain.runtime.run.state import RunState
from paretrain.runtime.train.deadline import Deadline, Overran

__all__ = ["checked_step", "timed_evaluation", "window_steps"]


def checked_step(
    state: RunState,
    trainer: Any,
    account: Account,
    prices: PriceSource,
    window: Window | None,
    deadline: Deadline | None = None,
    stop_at: float = math.inf,
) -> tuple[bool, Stepped]:
    """One step, charged. Returns whether ``window`` still holds (False: the step was slower
    than it assumed, close it) and the step done. A step still running at ``stop_at`` is
    stopped there by ``deadline`` (``Overran``)."""
    meter, emu = account.meter, account.setup.emulated(state.hw)
    t_before, usd_before = meter.t, meter.ledger.spent
    slow = window.slow if window is not None else prices.slowdown(state.hw, meter.now(emu))
    formed = emu and state.form_s > 0
    if formed:  # the stage's group forms first (reserved with the step)
        account.charge(state, "compute", "rendezvous", seconds=state.form_s)
    t0 = time.perf_counter()
    if deadline is None:
        loss = trainer.step()
    else:
        if t0 >= stop_at:
            raise Overran("a step")
        with deadline.during(stop_at):
            loss = deadline.guarded(trainer.step)()
    real = time.perf_counter() - t0
    slowest: float | None = None
    if emu:
        seconds = state.stage.step_s * slow
    else:
        seconds = math.nan  # the real time since the last charge
        if slow > 1.0:  # a scripted slowdown on a local device: hold it that much longer
            time.sleep(real * (slow - 1.0))
        slowest = max(state.slowest * 0.995, real)
    if window is not None:
        window.charger(window.price_s, seconds, trainer.steps)
    else:
        account.charge(
            state, "compute", "train", seconds=None if seconds != seconds else seconds, step=trainer.steps
        )
    keep = window is None or slowest is None or slowest <= window.slowest
    return keep, Stepped(
        samples=trainer.batch_size,
        batch=trainer.batch_size,
        loss=loss,
        busy_s=meter.t - t_before,
        busy_usd=meter.ledger.spent - usd_before,
        compute_s=0.0 if emu else real,
        compute_steps=0 if emu else 1,
        slowest=slowest,
        formed=formed,
    )


def timed_evaluation(trainer: Any, timer: Deadline | None, stop_at: float) -> Any:
    """``trainer.evaluate()``, cut by ``timer`` (``Overran``) if still running at ``stop_at``."""
    if timer is None:
        return trainer.evaluate()
    with timer.during(stop_at, "an evaluation"):
        return timer.guarded(trainer.evaluate)()


def window_steps(
    state: RunState,
    trainer: Any,
    account: Account,
    window: Window,
    *,
    stage_left: int,
    max_samples: int,
    ckpt_at: float,
    signals: Any = None,
    on_fault: Callable[[Stepped], None] | None = None,
    deadline: Deadline | None = None,
) -> tuple[bool, Stepped]:
    """Steps until anything else is due (window end, spend threshold, stage end, evaluation, checkpoint,
    ``max_samples``, a step slower than the window assumed, a non-finite loss, ``signals.received``).
    Returns whether the window still holds (False: close it) and the steps done. A step that
    raises, or that ``deadline`` cuts (``Overran``), hands the steps before it to ``on_fault``."""
    meter, emu = account.meter, account.setup.emulated(state.hw)
    perf, charge = time.perf_counter, window.charger
    step = trainer.step if deadline is None else deadline.guarded(trainer.step)
    price, until, spend, slow, limit = window.price_s, window.until, window.spend, window.slow, window.slowest
    batch, due = trainer.batch_size, min(state.next_eval, max_samples)  # an evaluation, or the limit
    ends = min(ckpt_at, until)  # a checkpoint, or the window's end
    done, compute, slowest = 0, 0.0, state.slowest
    spent = start_spent = meter.ledger.spent  # then a running float: the window's margin dwarfs its rounding
    t_start = meter.t
    finite, loss = math.isfinite, math.nan
    while True:
        t0 = perf()
        try:  # past its moment the timer fires every REPEAT_S: a step begun then is cut at once
            loss = step()
        except BaseException:  # out of memory, a member that raised, a cut: the steps before it count
            if done and on_fault is not None:
                on_fault(
                    _stepped(emu, done, batch, loss, meter.t - t_start, spent - start_spent, compute, slowest)
                )
            raise
        real = perf() - t0
        if emu:
            spent += charge(price, state.stage.step_s * slow, trainer.steps)
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
            or trainer.samples_seen >= due
            or now >= ends
            or slowest > limit
            or spent >= spend
            or not finite(loss)
            or (signals is not None and signals.received)
        ):
            break
    busy_s, busy_usd = meter.t - t_start, spent - start_spent
    return emu or slowest <= limit, _stepped(emu, done, batch, loss, busy_s, busy_usd, compute, slowest)


def _stepped(
    emu: bool,
    done: int,
    batch: int,
    loss: float,
    busy_s: float,
    busy_usd: float,
    compute: float,
    slowest: float,
) -> Stepped:
    """The record of ``done`` samples of a window's steps at ``batch``."""
    return Stepped(
        samples=done,
        batch=batch,
        loss=loss,
        busy_s=busy_s,
        busy_usd=busy_usd,
        compute_s=0.0 if emu else compute,
        compute_steps=0 if emu else done // batch,
        slowest=None if emu else slowest,
    )
