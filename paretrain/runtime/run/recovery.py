"""Checkpoints, restores, preemptions and moves between offers, for the executor.

A checkpoint holds the trainer, the stage position, the replanned stages, the run time and the
ledger position, so whatever the ledger holds beyond it on a resume is work lost (recorded,
never charged twice). A preemption loses the work since the last checkpoint, waits (storage
charged only, the wait counting against the deadline) until the offer is back, and resumes
from that checkpoint; if it is not back before the deadline the run stops. On emulated offers
provisioning, moving and restarting open a billing hold, leaving the offer settles it and a
preemption ends it (``paretrain.runtime.run.account``). Recovery only reads the run state: each
change it makes is handed to the executor's ``apply`` (``paretrain.runtime.run.changes``) as it
happens, so what follows it reads the state it left.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from paretrain.runtime.money.prices import PriceSource, next_available
from paretrain.runtime.run.account import Account, EventLog
from paretrain.runtime.run.changes import (
    Checkpointed,
    Connecting,
    Moved,
    NothingToSave,
    Restored,
    StateChange,
    Stopped,
    TrainerSynced,
)
from paretrain.runtime.run.guard import BudgetGuard
from paretrain.runtime.run.processes import TrainerGroup
from paretrain.runtime.run.state import RunState
from paretrain.runtime.train.checkpoint import load_latest, save_checkpoint
from paretrain.runtime.train.elastic import GroupUnavailable

__all__ = ["Recovery"]


class Recovery:
    """Checkpoint, restore, preemption and move, on the run state the executor hands in."""

    def __init__(
        self,
        account: Account,
        guard: BudgetGuard,
        group: TrainerGroup,
        events: EventLog,
        prices: PriceSource,
        log: Callable[[str], None],
        apply: Callable[[StateChange], None],
    ) -> None:
        self.account, self.guard, self.group, self.events = account, guard, group, events
        self.apply = apply  # the executor's: the only writer of the run state
        self.setup, self.meter, self.prices, self.log = account.setup, account.meter, prices, log

    def provision(self, state: RunState) -> None:
        """The run starts on its offer: an emulated one is provisioned (its switch time, charged
        at its price) and its billing hold begins."""
        self.account.open_hold(state)
        if self.setup.emulated(state.hw):
            self.account.charge(state, "compute", "provision", seconds=self.setup.offer(state.hw).switch_s)

    def move_to(self, state: RunState, hardware: str) -> None:
        """Move the run onto ``hardware``: the checkpoint's egress off the old offer and its
        billing settled, the move (provisioning and restore, on emulated offers their switch
        time) on the new one."""
        egress = self.account.egress_usd(state)
        if egress > 0:
            self.meter.charge_amount(
                "egress",
                egress,
                state.hw,
                stage=state.stage_name,
                what="checkpoint to the next offer",
                emulated=self.setup.emulated(state.hw),
            )
        self.account.settle(state)
        self.apply(Moved(hardware))
        self.group.device(hardware)
        self.account.open_hold(state)
        self.account.charge(
            state,
            "compute",
            "move",
            seconds=self.setup.offer(hardware).switch_s if self.setup.emulated(hardware) else None,
        )
        self.events("switch", stage=state.stage_i, hardware=hardware)

    def checkpoint(self, state: RunState, reason: str) -> None:
        """Save the state. The spend recorded with it is the ledger up to this moment, so on a
        resume whatever the ledger holds beyond it (this write included) is work lost."""
        emu = self.setup.emulated(state.hw)
        t0 = time.perf_counter()
        if not emu:
            self.account.charge(state, "compute", "train")
        saved = {
            "trainer": self.group.trainer.state_dict(),
            "run": {
                **state.position(),
                "spent_usd": self.meter.spent,
                "lines": self.meter.ledger.lines,
                "t_run": self.meter.t,
            },
        }
        # storage of the checkpoints kept until now
        self.apply(self.account.charge_storage(state, "checkpoints"))
        keep = self.setup.spec.runtime.keep_checkpoints
        _, size = save_checkpoint(self.setup.run_dir, saved, keep)
        ckpt_real = None
        if emu:
            self.account.charge(state, "checkpoint", reason, seconds=self.guard.virtual_ckpt_s(), bytes=size)
            self.meter.skip_real()
        else:
            self.account.charge(state, "checkpoint", reason, bytes=size)
            ckpt_real = max(state.ckpt_real * 0.5, time.perf_counter() - t0)
        self.apply(Checkpointed(at=self.meter.t, size=size, keep=keep, ckpt_real=ckpt_real))

    def restore(
        self, state: RunState, loaded: tuple[dict[str, Any], Path], reason: str, *, restart: bool = True
    ) -> None:
        """Go back to a checkpoint: trainer, position, offer and worker count; the work since it
        is recorded as lost, and the restart is charged (without ``restart``, a rollback on the
        same machine, as after a divergence: no restart, the billing hold goes on)."""
        saved, path = loaded
        run = saved["run"]
        if restart:
            self.account.settle(state)  # the restart takes a fresh machine
        self.group.trainer.load_state_dict(saved["trainer"])
        every = self.setup.spec.runtime.eval_every_samples
        next_eval = (self.group.trainer.samples_seen // every + 1) * every
        self.apply(Restored(run, at=self.meter.t, next_eval=next_eval))
        self.meter.scale = max(1, int(state.stage.instances))
        self.group.device(state.hw)
        if self.group.regroup(state.stage):  # the checkpoint's stage may run on another worker count
            self.events("workers", stage=state.stage_i, workers=self.group.processes(state.stage))
        trainer = self.group.trainer
        self.apply(TrainerSynced(trainer.samples_seen, trainer.batch_size))
        lost = self.meter.spent - float(run["spent_usd"])
        lost_s = self.meter.t - float(run.get("t_run", self.meter.t))
        self.events.ledger(
            reason,
            state,
            checkpoint=path.name,
            lost_usd=lost,
            lost_s=round(lost_s, 6),
            from_line=int(run.get("lines", 0)),
        )
        self.events(reason, checkpoint=path.name, lost_usd=lost, lost_s=lost_s, hardware=state.hw)
        self.log(
            f"{reason}: back to {path.name} (stage {state.stage_i}, {trainer.samples_seen} samples); "
            f"${lost:.3g} of work since it is lost"
        )
        if restart:
            seconds = self.setup.offer(state.hw).switch_s if self.setup.emulated(state.hw) else None
            self.account.open_hold(state)
            self.account.charge(state, "compute", "restore", seconds=seconds)

    def preempted(self, state: RunState) -> str | None:
        """The offer is gone: lose the work since the checkpoint, wait (storage charged) until it
        is back, then restore. Returns None when the run goes on, else why it stops
        ("deadline": not back in time; "budget": the restart would not fit)."""
        emu = self.setup.emulated(state.hw)
        now = self.meter.now(emu)
        if not emu:
            self.account.charge(state, "compute", "train")
        self.account.drop_hold()  # the provider took the machine: no minimum or increment is billed
        horizon = max(0.0, self.setup.spec.deadline_s - now)
        back = next_available(self.prices, state.hw, now, horizon)
        self.events("preemption", hardware=state.hw, back_at=back)
        self.events.ledger("preemption", state, back_at=back)
        self.apply(NothingToSave())  # the machine and the work since the checkpoint are gone
        if back is None:
            self.apply(self.account.charge_storage(state, "checkpoints while preempted"))
            return "deadline"
        storage = self.account.storage_rate(state) * (back - state.storage_t)
        loaded = load_latest(self.setup.run_dir)
        if loaded is None:
            raise RuntimeError(f"run {self.setup.run_id}: preempted with no checkpoint to go back to")
        # the restore happens on the checkpoint's offer: its restart (and a final checkpoint) must fit
        hw = str(loaded[0]["run"].get("hardware", state.hw))
        if self.guard.restore_over_budget(state, hw, back, extra_usd=storage, checkpoints=2):
            self.apply(self.account.charge_storage(state, "checkpoints while preempted"))
            return "budget"
        self.meter.wait(state.hw, back - now, stage=state.stage_name, emulated=emu)
        self.apply(self.account.charge_storage(state, "checkpoints while preempted"))
        self.restore(state, loaded, reason="preempted")
        self.apply(NothingToSave())
        return None

    def workers_lost(self, state: RunState, detail: str) -> str | None:
        """A helper rank of a data-parallel stage died: every process was held until now
        (charged), the work since the last checkpoint is lost (recorded) and the run goes back
        to it; the next step forms the group again from the helpers the elastic agent restarted.
        Returns "budget" when the restore (and the rendezvous before the next step) does not fit."""
        self.account.charge(state, "compute", "train")
        self.events("worker_lost", detail=detail, hardware=state.hw)
        self.events.ledger("worker_lost", state, detail=detail)
        self.apply(NothingToSave())  # the replicas are gone or out of step: only the checkpoint is sure
        loaded = load_latest(self.setup.run_dir)
        if loaded is None:
            raise RuntimeError(
                f"run {self.setup.run_id}: a data-parallel helper was lost with no checkpoint to go back to"
            )
        hw = str(loaded[0]["run"].get("hardware", state.hw))
        self.apply(Connecting(self.group.pending_connect_s()))
        if self.guard.restore_over_budget(
            state,
            hw,
            self.meter.now(self.setup.emulated(state.hw)),
            extra_usd=self.meter.cost_ahead(hw, self.meter.t, state.connect_s),
            checkpoints=2,
        ):
            return "budget"
        self.restore(state, loaded, reason="workers_restarted")
        return None

    def workers_unavailable(self, state: RunState, err: GroupUnavailable) -> str:
        """A data-parallel stage's processes cannot rendezvous (a machine never joined, or the
        launcher gave up): charge the wait for what was held (this machine's processes and the
        machines that joined, ``err.present``), and stop."""
        self.meter.scale = max(1, min(int(err.present), self.meter.scale))
        self.account.charge(state, "compute", "rendezvous")
        self.events("workers_unavailable", reason=str(err), present=int(err.present))
        self.events.ledger("workers_unavailable", state, reason=str(err), present=int(err.present))
        self.log(str(err))
        self.apply(Stopped(str(err)))
        return "workers"

    def load_latest(self) -> tuple[dict[str, Any], Path] | None:
        return load_latest(self.setup.run_dir)
