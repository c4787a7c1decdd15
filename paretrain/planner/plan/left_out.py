"""What the front leaves out, said in the plan's notes: every config and every level of the
spec that no candidate trains, with why.

A config or level that never reached the program (it diverged, its fit failed, no measured
config reaches the level) already has its note from the profile and the models. What is left
here is what the program had and the front did not keep:

- a level whose every schedule is past the training budget or the deadline: the lower bound of
  its cheapest (fastest) schedule, each stage at its cheapest (fastest) option with no move
  between them, is already over it;
- a config or level whose schedules are all dominated: another candidate is no dearer, no
  slower and at least as good (or within the prediction's spread of one, merged into it: those
  notes say so).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from paretrain.planner.plan.plan import Candidate
    from paretrain.planner.program.problem import Problem

__all__ = ["left_out_notes"]


def left_out_notes(problem: Problem, cands: Sequence[Candidate]) -> list[str]:
    """One note per config and per level of the program that no candidate trains."""
    metric = problem.metric
    used_configs = {c.config_id for c in cands}
    used_levels = {round(metric.score(c.level), 12) for c in cands}
    notes: list[str] = []
    configs = dict.fromkeys(ch.config_id for ch in problem.choices)  # in the program's order
    for cid in configs:
        if cid not in used_configs:
            notes.append(
                f"{cid}: on no candidate: each of its schedules is dominated (another candidate is "
                "no dearer, no slower and at least as good)"
            )
    # absent options are inf: a stage's least over its options, summed over the stages
    least_cost, least_time = problem.cost_usd.min(axis=2).sum(axis=1), problem.time_s.min(axis=2).sum(axis=1)
    scores = dict.fromkeys(round(ch.score, 12) for ch in problem.choices)
    for score in scores:
        if score in used_levels:
            continue
        rows = [m for m, ch in enumerate(problem.choices) if round(ch.score, 12) == score]
        cost, wall = float(min(least_cost[rows])), float(min(least_time[rows]))
        name = f"{metric.name} {metric.level(score):g}"
        if cost > problem.budget_usd:
            why = f"its cheapest schedule costs at least ${cost:.6g}, past the training budget ${problem.budget_usd:.6g}"
        elif wall > problem.deadline_s:
            why = f"its fastest schedule takes at least {wall:.1f} s, past the deadline {problem.deadline_s:.6g} s"
        else:
            why = "each of its schedules is dominated by a candidate (no dearer, no slower, at least as good)"
        notes.append(f"{name}: on no candidate: {why}")
    return notes
