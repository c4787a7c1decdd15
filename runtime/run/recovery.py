"""Checkpoints, restores, preemptions and moves between offers, for the executor.

A checkpoint holds the trainer, the stage position, the replanned stages, the run time and the
ledger position, so whatever the ledger holds beyond it on a resume is work lost (recorded,
never charged twice). A preemption loses the work since the last checkpoint, waits (storage
charged only, the wait counting against the deadline) until the offer is back, and resumes
from that checkpoint; if it is not back before the deadline the run stops.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from planner.plan import StagePlan
from runtime.train.checkpoint import load_latest, save_checkpoint
from runtime.money.prices import next_available

__all__ = ["Recovery"]


class Recovery:
    """Mixin of ``runtime.run.executor.Executor``: checkpoint, restore, preemption, move."""

    def move_to(self, hardware: str) -> None:
        """Move the run onto ``hardware``: the checkpoint's egress off the old offer, the move
        (provisioning and restore, on emulated offers their switch time) on the new one."""
        old = self.hw
        egress = self.offers[old].egress_usd_per_gb * \
            (self.kept_bytes[-1] if self.kept_bytes else 0) / 1e9
        if egress > 0:
            self.meter.charge_amount("egress", egress, old, stage=self.stage_name,
                                     what="checkpoint to the next offer", emulated=self.emulated(old))
        self.hw = hardware
        self._device(hardware)
        self._charge("compute", "move", seconds=self.offers[hardware].switch_s
                     if self.emulated(hardware) else None)
        self.event("switch", stage=self.stage_i, hardware=hardware)
        self.fast_until = 0.0

    def checkpoint(self, reason: str) -> None:
        """Save the state. The spend recorded with it is the ledger up to this moment, so on a
        resume whatever the ledger holds beyond it (this write included) is work lost."""
        emu = self.emulated(self.hw)
        t0 = time.perf_counter()
        if not emu:
            self._charge("compute", "train")
        state = {"trainer": self.trainer.state_dict(), "run": {
            "stage": self.stage_i, "stage_samples": self.stage_done, "spent_usd": self.meter.spent,
            "lines": self.meter.ledger.lines, "t_run": self.meter.t, "hardware": self.hw,
            "accuracy": getattr(self, "accuracy", 0.0), "progress": self.progress,
            "stages": [asdict(st) for st in self.stages]}}
        self.charge_storage("checkpoints")  # storage of the checkpoints kept until now
        _, size = save_checkpoint(self.run_dir, state, self.spec.runtime.keep_checkpoints)
        self.kept_bytes = (self.kept_bytes + [size])[-self.spec.runtime.keep_checkpoints:]
        if emu:
            self._charge("checkpoint", reason, seconds=self._virtual_ckpt_s(), bytes=size)
            self.meter.skip_real()
        else:
            self._charge("checkpoint", reason, bytes=size)
            self.ckpt_real = max(self.ckpt_real * 0.5, time.perf_counter() - t0)
        self.ckpt_t = self.meter.t
        self.dirty = False

    def _restore(self, loaded: tuple[dict[str, Any], Path], reason: str) -> None:
        state, path = loaded
        run = state["run"]
        self.trainer.load_state_dict(state["trainer"])
        self.stage_i, self.stage_done = int(run["stage"]), int(run["stage_samples"])
        self.accuracy = float(run.get("accuracy", 0.0))
        self.progress = float(run.get("progress", 0.0))
        if run.get("stages"):
            self.stages = [StagePlan(**st) for st in run["stages"]]
        if hasattr(self, "meter"):
            self.enter_stage()
        old_hw, self.hw = self.hw, str(run.get("hardware", self.hw))
        self._device(self.hw)
        self._regroup(self.stage)  # the checkpoint's stage may run on another number of workers
        lost = self.meter.spent - float(run["spent_usd"])
        lost_s = self.meter.t - float(run.get("t_run", self.meter.t))
        self.meter.event(reason, self.hw, self.stage_name, checkpoint=path.name, lost_usd=lost,
                         lost_s=round(lost_s, 6), from_line=int(run.get("lines", 0)))
        self.event(reason, checkpoint=path.name, lost_usd=lost, lost_s=lost_s, hardware=self.hw)
        self.log(f"{reason}: back to {path.name} (stage {self.stage_i}, {self.trainer.samples_seen} samples); "
                 f"${lost:.3g} of work since it is lost")
        del old_hw
        self.ckpt_t = self.meter.t
        self.next_eval = (self.trainer.samples_seen // self.spec.runtime.eval_every_samples + 1) * \
            self.spec.runtime.eval_every_samples
        offer = self.plan.offer(self.hw)
        restart = offer.switch_s if self.emulated(self.hw) else None
        self._charge("compute", "restore", seconds=restart)

    def _preempted(self) -> bool:
        """The offer is gone: lose the work since the checkpoint, wait (storage charged) until it
        is back, then restore. False when it is not back before the deadline."""
        emu = self.emulated(self.hw)
        now = self.meter.now(emu)
        if not emu:
            self._charge("compute", "train")
        horizon = max(0.0, self.spec.deadline_s - now)
        back = next_available(self.prices, self.hw, now, horizon)
        self.event("preemption", hardware=self.hw, back_at=back)
        self.meter.event("preemption", self.hw, self.stage_name, back_at=back)
        self.dirty = False  # the machine and the work since the checkpoint are gone
        if back is None:
            self.charge_storage("checkpoints while preempted")
            return False
        wait = back - now
        storage = self._storage_rate() * (now + wait - self.storage_t)
        loaded = load_latest(self.run_dir)
        assert loaded is not None  # a checkpoint is taken when the run starts
        # the restore happens on the checkpoint's offer: its restart (and a final checkpoint)
        # is what must fit the budget
        hw = str(loaded[0]["run"].get("hardware", self.hw))
        restart = self.offers[hw].switch_s if self.emulated(hw) else 0.05
        if self.meter.spent + storage + self.meter.cost_ahead(hw, back, restart + 2 * self._ckpt_s()) > self.budget:
            self.charge_storage("checkpoints while preempted")
            self.stop_reason = "budget"
            return False
        self.meter.wait(self.hw, wait, stage=self.stage_name, emulated=emu)
        self.charge_storage("checkpoints while preempted")
        self._restore(loaded, reason="preempted")
        self.dirty = False
        return True
