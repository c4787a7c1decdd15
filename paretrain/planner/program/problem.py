"""The planning problem as arrays: per (choice, stage, option) time, cost and samples.

A *choice* ``m`` is one model configuration trained to one level of its target metric; an *option*
``o`` is (hardware offer, precision, per-worker batch size, workers). ``paretrain.planner.program.build`` fills
a ``Problem`` from the spec, the offers and the profile; ``paretrain.planner.program.milp`` solves it; and
``Problem.evaluate`` scores any schedule exactly, which is what brute-force checks use.
An absent option (it does not fit memory, was neither measured nor modeled, ...) is ``inf``.
Moving the run onto hardware h between stages costs ``switch_in_s[h]`` seconds and
``switch_in_usd[h]``; leaving hardware h costs ``switch_out_usd[h]`` (egress).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from paretrain.planner.inputs.metric import ACCURACY, Metric

__all__ = ["Choice", "Option", "Problem", "ProblemContext", "Schedule", "prune_dominated"]


@dataclass(frozen=True, slots=True)
class Choice:
    """Config ``config_id`` trained until its target metric reaches ``score`` (higher is better,
    ``paretrain.planner.inputs.metric``); ``reused``: from the profile's checkpoint of the config,
    its first stage on the option that trained it (``paretrain.planner.program.reuse``)."""

    config_id: str
    score: float
    reused: bool = False


@dataclass(frozen=True, slots=True)
class Option:
    hardware: str
    precision: str
    batch_size: int
    workers: int = 1

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.workers


@dataclass(frozen=True, slots=True)
class Schedule:
    """One feasible point: a choice and one option per stage, with its exact totals."""

    choice: int
    options: tuple[int, ...]
    cost_usd: float
    wall_s: float
    score: float


@dataclass(frozen=True, eq=False)
class Problem:
    """Arrays of shape (M choices, K stages, O options); ``inf`` marks an absent option."""

    choices: tuple[Choice, ...]
    options: tuple[Option, ...]
    hardware: tuple[str, ...]
    time_s: np.ndarray
    cost_usd: np.ndarray
    samples: np.ndarray
    option_hw: np.ndarray
    switch_s: np.ndarray  # (H,) time to move onto hardware h between stages
    switch_usd: np.ndarray  # (H,) money to move onto hardware h between stages
    switch_out_usd: np.ndarray | None = None  # (H,) money to leave hardware h (egress)
    budget_usd: float = math.inf
    deadline_s: float = math.inf
    score_floor: float = 0.0
    #: the target metric (names the floor in messages, in its own units)
    metric: Metric = ACCURACY

    def __post_init__(self) -> None:
        M, K, O = len(self.choices), self.time_s.shape[1], len(self.options)
        if self.time_s.shape != (M, K, O) or self.cost_usd.shape != (M, K, O):
            raise ValueError(
                f"time/cost arrays must have shape {(M, K, O)}, got "
                f"{self.time_s.shape} and {self.cost_usd.shape}"
            )
        if self.option_hw.shape != (O,):
            raise ValueError(f"option_hw must have shape {(O,)}, got {self.option_hw.shape}")

    @property
    def leave_usd(self) -> np.ndarray:
        return self.switch_out_usd if self.switch_out_usd is not None else np.zeros(len(self.hardware))

    @property
    def stages(self) -> int:
        return int(self.time_s.shape[1])

    @property
    def score(self) -> np.ndarray:
        return np.array([c.score for c in self.choices], dtype=float)

    def evaluate(self, m: int, opts: Sequence[int]) -> Schedule:
        """Exact totals of choice ``m`` run with ``opts[k]`` at stage k (``inf`` if absent)."""
        cost = float(sum(self.cost_usd[m, k, o] for k, o in enumerate(opts)))
        time = float(sum(self.time_s[m, k, o] for k, o in enumerate(opts)))
        for k in range(1, len(opts)):
            h, prev = self.option_hw[opts[k]], self.option_hw[opts[k - 1]]
            if h != prev:
                cost += float(self.switch_usd[h]) + float(self.leave_usd[prev])
                time += float(self.switch_s[h])
        return Schedule(m, tuple(int(o) for o in opts), cost, time, self.choices[m].score)

    def feasible(self, s: Schedule, *, budget: float | None = None, deadline: float | None = None) -> bool:
        b = self.budget_usd if budget is None else budget
        d = self.deadline_s if deadline is None else deadline
        return (
            math.isfinite(s.cost_usd)
            and s.cost_usd <= b * (1 + 1e-9)
            and s.wall_s <= d * (1 + 1e-9)
            and s.score >= self.score_floor - 1e-12
        )


@dataclass(frozen=True)
class ProblemContext:
    """What the plan file keeps beside the schedules: the fitted models the arrays were computed
    from, so that a replan can compute them again (``paretrain.planner.plan.fitted``)."""

    step_models: Mapping[tuple[str, str, str, int], Any] = field(default_factory=dict)  # (h, c, q, n)
    convergence: Mapping[tuple[str, float], Any] = field(default_factory=dict)  # (c, level) -> fit
    b_noise_stage: Mapping[tuple[int, int], float] = field(default_factory=dict)  # (m, k)
    stage_noise: Mapping[tuple[str, float], Any] = field(default_factory=dict)  # (c, level)
    noise_curves: Mapping[str, Any] = field(default_factory=dict)
    instances: Mapping[tuple[str, int], int] = field(default_factory=dict)  # (offer, workers) -> rented
    storage_bytes: Mapping[tuple[str, str, str, int], float] = field(default_factory=dict)  # (h, c, q, n)
    egress_bytes: float = 0.0
    curves: Mapping[str, Mapping[int, tuple[tuple[int, float], ...]]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    pruned: int = 0
    #: choice m -> where it starts (``paretrain.planner.program.reuse.StartFrom``): the profile's
    #: checkpoint of its config
    starts: Mapping[int, Any] = field(default_factory=dict)


def prune_dominated(problem: Problem) -> tuple[Problem, int]:
    """Drop every option that another option on the same hardware beats in both time and cost
    for the same (choice, stage); of equal ones keep the first.

    Exact: switching costs depend only on the hardware, so a schedule using a dropped option
    can swap in its dominator and be no slower and no dearer. Returns the pruned problem and
    the number of (choice, stage, option) entries dropped.
    """
    T, C = problem.time_s.copy(), problem.cost_usd.copy()
    M, K, _O = T.shape
    dropped = 0
    for h in range(len(problem.hardware)):
        cols = np.flatnonzero(problem.option_hw == h)
        for m in range(M):
            for k in range(K):
                t, c = T[m, k, cols], C[m, k, cols]
                live = np.flatnonzero(np.isfinite(t))
                order = live[np.lexsort((c[live], t[live]))]  # by time, then cost
                best_c = np.inf
                for i in order:
                    if c[i] < best_c * (1 - 1e-12):
                        best_c = c[i]
                    else:  # some option no slower is at least as cheap
                        T[m, k, cols[i]] = C[m, k, cols[i]] = np.inf
                        dropped += 1
    # every other field as it was (the metric that names the floor in messages included)
    return replace(problem, time_s=T, cost_usd=C), dropped
