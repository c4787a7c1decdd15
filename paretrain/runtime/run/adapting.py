"""Carrying out the adaptive side's decisions (``paretrain.runtime.adapt.policy``): a replan's
change (checkpoint before and after, the rollback point kept, the new stages taken up), a
rollback to the state before the last change, a pause over a price peak and a stop for a
target out of reach. The decisions come from ``paretrain.runtime.adapt.adaptation``, which
observes a ``snapshot`` of the run and, when ``learn`` refitted it, the run's own curve."""

from __future__ import annotations

from paretrain.runtime.adapt.adaptation import Change, Snapshot
from paretrain.runtime.adapt.learning import Refit, refit_due
from paretrain.runtime.adapt.policy import Action, Decision
from paretrain.runtime.money.reserve import reserve_s
from paretrain.runtime.run.changes import Refitted, Staged, Stopped, TrainerSynced
from paretrain.runtime.run.faults import unreachable
from paretrain.runtime.run.parts import RunParts
from paretrain.runtime.run.rollback import load_rollback_point, rollback_path, save_rollback_point
from paretrain.runtime.run.stages import enter_stage, take_up_stage

__all__ = ["FIRST_FIT_S", "carry_out", "learn", "pause", "roll_back", "snapshot"]

#: seconds a refit is taken to need on the real clock before one was timed here (a refit's
#: median on a loaded 2-core machine: 0.4-1.0 s), reserved as a step's are (three times over)
FIRST_FIT_S = 1.0


def snapshot(p: RunParts) -> Snapshot:
    """What the adaptive side observes of the run now."""
    st, trainer = p.state, p.group.trainer
    return Snapshot(
        now=p.account.now(st),
        spent=p.meter.spent,
        budget=p.budget,
        reserve_usd=p.guard.reserve_usd(st),
        hw=st.hw,
        stage_i=st.stage_i,
        stages=tuple(st.stages),
        stage_done=st.stage_done,
        progress=st.progress,
        beyond=st.beyond,
        samples=trainer.samples_seen,
        batch_size=trainer.batch_size,
        busy_s=st.busy_s,
        busy_usd=st.busy_usd,
        val_loss=st.val_loss,
        level=st.level,
        held_s=p.account.held_s(),
    )


def learn(p: RunParts) -> Refit | None:
    """Refit the run's curve to its points when one is due (``paretrain.runtime.adapt.learning``)
    and report it. None when none is due, when the points do not fit a curve yet, or when on a
    local offer the refit's seconds (reserved as a step's are) would not fit the budget."""
    st, curve = p.state, p.adaptation.learning
    if not refit_due(len(st.curve_points)):
        return None
    emulated = p.setup.emulated(st.hw)
    if not emulated and p.guard.over_budget(st, extra_s=reserve_s(curve.fit_s or FIRST_FIT_S)):
        return None
    refit = curve.refit(st.curve_points, st.curve_refit)
    if emulated:
        p.meter.skip_real()  # the virtual clock charges what the plan models
    else:
        p.account.charge(st, "compute", "refit")  # the hardware was held meanwhile
    if refit is not None:
        p.apply(Refitted(refit.to_target))
        p.reporting.refit(refit, curve.expected)
    return refit


def carry_out(p: RunParts, decision: Decision) -> str | None:
    """Carry a policy decision out; returns a stop status or None to go on."""
    if decision.action == Action.CONTINUE:
        return None
    if decision.action == Action.STOP:
        d = decision.detail
        return unreachable(p, p.state, decision.reason, float(d["go_on_usd"]), float(d["go_on_s"]))
    if decision.action == Action.PAUSE:
        pause(p, float(decision.detail["until"]), decision.reason)
        return None
    if decision.rollback:
        roll_back(p, decision.reason)
    snap = snapshot(p)
    change = p.adaptation.replan(snap, decision)
    return _take_change(p, change, snap)


def _no_schedule(p: RunParts, reason: str) -> str:
    """The line of a run stopped because no schedule reaches its target within what its budget
    has left (a projection, not the budget spent)."""
    spec, spent = p.setup.spec, p.meter.spent
    capped = spec.budget.project_ceiling_usd is not None and p.budget < spec.budget.train_usd
    raise_what = "budget.project_ceiling_usd" if capped else "budget.envelopes.train"
    return (
        f"run {p.setup.run_id} stopped at step {p.group.trainer.steps}: {reason} (${max(0.0, p.budget - spent):.6g} "
        f"of its ${p.budget:.6g}); spent ${spent:.6g}, the last checkpoint kept. To fix: raise "
        f"{raise_what}, or plan for a lower level, and continue with 'paretrain run PLAN --candidate "
        f"{p.setup.cand.id} --resume'"
    )


def _take_change(p: RunParts, change: Change, snap: Snapshot) -> str | None:
    st = p.state
    p.events("replan", **change.record)
    p.events.ledger(
        "replan", st, **{k: v for k, v in change.record.items() if k not in ("stages", "step_factor")}
    )
    p.log(
        f"replan at {snap.now:.1f} s: {change.reason} (predicted rest "
        f"${change.record['old_cost_usd']:.3g} / {change.record['old_wall_s']:.1f} s -> "
        f"${change.record['new_cost_usd']:.3g} / {change.record['new_wall_s']:.1f} s)"
    )
    if change.action == Action.CONTINUE:
        return None
    if change.action == Action.STOP:
        p.apply(Stopped(_no_schedule(p, change.reason)))
        return "budget"
    if change.first is not None and p.guard.change_over_budget(st, change.first[0]):
        p.events("replan_unaffordable", reason="the checkpoint and move do not fit the budget left")
        return "budget"
    p.recovery.checkpoint(st, "before adaptation")
    save_rollback_point(p.setup.run_dir, p.group.trainer, st)
    p.adaptation.committed(change, snap)
    p.apply(Staged(st.stage_i, 0, stages=(*st.stages[: st.stage_i], *change.stages)))
    take_up_stage(p)
    p.recovery.checkpoint(st, "after adaptation")  # resume and preemption restore to the new plan, here
    return None


def roll_back(p: RunParts, reason: str) -> None:
    """Back to the state just before the last adaptation; its option is avoided from now on."""
    if not rollback_path(p.setup.run_dir).exists():
        return
    stages = p.adaptation.rollback()
    if stages is None:
        return
    saved = load_rollback_point(p.setup.run_dir)
    if saved is None:
        return
    st, trainer = p.state, p.group.trainer
    trainer.load_state_dict(saved["trainer"])
    run = saved["run"]
    p.apply(
        Staged(int(run["stage"]), int(run["stage_samples"]), stages=stages, progress=float(run["progress"]))
    )
    p.apply(TrainerSynced(trainer.samples_seen, trainer.batch_size))
    enter_stage(p)
    if str(run["hardware"]) != st.hw:
        p.recovery.move_to(st, str(run["hardware"]))
    p.events("rollback", reason=reason, bad=sorted(map(list, p.adaptation.bad)))
    p.events.ledger("rollback", st, reason=reason)


def pause(p: RunParts, until: float, reason: str) -> bool:
    """Pause until run time ``until`` (a price peak with deadline slack): checkpoint, let the
    machine go, wait with storage charged only. False when the checkpoint and the storage of
    the wait do not fit the budget: the run keeps going (the cap holds)."""
    st, meter = p.state, p.meter
    emu = p.setup.emulated(st.hw)
    if p.guard.change_over_budget(st, st.hw, extra_s=until - meter.now(emu)):
        return False
    p.recovery.checkpoint(st, "pause")
    now = meter.now(emu)
    p.events("pause", reason=reason, until=until, seconds=until - now)
    p.events.ledger("pause", st, reason=reason, seconds=round(until - now, 6))
    p.account.settle(st)  # the machine is let go while paused
    meter.wait(st.hw, until - now, stage=st.stage_name, emulated=emu)
    p.account.open_hold(st)
    p.apply(p.account.charge_storage(st, "checkpoints while paused"))
    meter.skip_real()
    p.adaptation.paused()
    return True
