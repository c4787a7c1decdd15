"""The lab's meter: device time charged to the ledger in ticks, and the envelope guarded before
each unit of work (``paretrain.runtime.money.reserve``: the same reserve rule as a run's).

Every second a measurement keeps a device busy is charged at that device's price under the
``profile`` (or ``search``) stage, in ticks of at most a quarter second; before each unit of
work the meter checks that the spend so far, the time not yet charged and the reserve for the
next unit stay within its envelope, and stops with ``EnvelopeExhausted`` (exit 3) otherwise.

A measurement's first unit has no time of its own to go by (nothing observed yet, and the caller
expects none): it is reserved as ``FIRST_UNIT_S``. Reserving only the bookkeeping's slack there
let a retry with $2.7e-07 of the profile envelope left run a warm-up matrix multiply past it
(by $4.5e-08).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
from torch.utils.data import Dataset

from paretrain.planner.errors import BudgetExhausted
from paretrain.runtime.money.ledger import Ledger
from paretrain.runtime.money.reserve import reserve_s
from paretrain.runtime.train.deadline import Deadline, Overran
from paretrain.runtime.train.trainer import Trainer

__all__ = [
    "FIRST_UNIT_S",
    "Diverged",
    "EnvelopeExhausted",
    "LabMeter",
    "checked_step",
    "checked_value",
    "synchronizer",
    "train_evaluating",
]


#: seconds a measurement's first unit of work (a warm-up, a first step or evaluation) is expected
#: to take when neither the caller nor the meter knows better: first calls into torch pay for
#: lazy set-up, so they take longer than the units after them
FIRST_UNIT_S = 0.1


class EnvelopeExhausted(BudgetExhausted):
    """A measurement stopped at its envelope; ``curve`` holds the evaluations made before it."""

    def __init__(self, message: str, curve: list[tuple[int, float]] | None = None) -> None:
        super().__init__(message)
        self.curve: list[tuple[int, float]] = list(curve or [])


class Diverged(Exception):
    """A measured run met a non-finite training loss or evaluated metric: ``reason`` says which
    and when; ``curve`` holds the evaluations before it."""

    def __init__(self, reason: str, curve: list[tuple[int, float]] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.curve: list[tuple[int, float]] = list(curve or [])


def checked_step(trainer: Trainer, meter: LabMeter, curve: list[tuple[int, float]]) -> float:
    """One metered step; its seconds. A non-finite loss raises ``Diverged`` (with ``curve``)."""
    loss = math.nan

    def step() -> None:
        nonlocal loss
        loss = trainer.step()

    dt = meter.timed(step)
    if not math.isfinite(loss):
        raise Diverged(f"the training loss was {loss} at step {trainer.steps}", curve)
    return dt


def checked_value(trainer: Trainer, curve: list[tuple[int, float]], val: Dataset | None = None) -> float:
    """The target metric evaluated now (on ``val``, a part of the validation set, when given);
    a non-finite one raises ``Diverged`` (with ``curve``)."""
    value = trainer.evaluate(val=val).value
    if not math.isfinite(value):
        raise Diverged(
            f"the evaluated {trainer.metric.name} was {value} at {trainer.samples_seen} samples", curve
        )
    return value


def synchronizer(device: str) -> Callable[[], None]:
    """Waits for the kernels queued on a CUDA device (``local/cuda:I`` or ``cuda:I``); a no-op
    elsewhere. CUDA runs a step's kernels asynchronously: a clock read without waiting times
    the launches, and the work lands on whatever is timed next."""
    kind = device.split("/", 1)[-1]
    if kind.startswith("cuda"):
        return lambda: torch.cuda.synchronize(kind)
    return lambda: None


class LabMeter:
    """Charges device time to the ledger in ticks and guards the envelope before each unit."""

    def __init__(
        self,
        ledger: Ledger | None,
        cap_usd: float,
        price_usd_per_s: float,
        hardware: str,
        what: str,
        tick_s: float = 0.25,
        stage: str = "profile",
    ) -> None:
        self.ledger, self.cap, self.price = ledger, cap_usd, price_usd_per_s
        self.hardware, self.what, self.stage = hardware, what, stage
        self.sync = synchronizer(hardware)
        self.tick_s = tick_s
        self.start = self.last = time.perf_counter()
        self.slowest = 0.0
        self.more: Callable[[float], float] | None = None  # grants more than ``cap`` (the search envelope)
        self.floor_s = 0.0  # the least a unit of work is expected to take (a stall of the machine)
        self.trained_s, self.trained_steps = 0.0, 0  # the training steps of ``train_evaluating``
        #: asked before each unit of work; raises to stop there (a signal: ``runtime.train.signals``)
        self.stop: Callable[[], None] | None = None
        #: a unit of work began since the last charge (``guard``, ``timed``): what ``settle`` charges
        self.active = False
        #: cuts a unit of work still running when the envelope can pay no more (``timed``)
        self.deadline: Deadline | None = None

    def _spent(self) -> float:
        return self.ledger.spent if self.ledger else 0.0

    def guard(self, next_s: float) -> None:
        """Stop (``EnvelopeExhausted``) unless the next unit of work, expected to take about
        ``next_s``, fits the envelope with its reserve; asks ``more`` first when set. ``stop``
        is asked first: what it raises ends the measurement here, the time so far charged."""
        self.active = True
        if self.stop is not None:
            try:
                self.stop()
            except BaseException:
                self.flush()
                raise
        spent = self._spent()
        pending = (time.perf_counter() - self.last) * self.price
        expected = next_s if next_s > 0 or self.slowest > 0 else FIRST_UNIT_S
        nxt = reserve_s(expected, self.slowest, self.floor_s) * self.price
        if spent + pending + nxt > self.cap and self.more is not None:  # ask the envelope for more
            self.cap += self.more(spent + pending + nxt - self.cap)
        if spent + pending + nxt > self.cap:
            self.flush()
            raise EnvelopeExhausted(
                f"{'profiling' if self.stage == 'profile' else 'the search'} stopped at its envelope: spent "
                f"${self._spent():.6g} of ${self.cap:.6g} while measuring {self.what}. To fix: raise "
                f"budget.envelopes.{self.stage}, or measure less"
            )

    def timed(self, work: Callable[[], object], next_s: float = 0.0) -> float:
        """Guard the envelope for ``work`` (expected to take about ``next_s``), do it, observe
        and return its seconds."""
        self.guard(next_s)
        self.active = True
        self.sync()
        t0 = time.perf_counter()
        timer = self._set_deadline(t0)
        try:  # the user's code runs armed; the timer is cleared before the charge below
            (work if timer is None else timer.guarded(work))()
        except BaseException as err:  # a member that raised, a divergence: the time it took is charged
            if timer is not None:
                timer.clear()
            self.flush()
            if isinstance(err, Overran):  # still running when the envelope could pay no more
                raise self._overran() from None
            raise
        if timer is not None:
            timer.clear()
        self.sync()
        dt = time.perf_counter() - t0
        self.observe(dt)
        return dt

    def _set_deadline(self, t0: float) -> Deadline | None:
        """Set ``deadline`` (when there is one, in the main thread) to the moment the envelope's
        rest is spent, less a margin for charging the cut (``paretrain.runtime.train.deadline``)."""
        timer = self.deadline
        if timer is None or not timer.active or self.price <= 0:
            return None
        left_s = (self.cap - self._spent()) / self.price - (t0 - self.last)
        timer.set(t0 + left_s - min(0.01, 0.1 * max(left_s, 0.0)), f"measuring {self.what}")
        return timer

    def _overran(self) -> EnvelopeExhausted:
        where = "profiling" if self.stage == "profile" else "the search"
        return EnvelopeExhausted(
            f"{where} stopped at its envelope: measuring {self.what} was still running when the envelope "
            f"${self.cap:.6g} could pay for no more of it, so it was cut there; spent ${self._spent():.6g}. "
            f"To fix: find what made it that slow, or raise budget.envelopes.{self.stage}"
        )

    def observe(self, step_s: float) -> None:
        self.slowest = max(self.slowest * 0.99, step_s)
        if time.perf_counter() - self.last >= self.tick_s:
            self.flush()

    def settle(self) -> None:
        """Charge the unit of work under way, if one is: one that ended by an exception its own
        code did not catch (a member of the user's workload that raised inside an evaluation).
        A meter whose last unit was charged charges nothing more: the time since is not its own."""
        if self.active:
            self.flush()

    def flush(self) -> None:
        now = time.perf_counter()
        dt = now - self.last
        self.last = now
        self.active = False
        if self.ledger is not None and dt > 0:
            self.ledger.charge(
                self.stage,
                dt * self.price,
                seconds=dt,
                stage=self.stage,
                hardware=self.hardware,
                what=self.what,
            )


def train_evaluating(
    trainer: Trainer,
    meter: LabMeter,
    max_samples: int,
    eval_every: int,
    on_eval: Callable[[int, float, int], bool],
) -> tuple[list[tuple[int, float]], bool]:
    """Metered steps up to ``max_samples``, evaluating every ``eval_every`` samples (and at the
    end); ``on_eval(samples, value, index)`` (the target metric) returning True stops early.
    Returns the curve and whether it stopped early. An ``EnvelopeExhausted`` from the meter
    carries the curve so far; so does ``Diverged``, at a non-finite loss or metric."""
    curve: list[tuple[int, float]] = []
    next_eval = eval_every
    try:
        while trainer.samples_seen < max_samples:
            meter.trained_s += checked_step(trainer, meter, curve)
            meter.trained_steps += 1
            if trainer.samples_seen >= next_eval or trainer.samples_seen >= max_samples:
                next_eval += eval_every * max(1, (trainer.samples_seen - next_eval) // eval_every + 1)
                meter.guard(0.0)
                value = checked_value(trainer, curve)  # the target metric, in its own units
                curve.append((trainer.samples_seen, round(value, 5)))
                if on_eval(trainer.samples_seen, value, len(curve) - 1):
                    return curve, True
    except EnvelopeExhausted as err:
        raise EnvelopeExhausted(str(err), curve) from None
    return curve, False
