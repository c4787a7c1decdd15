"""Named errors of paretrain and how the CLI maps them to exit codes.

Every user-facing error is one line: where (file and field), the rule, the value received
and how to fix it. ``UserError`` subclasses exit 2 (bad input, nothing written);
``StopError`` subclasses exit 3 (infeasible plan, budget reached before the target).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ApprovalRequired",
    "BudgetExhausted",
    "InfeasiblePlan",
    "InputError",
    "SolverError",
    "SolverTimeout",
    "SpecError",
    "StopError",
    "UserError",
]

_SPEC_TEMPLATE = "{where}: field '{field}' {rule}; got {value}. To fix: {fix}"


def _show(value: Any) -> str:
    """The value as the error line shows it: its repr, cut in the middle past 80 characters so
    that both ends stay (a long path keeps its file name, a long list its first and last items).

    >>> _show("/tmp/" + "x" * 100 + "/nowhere.py")
    "'/tmp/xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...xxxxxxxxxxxxxxxxxxxxxxxxxxx/nowhere.py'"
    """
    text = repr(value)
    return text if len(text) <= 80 else text[:38] + "..." + text[-39:]


class UserError(Exception):
    """Bad input from the user: exit code 2, one line, nothing written."""

    exit_code = 2


class SpecError(UserError):
    """A field of an input file breaks a rule.

    >>> str(SpecError("spec.yaml", "budget.total_usd", "must be >= 0", -1, "give a budget"))
    "spec.yaml: field 'budget.total_usd' must be >= 0; got -1. To fix: give a budget"
    """

    def __init__(self, where: str, field: str, rule: str, value: Any, fix: str) -> None:
        self.where, self.field, self.rule, self.value, self.fix = where, field, rule, value, fix
        super().__init__(
            _SPEC_TEMPLATE.format(where=where, field=field, rule=rule, value=_show(value), fix=fix)
        )


class InputError(UserError):
    """Bad input that is not a field of a file (a missing file, a bad option)."""


class StopError(Exception):
    """A deliberate stop the user must act on: exit code 3."""

    exit_code = 3


class InfeasiblePlan(StopError):
    """No schedule meets the constraints; names the binding one and what would fix it."""

    def __init__(
        self,
        message: str,
        *,
        binding: str = "",
        min_budget_usd: float | None = None,
        min_deadline_s: float | None = None,
    ) -> None:
        self.binding = binding
        self.min_budget_usd = min_budget_usd
        self.min_deadline_s = min_deadline_s
        super().__init__(message)


class BudgetExhausted(StopError):
    """A run stopped at its budget before reaching its target."""


class ApprovalRequired(StopError):
    """A candidate costs more than the spec's approval threshold; ``flag`` is what approves it."""

    def __init__(
        self,
        message: str,
        *,
        amount_usd: float | None = None,
        threshold_usd: float | None = None,
        flag: str = "--approve",
    ) -> None:
        self.amount_usd, self.threshold_usd, self.flag = amount_usd, threshold_usd, flag
        super().__init__(message)


class SolverError(Exception):
    """The solver failed in a way that is not the user's input (exit 1)."""

    exit_code = 1


class SolverTimeout(SolverError):
    """The solver hit its time limit without any feasible solution."""
