"""A run's inputs, read and checked before any money is spent: the plan, its spec, the
candidate, the price trace, the workload, and what ``--resume`` should do.

Every fault is a ``UserError`` (exit 2, one line, nothing written); nothing here charges,
trains or logs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paretrain.planner.inputs.spec import Spec
from paretrain.planner.plan.plan import Candidate, Plan
from paretrain.planner.plan.plan_file import plan_from_json
from paretrain.runtime.files import read_text
from paretrain.runtime.pipeline import check_workload
from paretrain.runtime.run.runs import FINISHED, last_run

__all__ = ["ResumeChoice", "choose_resume", "plan_spec_of", "read_plan", "read_prices"]


def read_plan(path: Path) -> Plan:
    return plan_from_json(read_text(path, "plan", "write one with 'paretrain plan SPEC -o PLAN'"), str(path))


def plan_spec_of(plan: Plan) -> Spec:
    """The plan's spec (validated when the plan file was read), its workload importable."""
    check_workload(plan.spec)
    return plan.spec


def read_prices(path: Path | None, plan: Plan) -> Any:
    """The ``--prices`` trace as a price source over the plan's offers (None without one)."""
    if path is None:
        return None
    from paretrain.runtime.money.prices import TracePrices, parse_trace

    base = {o.id: o.price_usd_per_h for o in plan.offers}
    rows = parse_trace(
        read_text(path, "price trace", "give a CSV price trace (t_s, hardware, price_usd_per_h, available)"),
        str(path),
        base,
    )
    return TracePrices(rows, base)


@dataclass(frozen=True, slots=True)
class ResumeChoice:
    """What ``run --resume`` does: continue ``run_id``, start afresh (``run_id`` None), or
    nothing (``finished``). ``message`` is the one line that says so."""

    run_id: str | None
    finished: bool
    message: str


def choose_resume(workdir: Path, plan: Plan, cand: Candidate) -> ResumeChoice:
    """Idempotent ``--resume``, for crash-restart loops: a finished run stays finished (exit 0),
    an unfinished one continues, and with no run at all one starts."""
    last = last_run(workdir, plan.fingerprint, cand.id)
    if last is None:
        return ResumeChoice(
            None,
            False,
            f"--resume: no run of candidate {cand.id} of plan {plan.fingerprint} yet; starting one",
        )
    run_id, status = last
    if status == FINISHED:
        return ResumeChoice(
            run_id,
            True,
            f"run {run_id} of candidate {cand.id} already finished (reached its target); nothing to resume",
        )
    return ResumeChoice(run_id, False, f"--resume: continuing run {run_id} (last status: {status})")
