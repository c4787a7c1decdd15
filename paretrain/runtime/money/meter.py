"""The meter: run time (real or virtual) and the money it costs, charged to the ledger.

Local offers run on the real clock: a charge covers the real time since the previous charge,
so nothing the hardware was held for escapes the ledger. Emulated offers (catalog offers not
present here) run the real training math on a local device while a *virtual* clock advances
by what that offer would take (the plan's step time, times any scripted slowdown); every such
charge says ``emulated``. Either way the price is integrated exactly over the charged interval
(``paretrain.runtime.money.prices.cost``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from paretrain.runtime.money.ledger import Ledger
from paretrain.runtime.money.prices import PriceSource, cost

__all__ = ["Meter"]


class Meter:
    """Run time ``t`` (seconds since the run began, across resumes) and the ledger it charges."""

    def __init__(self, ledger: Ledger, prices: PriceSource, *, start_t: float = 0.0) -> None:
        self.ledger = ledger
        self.prices = prices
        self.t = start_t
        self.scale = 1  # instances of the offer the current stage rents (an offer's price is per instance)
        self._real = time.perf_counter()

    @property
    def spent(self) -> float:
        return self.ledger.spent

    def real_pending_s(self) -> float:
        """Real seconds since the last charge (what the next real-clock charge will cover)."""
        return time.perf_counter() - self._real

    def pending_usd(self, hardware: str, emulated: bool) -> float:
        return 0.0 if emulated else self.scale * cost(self.prices, hardware, self.t, self.real_pending_s())

    def now(self, emulated: bool) -> float:
        return self.t if emulated else self.t + self.real_pending_s()

    def cost_ahead(self, hardware: str, start: float, seconds: float) -> float:
        return self.scale * cost(self.prices, hardware, start, seconds)

    def charge(
        self,
        kind: str,
        hardware: str,
        *,
        stage: str,
        what: str,
        emulated: bool,
        seconds: float | None = None,
        **extra: Any,
    ) -> float:
        """Charge ``seconds`` of ``hardware`` (virtual) or the real time since the last charge."""
        now = time.perf_counter()
        dt = (now - self._real) if seconds is None else seconds
        self._real = now
        usd = self.scale * cost(self.prices, hardware, self.t, dt)
        if emulated:
            extra["emulated"] = True
        self.ledger.charge(
            kind, usd, seconds=dt, stage=stage, hardware=hardware, what=what, t_run=round(self.t, 6), **extra
        )
        self.t += dt
        return usd

    def step_charger(self, hardware: str, stage: str, emulated: bool) -> Callable[[float, float, int], float]:
        """A fast per-step charger while the price of ``hardware`` stays at ``price_s`` per second
        (the executor's safe window guarantees it): ``charge(price_s, seconds_or_nan, step)``;
        a NaN ``seconds`` means the real time since the last charge."""
        write = self.ledger.step_writer(stage, hardware, emulated)
        perf = time.perf_counter

        def charge(price_s: float, seconds: float, step: int) -> float:
            now = perf()
            dt = now - self._real if seconds != seconds else seconds
            self._real = now
            usd = price_s * dt
            write(usd, dt, self.t, step)
            self.t += dt
            return usd

        return charge

    def charge_amount(
        self, kind: str, usd: float, hardware: str, *, stage: str, what: str, emulated: bool, **extra: Any
    ) -> float:
        """Charge money that is not time on the hardware (storage, egress); the clock stays."""
        if emulated:
            extra["emulated"] = True
        self.ledger.charge(
            kind, usd, seconds=0.0, stage=stage, hardware=hardware, what=what, t_run=round(self.t, 6), **extra
        )
        return usd

    def wait(self, hardware: str, seconds: float, *, stage: str, emulated: bool) -> None:
        """Let ``seconds`` of run time pass without holding the hardware (nothing charged here:
        the caller charges storage for the wait)."""
        if not emulated and seconds > 0:
            time.sleep(seconds)
        self.t += max(seconds, 0.0)
        self._real = time.perf_counter()

    def skip_real(self) -> None:
        """Forget real time spent outside the run's account (e.g. the real math of an emulated
        step, which the virtual clock charges instead)."""
        self._real = time.perf_counter()

    def event(self, name: str, hardware: str, stage: str, **data: Any) -> None:
        self.ledger.charge(
            "event", 0.0, stage=stage, hardware=hardware, event=name, t_run=round(self.t, 6), **data
        )
