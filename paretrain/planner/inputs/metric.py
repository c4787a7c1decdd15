"""The target metric and its direction: what "reached a level" and "better" mean.

The planner works in *scores*, where higher is better (``score = value`` for a metric to
maximize, ``-value`` for one to minimize), so the program, the Pareto set and the search need
no case for each direction; values are turned back into the metric's own units wherever a
person or a file sees them.

>>> bpb = Metric("val_bpb", "minimize")
>>> bpb.reached(2.4, 2.5), bpb.score(2.5), bpb.level(-2.5)
(True, -2.5, 2.5)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["ACCURACY", "DIRECTIONS", "Metric"]

DIRECTIONS = ("maximize", "minimize")


@dataclass(frozen=True, slots=True)
class Metric:
    """A named validation metric and whether higher or lower is better."""

    name: str = "val_accuracy"
    direction: str = "maximize"

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"`direction` must be one of {DIRECTIONS}, but got {self.direction!r}")

    @property
    def maximize(self) -> bool:
        return self.direction == "maximize"

    def score(self, value: float) -> float:
        """Higher is better, whatever the direction."""
        return value if self.maximize else -value

    def level(self, score: float) -> float:
        """The inverse of ``score``: back to the metric's units."""
        return score if self.maximize else -score

    def reached(self, value: float, level: float) -> bool:
        if value != value:  # NaN never reaches anything
            return False
        return value >= level if self.maximize else value <= level

    def better(self, a: float, b: float) -> bool:
        return self.score(a) > self.score(b)

    @property
    def worst(self) -> float:
        """A value every real one improves on (a run that has not evaluated yet)."""
        return -math.inf if self.maximize else math.inf

    def initial(self) -> float:
        """What a run reports before its first evaluation: 0 for accuracies (as before),
        the worst value otherwise."""
        return 0.0 if self.maximize and "accuracy" in self.name else self.worst


ACCURACY = Metric()
