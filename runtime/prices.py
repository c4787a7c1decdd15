"""Price sources: what an offer costs at a given time, and whether it is available.

``StaticPrices`` uses the plan's prices (catalog or local price) for the whole run.
"""

from __future__ import annotations

from typing import Mapping, Protocol

__all__ = ["PriceSource", "StaticPrices"]


class PriceSource(Protocol):
    def price_usd_per_h(self, hardware: str, t_s: float) -> float:
        """Price of ``hardware`` at ``t_s`` seconds into the run."""
        ...

    def available(self, hardware: str, t_s: float) -> bool:
        """Whether ``hardware`` can run at ``t_s`` (False: preempted)."""
        ...


class StaticPrices:
    """Fixed prices for the whole run; everything always available."""

    def __init__(self, prices_usd_per_h: Mapping[str, float]) -> None:
        self.prices = dict(prices_usd_per_h)

    def price_usd_per_h(self, hardware: str, t_s: float) -> float:
        return self.prices[hardware]

    def available(self, hardware: str, t_s: float) -> bool:
        return True
