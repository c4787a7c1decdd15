"""Why no schedule fits: the binding constraint and the smallest budget and deadline that would fit."""

from __future__ import annotations

import math

from paretrain.planner.errors import InfeasiblePlan
from paretrain.planner.program.formulation import Formulation
from paretrain.planner.program.problem import Problem

__all__ = ["explain_infeasible"]


def explain_infeasible(problem: Problem, f: Formulation) -> InfeasiblePlan:
    """Why no schedule fits: the binding constraint and the smallest budget and deadline that
    would each make the program feasible, found by solving with that constraint removed."""
    floor = problem.score_floor
    try:
        f.budget_usd = math.inf
        cheapest_in_time = f.min_cost(floor=floor, lexicographic=False)
        f.deadline_s = math.inf
        cheapest_any = f.min_cost(floor=floor, lexicographic=False)
        fastest_any = f.min_time(floor=floor, lexicographic=False)
        f.budget_usd = problem.budget_usd
        fastest_in_budget = f.min_time(floor=floor, lexicographic=False)
    finally:
        f.budget_usd, f.deadline_s = problem.budget_usd, problem.deadline_s
    budget, deadline = problem.budget_usd, problem.deadline_s
    m = problem.metric
    head = (
        f"no schedule reaches {m.name} {'>=' if m.maximize else '<='} {m.level(floor):g} within the "
        f"training budget ${budget:.6g} and the deadline {deadline:.6g} s"
    )
    if cheapest_any is None:
        return InfeasiblePlan(
            f"{head}: no measured configuration reaches that level at any allowed batch size "
            "(no plan is written; what each configuration reached is in its profile file under "
            ".paretrain/profiles/, with the curve it was measured on). To fix: "
            f"{'lower' if m.maximize else 'raise'} target.goal, allow more batch sizes or raise target.max_samples",
            binding="level",
        )
    min_budget = cheapest_in_time.cost_usd if cheapest_in_time else None
    min_deadline = fastest_in_budget.wall_s if fastest_in_budget else None
    if min_budget is not None and min_deadline is not None:
        binding = "budget and deadline (either one alone)"
        fix = (
            f"raise budget.envelopes.train to at least ${min_budget:.6g} (keeping the deadline), or "
            f"deadline_s to at least {math.ceil(min_deadline)} s (keeping the budget)"
        )
    elif min_budget is not None:
        binding = "budget"
        fix = f"raise budget.envelopes.train to at least ${min_budget:.6g} (the deadline can stay)"
    elif min_deadline is not None:
        binding = "deadline"
        fix = f"raise deadline_s to at least {math.ceil(min_deadline)} s (the budget can stay)"
    else:
        binding = "budget and deadline (both)"
        assert fastest_any is not None
        min_budget, min_deadline = cheapest_any.cost_usd, fastest_any.wall_s
        fix = (
            f"raise both: the cheapest schedule costs ${cheapest_any.cost_usd:.6g} and takes "
            f"{math.ceil(cheapest_any.wall_s)} s; the fastest takes {math.ceil(fastest_any.wall_s)} s "
            f"and costs ${fastest_any.cost_usd:.6g}"
        )
    return InfeasiblePlan(
        f"{head}. Binding: {binding}. To fix: {fix}",
        binding=binding,
        min_budget_usd=min_budget,
        min_deadline_s=min_deadline,
    )
