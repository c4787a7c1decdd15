"""A run's fixed facts (``paretrain.runtime.run.state.RunSetup``) from its plan, candidate and
working folder: its id, where its files go, and which offers are here or emulated; and its
workload, loaded and dry-checked before the ledger opens (``checked_workload``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from paretrain.planner.errors import InputError
from paretrain.planner.inputs.spec import Spec
from paretrain.planner.plan.plan import Candidate, Plan
from paretrain.runtime.run.state import RunSetup
from paretrain.runtime.train.devices import local_devices
from paretrain.runtime.train.dry_check import dry_check
from paretrain.runtime.train.workloads import load_workload
from paretrain.runtime.workspace import Workspace

__all__ = ["checked_workload", "claim_run_id", "run_setup"]


def checked_workload(plan: Plan, cand: Candidate, workdir: Path) -> Any:
    """The candidate's workload, loaded; a user's workload passes the dry check on the
    candidate's config (a searched one; the spec's are checked with the plan's spec) first (``paretrain.runtime.train.dry_check``, not charged): a fault is a
    ``WorkloadError`` (exit 2) before anything is written."""
    spec, config = plan.spec, plan.config(cand.config_id)
    workload = load_workload(spec.workload, Workspace(Path(workdir)).cache)
    # the spec's own configs were checked with the plan's spec (``pipeline.check_workload``)
    if not spec.workload.builtin and config.id not in {c.id for c in spec.configs}:
        dry_check(workload, spec.workload.name, [config], target=spec.target.metric)
    return workload


def run_setup(
    plan: Plan, cand: Candidate, workdir: Path, run_id: str | None = None, spec: Spec | None = None
) -> RunSetup:
    """The run's fixed facts; ``InputError`` when a stage's local hardware is not here. A new
    run (no ``run_id``) claims its id once the inputs are checked (``claim_run_id``)."""
    spec = spec or plan.spec
    rid = run_id or f"run-{plan.fingerprint[:8]}-{cand.id}-{time.strftime('%Y%m%dT%H%M%S')}"
    devices = local_devices()
    local = frozenset(d.id for d in devices)
    cpus = sorted((d for d in devices if d.kind == "cpu"), key=lambda d: d.threads)
    emulate_on = spec.runtime.emulate_on or (cpus[-1].id if cpus else "local/cpu-1")
    if emulate_on not in local:
        raise InputError(
            f"runtime.emulate_on: {emulate_on} is not a device here (here: "
            f"{', '.join(sorted(local))}). To fix: name a local device"
        )
    for st in cand.stages:
        if plan.offer(st.hardware).local and st.hardware not in local:
            raise InputError(
                f"plan stage {st.index} uses {st.hardware}, which is not present on this "
                f"machine (here: {', '.join(sorted(local))}). To fix: plan on this "
                "machine, or run the plan where that hardware is"
            )
    state = Path(workdir) / ".paretrain"
    if run_id is None:
        rid = claim_run_id(state, rid)
    return RunSetup(
        plan=plan,
        cand=cand,
        spec=spec,
        run_id=rid,
        run_dir=state / "runs" / rid,
        ledger_path=state / "ledger" / f"{rid}.jsonl",
        local=local,
        emulate_on=emulate_on,
    )


def claim_run_id(state: Path, base: str) -> str:
    """A new run's id: ``base`` (the plan, the candidate and the second it started), or ``base-2``,
    ``base-3``, ... when another run took it, started in the same second by another process.
    The id is claimed by making the run's folder, which only one process can do; an id whose
    ledger exists (a run folder removed by hand) is not reused either: two runs never write one
    ledger."""
    runs = state / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    rid, k = base, 1
    while True:
        if not (state / "ledger" / f"{rid}.jsonl").exists():
            try:
                (runs / rid).mkdir()
                return rid
            except FileExistsError:
                pass
        k += 1
        rid = f"{base}-{k}"
