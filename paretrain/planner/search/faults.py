"""How a search trial ends when a user's training goes wrong, and what the study records.

A user's code is the least trusted part of a search, and the search draws configs nobody tried
before. The rule, for each way a trial can go wrong:

- **Divergence** (a non-finite training loss at some step, or a non-finite evaluated metric):
  the trial stops at once and is failed, with ``divergence: "loss nan at step 37"`` among its
  user attributes; it is never scored, so it never enters the front. The search goes on.
- **A config the model cannot build** (``build(config)`` raised): an infeasible point of the
  space, not a bug of the workload: the trial is failed with ``infeasible: "<the one-line
  message>"`` and the search goes on. Only when ``build`` raises for ``MAX_UNBUILDABLE``
  trials in a row of one worker, none built in between, is it taken as a bug: the search
  stops with that message (exit 2).
- **Any other member raising** (a dataset's sample, ``loss``, ``evaluate``, ``inputs``,
  ``optimizer``): a bug the user must see. The trial is failed with ``error: "<message>"``
  and the search stops with the one-line ``WorkloadError`` (exit 2).
- **The envelope ran out before the trial's first evaluation**: there is nothing to score; the
  trial is failed with ``unfunded: "<why>"`` (never a point of the front at the initial model's
  value) and the search stops at its envelope.
- **A signal** (SIGTERM, SIGINT): the trial in flight is abandoned at its next step and failed
  with ``interrupted: "SIGTERM"``; the worker stops (exit 143 / 130). Running the same
  command again continues the study.

In every case the trial's spend is settled to the envelope from its worker's ledger, so the
envelope's spent plus held stays within it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna

from paretrain.planner.errors import StopError, UserError

__all__ = [
    "MAX_UNBUILDABLE",
    "SearchInterrupted",
    "TrialAborted",
    "TrialFault",
    "UnbuildableSpace",
    "fail_trial",
    "fail_unscored",
]

MAX_UNBUILDABLE = 5
DIVERGENCE, INFEASIBLE, UNFUNDED = "divergence", "infeasible", "unfunded"


@dataclass(frozen=True, slots=True)
class TrialFault:
    """Why a trial that ran to its end is not scored: ``kind`` is the user attribute the study
    records (``divergence``, ``infeasible``, or ``unfunded``: the envelope ran out before its
    first evaluation), ``reason`` its value."""

    kind: str
    reason: str

    def __post_init__(self) -> None:
        if self.kind not in (DIVERGENCE, INFEASIBLE, UNFUNDED):
            raise ValueError(
                f"TrialFault.kind must be {DIVERGENCE!r}, {INFEASIBLE!r} or {UNFUNDED!r}; got {self.kind!r}"
            )


class TrialAborted(Exception):
    """A trial stopped by ``cause`` (re-raised by the search once the trial is failed) after it
    spent ``spend_usd`` (its ledger's figure, settled to the envelope). The failed trial records
    ``reason`` (default: the cause's message) under the user attribute ``attr``."""

    def __init__(
        self, cause: BaseException, spend_usd: float, attr: str = "error", reason: str | None = None
    ) -> None:
        super().__init__(str(cause))
        self.cause, self.spend_usd, self.attr = cause, spend_usd, attr
        self.reason = reason if reason is not None else " ".join(str(cause).split())


class UnbuildableSpace(UserError):
    """``build`` raised for ``MAX_UNBUILDABLE`` trials in a row: a workload's bug (exit 2)."""


class SearchInterrupted(StopError):
    """A search worker stopped by a signal at a trial boundary; exits 128 + the signal number."""

    def __init__(self, signal_name: str, exit_code: int, message: str) -> None:
        super().__init__(message)
        self.signal_name = signal_name
        self.exit_code = exit_code  # 143 / 130 rather than StopError's 3


def fail_trial(study: optuna.Study, trial: optuna.Trial, attrs: dict[str, Any]) -> None:
    """Record ``attrs`` on ``trial`` and fail it (a trial already failed as stale stays so)."""
    try:
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
    except optuna.exceptions.UpdateFinishedTrialError:
        return
    study.tell(trial, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)


def fail_unscored(
    study: optuna.Study, trial: optuna.Trial, fault: TrialFault, attrs: dict[str, Any], unbuildable: int
) -> int:
    """Fail a trial that ran but is not scored (``fault`` recorded with ``attrs``); the number
    of trials in a row whose config did not build, this one included. ``MAX_UNBUILDABLE`` in
    a row is a workload's bug: ``UnbuildableSpace`` with the last one's message."""
    fail_trial(study, trial, {fault.kind: fault.reason, **attrs})
    if fault.kind != INFEASIBLE:
        return unbuildable
    if unbuildable + 1 >= MAX_UNBUILDABLE:
        raise UnbuildableSpace(
            f"{fault.reason.removesuffix('.')}. Hint: build() raised for the last {unbuildable + 1} "
            "configs the search drew, none built in between; narrow search.space to the configs "
            "build() accepts"
        )
    return unbuildable + 1
