"""The parts a run is made of once it starts, built together from its setup and trainer: the
meter over its ledger, the account and event log, the budget guard, recovery, reporting and
the adaptive side. The executor holds them as one ``RunParts``, with its state (read-only to
the parts) and its ``apply`` (the one writer of that state), and hands them to the stage and
adaptation steps (``paretrain.runtime.run.stages``, ``paretrain.runtime.run.adapting``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from paretrain.runtime.adapt.adaptation import Adaptation
from paretrain.runtime.locks import held
from paretrain.runtime.money.ledger import Ledger
from paretrain.runtime.money.meter import Meter
from paretrain.runtime.money.prices import PriceSource
from paretrain.runtime.money.report import RUN_CAP
from paretrain.runtime.run.account import Account, EventLog
from paretrain.runtime.run.changes import StateChange
from paretrain.runtime.run.guard import BudgetGuard, run_cap
from paretrain.runtime.run.processes import TrainerGroup
from paretrain.runtime.run.recovery import Recovery
from paretrain.runtime.run.reporting import Reporting
from paretrain.runtime.run.runs import LedgerEnd, ledger_end
from paretrain.runtime.run.state import RunSetup, RunState
from paretrain.runtime.tracking.client import Tracker

__all__ = ["RunParts", "build_parts", "open_ledger"]


@dataclass(frozen=True, slots=True)
class RunParts:
    """A started run's parts; ``budget`` is its cap (``run_cap``), ``ended`` where a killed
    run's ledger ended (an empty ``LedgerEnd`` on a fresh run)."""

    setup: RunSetup
    state: RunState  # the executor's; the parts only read it
    apply: Callable[[StateChange], None]  # the executor's: writes a change into ``state``
    log: Callable[[str], None]
    budget: float
    ended: LedgerEnd
    group: TrainerGroup
    meter: Meter
    account: Account
    events: EventLog
    guard: BudgetGuard
    recovery: Recovery
    reporting: Reporting
    adaptation: Adaptation


def open_ledger(setup: RunSetup, log: Callable[[str], None]) -> tuple[Ledger, float]:
    """The run's ledger, open (and locked), and the run's cap (``run_cap``). Under a project
    ceiling the cap is taken under the project's lock (``ledger/ceiling.lock``, held for the
    moment it takes) and written to the ledger as a zero-dollar ``RUN_CAP`` event, so two runs
    that start at once do not both count on the same part of the ceiling: the later one counts
    what the earlier may still spend (``paretrain.runtime.money.report.committed_usd``)."""
    if setup.spec.budget.project_ceiling_usd is None:
        return Ledger(setup.ledger_path, setup.run_id), setup.spec.budget.train_usd
    lock = setup.ledger_path.parent / "ceiling.lock"
    with held(lock, "the project ceiling's account", wait=log):
        ledger = Ledger(setup.ledger_path, setup.run_id)
        try:
            budget = run_cap(setup.spec, ledger)
            ledger.charge("event", 0.0, stage="start", event=RUN_CAP, cap_usd=budget)
            ledger.sync()
        except BaseException:
            ledger.close()
            raise
    return ledger, budget


def build_parts(
    setup: RunSetup,
    state: RunState,
    group: TrainerGroup,
    prices: PriceSource,
    *,
    resume: bool,
    tracker: Tracker | None,
    plan_path: Path | None,
    log: Callable[[str], None],
    apply: Callable[[StateChange], None],
) -> RunParts:
    """The parts of a run whose trainer ``group`` has started; ``apply`` is the executor's."""
    ledger, budget = open_ledger(setup, log)
    ended = ledger_end(setup.ledger_path) if resume else LedgerEnd()
    # the meter starts once data and model are ready (like the library loading before it,
    # building them is the same for every candidate and is not charged)
    meter = Meter(ledger, prices, start_t=ended.t)
    account = Account(setup, meter)
    events = EventLog(setup, meter)
    guard = BudgetGuard(setup, account, prices, budget, group.trainer.parameter_count())
    return RunParts(
        setup=setup,
        state=state,
        apply=apply,
        log=log,
        budget=budget,
        ended=ended,
        group=group,
        meter=meter,
        account=account,
        events=events,
        guard=guard,
        recovery=Recovery(account, guard, group, events, prices, log, apply),
        reporting=Reporting(setup, tracker, events, plan_path),
        adaptation=Adaptation(setup.plan, setup.cand, setup.spec, prices, meter.cost_ahead),
    )
