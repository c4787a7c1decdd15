"""Whether a candidate may run without the user's explicit approval (pure; no I/O).

A spec's ``budget.approval_above_usd`` is a spending threshold: a candidate predicted to cost
more than it runs only when approved (``--approve`` on the command line).

>>> check_approval(0.5, "c0", approved=False, predicted_usd=0.2)
>>> check_approval(0.1, "c0", approved=False, predicted_usd=0.2)
Traceback (most recent call last):
...
paretrain.planner.errors.ApprovalRequired: candidate c0 is predicted to cost $0.2, above budget.approval_above_usd $0.1. To fix: pass --approve to run it
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from paretrain.planner.errors import ApprovalRequired

__all__ = ["APPROVE_FLAG", "approval_threshold", "check_approval", "needs_approval"]

#: The command-line flag that gives approval.
APPROVE_FLAG = "--approve"

_MESSAGE = (
    "candidate {candidate} is predicted to cost ${amount:.6g}, above budget.approval_above_usd "
    "${threshold:.6g}. To fix: pass {flag} to run it"
)


def approval_threshold(budget: Any) -> float | None:
    """The approval threshold in USD from a number, a ``BudgetSpec``, a ``Spec``, or a spec or
    budget mapping (a plan file's ``spec``); None when the spec sets none."""
    if budget is None or isinstance(budget, (int, float)):
        return None if budget is None else float(budget)
    if hasattr(budget, "approval_above_usd"):
        return approval_threshold(budget.approval_above_usd)
    if hasattr(budget, "budget"):
        return approval_threshold(budget.budget)
    if isinstance(budget, Mapping):
        inner = budget.get("budget", budget)
        return approval_threshold(inner.get("approval_above_usd") if isinstance(inner, Mapping) else None)
    raise TypeError(f"`budget` must be a number, a budget or a spec, but got {type(budget).__name__}")


def needs_approval(budget: Any, predicted_usd: float) -> bool:
    """True when a run predicted to cost ``predicted_usd`` passes the approval threshold."""
    threshold = approval_threshold(budget)
    return threshold is not None and predicted_usd > threshold


def check_approval(
    budget: Any, candidate: Any, approved: bool = False, *, predicted_usd: float | None = None
) -> None:
    """Raise ``ApprovalRequired`` (naming the amount and the flag) when the candidate needs an
    approval it was not given. ``candidate`` is a plan ``Candidate`` (its id and predicted
    ``cost_usd`` are used) or just its id with ``predicted_usd``."""
    amount = predicted_usd if predicted_usd is not None else float(candidate.cost_usd)
    name = candidate if isinstance(candidate, str) or candidate is None else candidate.id
    if approved or not needs_approval(budget, amount):
        return
    threshold = approval_threshold(budget)
    raise ApprovalRequired(
        _MESSAGE.format(candidate=name, amount=amount, threshold=threshold, flag=APPROVE_FLAG),
        amount_usd=amount,
        threshold_usd=threshold,
        flag=APPROVE_FLAG,
    )
