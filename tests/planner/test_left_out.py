"""The plan's notes name every config and level of the program that no candidate trains, and why."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from paretrain.planner.plan.left_out import left_out_notes
from paretrain.planner.program.problem import Choice, Option, Problem


def _problem(budget: float, deadline: float) -> Problem:
    """Three choices, one stage, one option: a@0.4 ($1, 10 s), b@0.4 ($2, 20 s), a@0.5 ($50, 30 s)."""
    time = np.array([[[10.0]], [[20.0]], [[30.0]]])
    cost = np.array([[[1.0]], [[2.0]], [[50.0]]])
    return Problem(
        (Choice("a", 0.4), Choice("b", 0.4), Choice("a", 0.5)),
        (Option("local/cpu-1", "fp32", 32),),
        ("local/cpu-1",),
        time,
        cost,
        np.ones_like(time),
        np.array([0]),
        np.zeros(1),
        np.zeros(1),
        budget_usd=budget,
        deadline_s=deadline,
    )  # the default metric: val_accuracy


def _notes(budget: float, deadline: float = 1e6) -> list[str]:
    front = [SimpleNamespace(config_id="a", level=0.4)]  # the front kept a@0.4 alone
    return left_out_notes(_problem(budget, deadline), front)


def test_a_dominated_config_and_a_level_past_the_budget_are_named():
    notes = _notes(budget=10.0)
    assert any(n.startswith("b: on no candidate") and "dominated" in n for n in notes), notes
    [level] = [n for n in notes if n.startswith("val_accuracy 0.5")]
    assert "costs at least $50, past the training budget $10" in level


def test_a_level_past_the_deadline_says_so_and_a_dominated_one_says_that():
    [level] = [n for n in _notes(budget=100.0, deadline=25.0) if n.startswith("val_accuracy 0.5")]
    assert "takes at least 30.0 s, past the deadline 25 s" in level
    [level] = [n for n in _notes(budget=100.0) if n.startswith("val_accuracy 0.5")]
    assert "dominated" in level
    assert not [n for n in _notes(budget=100.0) if n.startswith("a:")]  # a is on the front
