"""The planning pipeline on this machine: inputs checked, the profile (cached:
``paretrain.runtime.profiling``), offers, the front, the plan.

``check_inputs`` reads every file and checks every name a spec points to (catalog, allowed
offers, ``profiles:`` files, a ``python:`` workload's module and factory, the search storage)
before anything is measured, so bad input costs nothing and writes nothing. Where the files
go: ``paretrain.runtime.workspace``; the search itself: ``paretrain.runtime.trials``.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from paretrain.planner.errors import SpecError
from paretrain.planner.inputs.catalog import Offer, builtin_catalog_text, local_offers, parse_catalog
from paretrain.planner.inputs.space import Config
from paretrain.planner.inputs.spec import Spec
from paretrain.planner.measure.profile import Profile
from paretrain.planner.plan.make import make_plan
from paretrain.planner.plan.plan import Plan
from paretrain.planner.program.build import build_problem
from paretrain.planner.program.milp import pareto_front
from paretrain.runtime.files import read_text, sha256_file
from paretrain.runtime.profiling import get_profile, read_spec_profiles
from paretrain.runtime.train.devices import local_devices
from paretrain.runtime.train.signals import MeasureInterrupted, StopFlag
from paretrain.runtime.train.workloads import load_workload
from paretrain.runtime.workspace import Workspace

__all__ = [
    "Workspace",
    "allowed_offers",
    "check_inputs",
    "check_storage",
    "check_workload",
    "get_profile",
    "offers_for",
    "plan_spec",
    "read_spec_profiles",
    "search_spec",
    "usable_checkpoints",
]


def offers_for(spec: Spec) -> list[Offer]:
    """The offers the spec allows: local devices present here and catalog rows."""
    return allowed_offers(spec)[0]


def allowed_offers(spec: Spec) -> tuple[list[Offer], list[str]]:
    """The offers ``hardware.allow`` names or matches (fnmatch patterns: ``aws/*``, ``*:spot``,
    ``*``), and notes naming the catalog offers left out and why. A name that is no offer, or a
    pattern that matches none, is a ``SpecError``; a spot offer named while ``hardware.spot`` is
    false too, while one only matched by a pattern is left out with a note."""
    local = local_offers(local_devices(), spec.hardware)
    catalog: list[Offer] = []
    if spec.hardware.catalog == "builtin":
        catalog = parse_catalog(builtin_catalog_text(), "paretrain/planner/inputs/data/catalog.csv")
    elif spec.hardware.catalog != "none":
        path = spec.hardware.catalog
        catalog = parse_catalog(read_text(path, "catalog", "fix hardware.catalog in the spec"), path)
    known = {o.id: o for o in local + catalog}
    here = ", ".join(sorted(known)) or "none"
    chosen: dict[str, Offer] = {}
    no_spot: set[str] = set()
    for i, entry in enumerate(spec.hardware.allow):
        if not any(ch in entry for ch in "*?["):
            if entry not in known:
                raise SpecError(
                    spec.path,
                    f"hardware.allow[{i}]",
                    "is not an offer on this machine or in the catalog",
                    entry,
                    f"use one of: {here}, or a pattern such as aws/* or *",
                )
            if known[entry].spot and not spec.hardware.spot:
                raise SpecError(
                    spec.path,
                    f"hardware.allow[{i}]",
                    "is a spot offer but hardware.spot is false",
                    entry,
                    "set hardware.spot: true or allow the on-demand offer",
                )
            chosen.setdefault(entry, known[entry])
            continue
        matched = [o for oid, o in known.items() if fnmatch.fnmatchcase(oid, entry)]
        if not matched:
            raise SpecError(
                spec.path,
                f"hardware.allow[{i}]",
                "is a pattern that matches no offer on this machine or in the catalog",
                entry,
                f"match one of: {here}",
            )
        for o in matched:
            if o.spot and not spec.hardware.spot:
                no_spot.add(o.id)
            else:
                chosen.setdefault(o.id, o)
    return list(chosen.values()), _left_out_notes(catalog, chosen, no_spot)


def _left_out_notes(catalog: Sequence[Offer], chosen: dict[str, Offer], no_spot: set[str]) -> list[str]:
    """Which catalog offers the allow list leaves out, and why."""
    notes = []
    spot = [o.id for o in catalog if o.id in no_spot and o.id not in chosen]
    if spot:
        notes.append(f"{len(spot)} catalog spot offer(s) left out, hardware.spot is false: {', '.join(spot)}")
    unmatched = [o.id for o in catalog if o.id not in chosen and o.id not in no_spot]
    if unmatched:
        notes.append(
            f"{len(unmatched)} of {len(catalog)} catalog offers left out, not named or matched by "
            f"hardware.allow (patterns such as aws/* or * allow them): {', '.join(unmatched)}"
        )
    return notes


def check_workload(spec: Spec) -> None:
    """A user's workload imports, its factory runs and returns a workload, and the dry check
    (``paretrain.runtime.train.dry_check``, not charged) runs the spec's configs on a tiny batch;
    built-in names are checked by the spec itself."""
    if spec.workload.builtin:
        return
    from paretrain.runtime.train.dry_check import dry_check
    from paretrain.runtime.train.workloads import user_workload_info

    user_workload_info(spec.workload.name, spec.workload.args, spec.path)
    workload = load_workload(spec.workload)
    dry_check(workload, spec.workload.name, spec.configs, spec.target.metric, spec.planner.batch_sizes)


def check_storage(storage: str, where: str = "search.storage") -> None:
    """The search storage can hold the study: a file storage's folder exists; an RDB URL's
    driver is installed and its server answers (``paretrain.runtime.trials.storage``)."""
    from paretrain.runtime.trials.storage import check_storage as check

    check(storage, where)


def check_inputs(spec: Spec, *, search: bool = False, storage: str | None = None) -> list[Offer]:
    """Check everything the spec names before any money is spent; returns the allowed offers."""
    offers = offers_for(spec)
    read_spec_profiles(spec)
    check_workload(spec)
    if search:
        check_storage(storage or spec.search.storage, "--storage" if storage else "search.storage")
    return offers


def _stop_here(stop: StopFlag | None, profile: Profile, reused: bool) -> None:
    """A signal caught after the profile: stop before the plan is solved and written."""
    if stop is None or stop.signum is None:
        return
    err = MeasureInterrupted(stop.signum)
    kept = "reused" if reused else f"measured for ${profile.spend_usd:.6g} and kept"
    raise MeasureInterrupted(
        stop.signum,
        f"planning stopped by {err.signal_name} after the profile ({kept}: the next plan reuses "
        "it); no plan was written. To continue: run the same command again",
    )


def plan_spec(
    spec: Spec,
    ws: Workspace,
    *,
    progress: Callable[[str, int, int], None] | None = None,
    force_profile: bool = False,
    search_configs: Sequence[Config] = (),
    stop: StopFlag | None = None,
    note: Callable[[str], None] | None = None,
) -> tuple[Plan, Profile, bool]:
    """Profile (cached), build the program, sweep the Pareto set, and make the plan. The
    configs are the spec's and ``search_configs`` (the search's front). A signal caught by
    ``stop`` ends it at the next unit of measuring, or after the profile, before the solve."""
    offers, left_out = allowed_offers(spec)
    configs = list(spec.configs) + [c for c in search_configs if c.id not in {x.id for x in spec.configs}]
    profile, reused = get_profile(
        spec, ws, configs, offers, progress=progress, force=force_profile, stop=stop, note=note
    )
    _stop_here(stop, profile, reused)
    profile, unusable = usable_checkpoints(profile, ws.profiles)
    problem, ctx = build_problem(spec, offers, profile, configs)
    front = pareto_front(problem, spec.planner.solver, spec.planner.time_limit_s, spec.planner.pareto_points)
    plan = make_plan(
        spec=spec,
        profile_key=profile.key,
        problem=problem,
        ctx=ctx,
        front=front,
        configs=configs,
        offers=offers,
        solver=spec.planner.solver,
    )
    plan = replace(plan, notes=tuple(left_out) + tuple(unusable) + plan.notes)
    return plan, profile, reused


def usable_checkpoints(profile: Profile, folder: Path) -> tuple[Profile, list[str]]:
    """The profile less the checkpoints whose file (relative to ``folder``, the profile file's)
    is gone or no longer has its digest, and a note for each one left out: no run is planned to
    start from a file it could not load."""
    kept, notes = [], []
    for ck in profile.checkpoints:
        path = folder / ck.path
        try:
            ok = sha256_file(path) == ck.sha256
            why = "has changed since the profile wrote it"
        except OSError:
            ok, why = False, "is missing"
        if ok:
            kept.append(ck)
        else:
            notes.append(
                f"{ck.config_id}: the profile's checkpoint {path} {why}; its runs start from scratch "
                "(to fix: paretrain plan --reprofile)"
            )
    return replace(profile, checkpoints=tuple(kept)), notes


def search_spec(
    spec: Spec,
    ws: Workspace,
    *,
    storage: str | None = None,
    trials: int | None = None,
    tracker: Any = None,
    parent: str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    workers: int = 1,
) -> Any:
    """Run (or continue) the spec's Optuna study: in this process, or in ``workers`` worker
    processes on this machine (``paretrain.runtime.trials``); every trial holds its money in the
    study's one search envelope, is charged to its worker's ledger and logged as a child run
    in MLflow."""
    from paretrain.runtime.trials.trial_worker import search_worker

    if workers <= 1:
        return search_worker(
            spec, ws, storage=storage, trials=trials, tracker=tracker, parent=parent, progress=progress
        )
    from paretrain.runtime.trials.pool import WorkerJob, run_pool, wait_run_id

    job = WorkerJob(
        spec,
        str(ws.root.resolve()),
        storage,
        trials if trials is not None else spec.search.trials,
        tracker.uri if tracker is not None else None,
        tracker.experiment if tracker is not None else "",
        wait_run_id(tracker, parent),
        threads=max(1, (os.cpu_count() or 1) // workers),
    )
    return run_pool(job, workers, progress=progress)
