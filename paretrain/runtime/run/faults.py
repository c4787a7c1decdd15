"""When a user's training goes wrong: signals, divergence, a failing workload member, a full disk.

Each fault ends the run the same clean way: the executor's ``finish`` settles the billing hold,
writes the ledger's ``end`` line and closes it, and the status file says what stopped the run.
What differs is what is kept and the exit code (DESIGN.md §6, docs/troubleshooting.md):

- SIGTERM / SIGINT (``Signals``): the step in flight finishes, a checkpoint is written (its cost
  is always inside the budget guard's reserve), exit 143 / 130; a second signal exits at once.
- a non-finite loss or evaluated metric (``diverged``): back to the last checkpoint with the
  learning rate halved, once (``runtime.on_divergence: retry``); the next one stops (exit 3),
  saying what stopping saved of the candidate's predicted cost.
- a workload member that raises (``workload_failed``): the last checkpoint is kept, exit 2.
- a full disk (``disk_full``): nothing more is written, exit 3; ``--resume`` once space is freed.
- a step or an evaluation still running when the budget can pay no more (``overran``,
  ``paretrain.runtime.train.deadline``): cut there, no checkpoint of the half-done state, exit 3.
- a target the run's own curve cannot reach (``unreachable``, the policy's out-of-reach rule):
  the last checkpoint is kept, exit 3, saying where the curve levels off and what stopping
  saved of what going on would have spent.

The functions here only read the run state; what changes is handed to the executor's ``apply``.
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType
from typing import Any

from paretrain.runtime.run.changes import NothingToSave, Stopped
from paretrain.runtime.run.parts import RunParts
from paretrain.runtime.run.runs import FAULT_STATUSES, RETRIED
from paretrain.runtime.run.state import RunState

__all__ = [
    "FAULT_STATUSES",
    "Signals",
    "disk_full",
    "diverged",
    "interrupted",
    "nothing_left",
    "overran",
    "resume_hint",
    "unreachable",
    "workload_failed",
]


class Signals:
    """SIGTERM and SIGINT while a run trains: the first is remembered (``received``, the signal's
    number) for the run to stop after the step in flight; a second exits at once (128 + signal),
    the ledger holding what was charged as after a kill -9. Handlers are installed only in the
    main thread (elsewhere Python cannot take signals) and restored on exit."""

    def __init__(self) -> None:
        self.received = 0
        self._before: dict[int, Any] = {}

    def __enter__(self) -> Signals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._before[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, before in self._before.items():
            signal.signal(sig, before)
        self._before.clear()

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.received:
            os.write(2, b"paretrain: a second signal: stopped at once; continue with --resume\n")
            os._exit(128 + signum)
        self.received = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.received).name


def resume_hint(p: RunParts, plan_path: Any) -> str:
    return f"'paretrain run {plan_path or 'PLAN'} --candidate {p.setup.cand.id} --resume'"


def interrupted(p: RunParts, state: RunState, signals: Signals, plan_path: Any) -> str:
    """The run stops for a signal: ``finish`` writes the checkpoint. Returns the status."""
    p.events("signal", signal=signals.name, hardware=state.hw)
    p.apply(
        Stopped(
            f"run {p.setup.run_id} stopped by {signals.name} after {p.group.trainer.samples_seen} samples, "
            f"its checkpoint written and its ledger settled. To continue: {resume_hint(p, plan_path)}"
        )
    )
    return signals.name


def workload_failed(p: RunParts, state: RunState, err: Exception, plan_path: Any) -> str:
    """A workload member raised mid-run: the last checkpoint is what is kept. Returns the status."""
    p.events("workload_failed", detail=str(err), hardware=state.hw)
    p.apply(NothingToSave())  # the step or evaluation in flight failed: the checkpoint is sure
    p.apply(
        Stopped(
            f"run {p.setup.run_id} stopped: {err}; the last checkpoint is kept: once fixed, continue "
            f"with {resume_hint(p, plan_path)}"
        )
    )
    return "workload"


def nothing_left(p: RunParts, state: RunState) -> str:
    """A ``--resume`` whose budget cannot pay for a step, an evaluation and a checkpoint: refused
    before the checkpoint is read, nothing charged but what a killed process's hold still owes
    (``Account.settle_interrupted``); the executor then charges no teardown. Returns the status."""
    began = p.ended.hold
    p.account.settle_interrupted(state, None if began is None else (*began, p.meter.t))
    left = max(0.0, p.budget - p.meter.spent)
    p.apply(NothingToSave())
    p.apply(
        Stopped(
            f"run {p.setup.run_id} cannot go on: its budget ${p.budget:.6g} has ${left:.6g} left, less "
            f"than a step, an evaluation and a checkpoint would cost (${p.guard.reserve_usd(state):.6g}); "
            f"nothing more was charged (spent ${p.meter.spent:.6g}), its checkpoints are as they were. "
            "To fix: raise budget.envelopes.train (or budget.project_ceiling_usd) and continue with --resume"
        )
    )
    return "budget"


def overran(p: RunParts, state: RunState, what: str, plan_path: Any) -> str:
    """``what`` (a step, an evaluation) was still running when the budget could pay for no
    more of it (``paretrain.runtime.train.deadline``): stopped there, its work lost, the last
    checkpoint kept. Returns the status."""
    p.events("overran", what=what, hardware=state.hw)
    p.events.ledger("overran", state, what=what)
    p.apply(NothingToSave())  # the weights may be half-updated: only the checkpoint is sure
    p.apply(
        Stopped(
            f"run {p.setup.run_id} stopped: {what} of the workload was still running when its budget "
            f"${p.budget:.6g} could pay for no more of it, so it was cut there (the last checkpoint "
            f"is kept; the work since it is lost). To fix: find what made {what} that slow, raise "
            f"budget.envelopes.train, and continue with {resume_hint(p, plan_path)}"
        )
    )
    return "overran"


def disk_full(p: RunParts, state: RunState, err: Exception, plan_path: Any) -> str:
    """A checkpoint or the ledger found no space: nothing more is saved. Returns the status."""
    p.apply(NothingToSave())
    p.apply(
        Stopped(
            f"run {p.setup.run_id} stopped: {err}; free space and continue with {resume_hint(p, plan_path)}"
        )
    )
    return "disk"


def diverged(p: RunParts, state: RunState, *, what: str, value: float, retry: bool) -> str | None:
    """A non-finite ``what`` (the loss, or the target metric) at this step. With ``retry``, go
    back to the last checkpoint with the learning rate halved and return None; else (or when
    there is no checkpoint, or its restore would pass the budget) stop: returns "diverged"."""
    trainer = p.group.trainer
    step = trainer.steps
    p.events("divergence", what=what, value=str(value), step=step, hardware=state.hw)
    p.events.ledger("divergence", state, what=what, value=str(value), step=step)
    p.apply(NothingToSave())  # the weights are no longer good: only the checkpoint is
    loaded = p.recovery.load_latest() if retry else None
    if loaded is not None:
        hw = str(loaded[0]["run"].get("hardware", state.hw))
        now = p.meter.now(p.setup.emulated(state.hw))
        if not p.guard.restore_over_budget(state, hw, now, checkpoints=2):
            p.recovery.restore(state, loaded, reason="rollback", restart=False)
            trainer.scale_lr(0.5)
            p.events("lr_halved", lr=trainer.lr, step=trainer.steps)
            p.events.ledger("lr_halved", state, lr=trainer.lr, step=trainer.steps)
            p.log(
                f"{what} was {value} at step {step}: retrying from the checkpoint at half the learning rate"
            )
            return None
    again = f" again, {RETRIED}" if trainer.lr_scale < 1.0 else ""
    p.apply(Stopped(f"run {p.setup.run_id} diverged: {what} was {value} at step {step}{again}"))
    return "diverged"


def unreachable(p: RunParts, state: RunState, reason: str, go_on_usd: float, go_on_s: float) -> str:
    """The run's curve puts the target out of reach (``reason`` says where it levels off);
    going on would have taken ``go_on_s`` more seconds at ``go_on_usd``. What the run would
    have spent in all counts its billing hold settled then rather than now (a provider's
    minimum is paid either way). Returns the status."""
    trainer = p.group.trainer
    step, samples = trainer.steps, trainer.samples_seen
    now = p.meter.now(p.setup.emulated(state.hw))
    projected = p.meter.spent + go_on_usd + p.account.settle_usd(state, now + go_on_s)
    p.events("unreachable", reason=reason, step=step, samples=samples, go_on_usd=go_on_usd)
    p.events.ledger("unreachable", state, reason=reason, step=step, samples=samples, go_on_usd=go_on_usd)
    p.log(f"stopping at step {step}: {reason}")
    p.apply(Stopped(f"run {p.setup.run_id} stopped at step {step}: {reason}", projected_usd=projected))
    return "unreachable"
