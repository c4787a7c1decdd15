r"""The (cost, wall time, accuracy) Pareto set of a ``Problem`` (the docs: concepts, the program).

The program itself (sets, variables, constraints, objectives) is written out in
``paretrain.planner.program.formulation``.

Pareto set. The exact front (``points`` unset) comes from ``paretrain.planner.program.paths``: for a fixed choice
a schedule is a path through the stages, and a multi-objective shortest path over (stage, last
hardware) labels gives every non-dominated (cost, time) schedule exactly, in milliseconds where
the sweep below takes minutes. The MILP stays the reference (tests check that both give
the same front) and the fallback when the labels outgrow ``paths.MAX_LABELS``. With ``points``
set the exact front is thinned to that many points.

The MILP sweep (``method="milp"``, or the fallback; AUGMECON-style epsilon constraint): for each
accuracy floor A, minimize cost with TIME <= t_cap, tighten t_cap to just below the time found,
and repeat until infeasible; the union over all floors, filtered for 3-D dominance, is the
exact front. With ``points`` set, t_cap instead walks a grid of that many values between the
fastest and the cheapest schedule, jumping past grid values that the last solution already
beats (AUGMECON's bypass), and the front is thinned to ``points``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from paretrain.planner.program.formulation import Formulation
from paretrain.planner.program.infeasible import explain_infeasible
from paretrain.planner.program.pareto import sorted_non_dominated
from paretrain.planner.program.paths import LabelLimit, path_front
from paretrain.planner.program.problem import Problem, Schedule
from paretrain.planner.program.solvers import SOLVERS, solve_outcome

__all__ = [
    "METHODS",
    "SOLVERS",
    "Formulation",
    "Front",
    "explain_infeasible",
    "pareto_front",
    "solve_outcome",
]

#: How ``pareto_front`` finds the front: the label DP with the MILP as fallback, or one of them.
METHODS = ("auto", "paths", "milp")


@dataclass
class Front:
    """The Pareto schedules and how they were found."""

    schedules: list[Schedule]
    proven_optimal: bool = True
    solves: int = 0
    notes: list[str] = field(default_factory=list)
    method: str = "milp"  # "paths" (the label DP of paretrain.planner.program.paths) or "milp" (the sweep)


def pareto_front(
    problem: Problem,
    solver: str = "highs",
    time_limit_s: float = 60.0,
    points: int | None = None,
    formulation: Formulation | None = None,
    method: str = "auto",
) -> Front:
    """The (cost, wall time, accuracy) Pareto set of ``problem`` (see the module docstring).

    Raises ``InfeasiblePlan`` (with the smallest feasible budget and deadline) when no schedule
    meets the accuracy floor within the budget and the deadline.
    """
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {METHODS}, but got {method!r}")
    notes: list[str] = []
    found: list[Schedule] | None = None
    f = formulation
    if method != "milp":
        try:
            found = path_front(problem)
        except LabelLimit as err:
            if method == "paths":
                raise
            notes.append(f"front found by the MILP sweep: {err}")
    if found is None:
        f = f or Formulation(problem, solver, time_limit_s)
        floors = sorted({c.score for c in problem.choices if c.score >= problem.score_floor - 1e-12})
        per_floor = None if points is None else max(3, math.ceil(points / max(1, len(floors))) + 1)
        found = []
        for floor in floors:
            found.extend(_sweep_exact(f, floor) if per_floor is None else _sweep_grid(f, floor, per_floor))
    if not found:
        raise explain_infeasible(problem, f or Formulation(problem, solver, time_limit_s))
    found.sort(key=lambda s: (s.cost_usd, s.wall_s, -s.score, s.choice, s.options))
    front = [found[i] for i in sorted_non_dominated([(s.cost_usd, s.wall_s, s.score) for s in found])]
    if points is not None and len(front) > points:
        front = _thin(front, points)
        notes.append(f"front thinned to planner.pareto_points={points} points")
    if f is None:
        return Front(front, True, 0, notes, "paths")
    return Front(front, f.proven_optimal, f.solves, notes, "milp")


def _sweep_exact(f: Formulation, floor: float) -> list[Schedule]:
    out: list[Schedule] = []
    cap = math.inf
    while True:
        s = f.min_cost(time_cap=cap, floor=floor)
        if s is None:
            return out
        out.append(s)
        # min() guards against a solution that meets the cap only within solver tolerance
        cap = min(cap, s.wall_s) - f.time_tol(s.wall_s)
        if cap <= 0:
            return out


def _sweep_grid(f: Formulation, floor: float, points: int) -> list[Schedule]:
    cheap = f.min_cost(floor=floor)
    if cheap is None:
        return []
    fast = f.min_time(floor=floor)
    assert fast is not None  # the cheapest schedule exists, so some fastest one does
    out = [cheap, fast]
    hi, lo = cheap.wall_s, fast.wall_s
    if hi - lo <= f.time_tol(hi):
        return out
    grid = [hi - (hi - lo) * j / (points - 1) for j in range(1, points - 1)]
    cap = math.inf
    for g in grid:
        if g >= cap:
            continue  # bypass: the last solution already beats this grid value
        # one augmented solve (cost + a sliver of time) instead of a lexicographic pair; a
        # weakly dominated result is removed by the final dominance filter
        s = f.min_cost(time_cap=g, floor=floor, lexicographic=False, augment=True)
        if s is None:
            break
        out.append(s)
        cap = s.wall_s
    return out


def _thin(front: Sequence[Schedule], n: int) -> list[Schedule]:
    """Keep ``n`` points spread evenly along the cost order, extremes always kept."""
    ordered = sorted(front, key=lambda s: (s.cost_usd, s.wall_s))
    picks = sorted({round(i * (len(ordered) - 1) / (n - 1)) for i in range(n)})
    fastest = min(ordered, key=lambda s: (s.wall_s, s.cost_usd))
    chosen = [ordered[i] for i in picks]
    if fastest not in chosen:
        chosen[-1] = fastest
    return chosen
