"""The planning pipeline on this machine: inputs checked, profile (cached), offers, MILP, plan.

``check_inputs`` reads every file and checks every name a spec points to (catalog, allowed
offers, ``profiles:`` files, a ``python:`` workload's module and factory, the search storage)
before anything is measured, so bad input costs nothing and writes nothing.

Folders under the working directory's ``.paretrain/``: ``cache/`` (generated data),
``profiles/`` (profile files by key), ``ledger/`` (one JSONL ledger per run or profiling),
``runs/`` (checkpoints, events, status per run), ``spool/`` (tracking records to replay).
"""

from __future__ import annotations

import fnmatch
import os
import socket
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from planner.catalog import Offer, builtin_catalog_text, local_offers, parse_catalog
from planner.errors import InputError, SpecError
from planner.milp import pareto_front
from planner.plan import Plan, make_plan
from planner.build import build_problem
from planner.profile import Profile, build_profile, merge_profiles, profile_key
from planner.space import Config
from planner.spec import Spec
from runtime.train.devices import local_devices
from runtime.files import read_profile, read_text, write_profile
from runtime.train.lab import TorchLab
from runtime.money.ledger import Ledger
from runtime.train.workloads import load_workload

__all__ = ["Workspace", "check_inputs", "check_workload", "check_storage", "read_spec_profiles", "offers_for",
           "allowed_offers", "get_profile", "plan_spec", "search_spec"]


@dataclass(frozen=True)
class Workspace:
    root: Path

    @property
    def state(self) -> Path:
        return self.root / ".paretrain"

    @property
    def cache(self) -> Path:
        return self.state / "cache"

    @property
    def profiles(self) -> Path:
        return self.state / "profiles"

    @property
    def ledgers(self) -> Path:
        return self.state / "ledger"

    @property
    def spool(self) -> Path:
        return self.state / "spool" / "tracking.jsonl"


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
        catalog = parse_catalog(builtin_catalog_text(), "planner/data/catalog.csv")
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
                raise SpecError(spec.path, f"hardware.allow[{i}]", "is not an offer on this machine or in the "
                                "catalog", entry, f"use one of: {here}, or a pattern such as aws/* or *")
            if known[entry].spot and not spec.hardware.spot:
                raise SpecError(spec.path, f"hardware.allow[{i}]", "is a spot offer but hardware.spot is false",
                                entry, "set hardware.spot: true or allow the on-demand offer")
            chosen.setdefault(entry, known[entry])
            continue
        matched = [o for oid, o in known.items() if fnmatch.fnmatchcase(oid, entry)]
        if not matched:
            raise SpecError(spec.path, f"hardware.allow[{i}]", "is a pattern that matches no offer on this "
                            "machine or in the catalog", entry, f"match one of: {here}")
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
        notes.append(f"{len(unmatched)} of {len(catalog)} catalog offers left out, not named or matched by "
                     f"hardware.allow (patterns such as aws/* or * allow them): {', '.join(unmatched)}")
    return notes


def read_spec_profiles(spec: Spec) -> list[Profile]:
    """The profile files the spec's ``profiles:`` names, read and validated."""
    out = []
    for i, path in enumerate(spec.profiles):
        if not Path(path).is_file():
            raise SpecError(spec.path, f"profiles[{i}]", "must name an existing profile file", path,
                            "correct the path (relative to the working directory), or write the file with "
                            "'paretrain profile SPEC -o FILE' on the machine it measures")
        out.append(read_profile(path))
    return out


def check_workload(spec: Spec) -> None:
    """A user's workload imports, its factory runs and returns a workload (its data and models
    are built only when used); built-in names are checked by the spec itself."""
    if spec.workload.builtin:
        return
    from runtime.train.workloads import user_workload_info

    user_workload_info(spec.workload.name, spec.workload.args, spec.path)


def check_storage(storage: str, where: str = "search.storage") -> None:
    """A file-backed Optuna storage (sqlite:///FILE, journal:FILE) lives in an existing folder."""
    for prefix in ("sqlite:///", "journal:"):
        if storage.startswith(prefix):
            folder = Path(storage[len(prefix):]).parent
            if not folder.is_dir():
                raise InputError(f"{where}: the folder of {storage} does not exist ({folder}). To fix: "
                                 "create it, or point the storage elsewhere")


def check_inputs(spec: Spec, *, search: bool = False, storage: str | None = None) -> list[Offer]:
    """Check everything the spec names before any money is spent; returns the allowed offers."""
    offers = offers_for(spec)
    read_spec_profiles(spec)
    check_workload(spec)
    if search:
        check_storage(storage or spec.search.storage, "--storage" if storage else "search.storage")
    return offers


def _convergence_device(offers: Sequence[Offer]) -> str | None:
    """Where convergence and noise runs train: the allowed local CPU with the most threads (a
    spec allowing only local/cpu-1 must not have them run, and be charged, on two threads);
    None (the lab's own choice) when no local CPU is allowed."""
    cpus = [o for o in offers if o.local and o.kind == "cpu"]
    return max(cpus, key=lambda o: o.threads).id if cpus else None


def get_profile(spec: Spec, ws: Workspace, configs: Sequence[Config], offers: Sequence[Offer], *,
                progress: Callable[[str, int, int], None] | None = None, force: bool = False) -> tuple[Profile, bool]:
    """The profile for this spec, configs and machine: reused from ``profiles/`` while its key
    is unchanged, else measured for real (charged to the profile envelope). Returns
    (profile, reused)."""
    brought = read_spec_profiles(spec)  # a bad file must fail before anything is measured
    workload = load_workload(spec.workload, ws.cache)
    # every local device is priced, also one measured only as the reference for catalog offers
    prices = {o.id: o.price_usd_per_h for o in local_offers(local_devices(), replace(spec.hardware, local="auto"))}
    lab_probe = TorchLab(workload, prices_usd_per_h=prices, seed=spec.workload.seed)
    key = profile_key(spec, lab_probe.fingerprint(), configs)
    path = ws.profiles / f"{key}.json"
    if path.exists() and not force:
        profile = read_profile(path)
        reused = True
    else:
        ledger = Ledger(ws.ledgers / f"profile-{key[:12]}.jsonl", f"profile-{key[:12]}")
        try:
            cap = ledger.spent + spec.budget.profile_usd
            lab = TorchLab(workload, prices_usd_per_h=prices, ledger=ledger, cap_usd=cap,
                           seed=spec.workload.seed, metric=spec.target.metric_obj,
                           convergence_device=_convergence_device(offers))
            start = ledger.spent
            profile = build_profile(spec, lab, configs, progress=progress, key=key,
                                    measured_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            profile = replace(profile, spend_usd=ledger.spent - start)
        finally:
            ledger.close()
        write_profile(profile, path)
        reused = False
    if brought:
        profile = merge_profiles(profile, brought)
    return profile, reused


def plan_spec(spec: Spec, ws: Workspace, *, progress: Callable[[str, int, int], None] | None = None,
              force_profile: bool = False, search_configs: Sequence[Config] = ()) -> tuple[Plan, Profile, bool]:
    """Profile (cached), build the program, sweep the Pareto set, and make the plan. The
    configs are the spec's and ``search_configs`` (the search's front)."""
    offers, left_out = allowed_offers(spec)
    configs = list(spec.configs) + [c for c in search_configs if c.id not in {x.id for x in spec.configs}]
    profile, reused = get_profile(spec, ws, configs, offers, progress=progress, force=force_profile)
    problem, ctx = build_problem(spec, offers, profile, configs)
    front = pareto_front(problem, spec.planner.solver, spec.planner.time_limit_s, spec.planner.pareto_points)
    plan = make_plan(spec_data=dict(spec.data), spec_digest=spec.digest, profile_key=profile.key,
                     problem=problem, ctx=ctx, front=front, configs=configs, offers=offers,
                     solver=spec.planner.solver)
    plan = replace(plan, notes=tuple(left_out) + plan.notes)
    return plan, profile, reused


def search_spec(spec: Spec, ws: Workspace, *, storage: str | None = None, trials: int | None = None,
                tracker: Any = None, parent: str | None = None,
                progress: Callable[[str, int, int], None] | None = None) -> Any:
    """Run (or continue) the spec's Optuna study on this machine; every trial is charged to
    the ``search`` envelope in this worker's ledger, and logged as a child run in MLflow."""
    from planner.search import open_study, run_search
    from runtime.tracking.search_log import log_trial
    workload = load_workload(spec.workload, ws.cache)
    info = workload.info
    name = spec.search.study or spec.name
    study = open_study(storage or spec.search.storage, name, spec.search.sampler, spec.search.seed)
    prices = {o.id: o.price_usd_per_h for o in local_offers(local_devices(), replace(spec.hardware, local="auto"))}
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
    ledger = Ledger(ws.ledgers / f"search-{safe}-{socket.gethostname()}-{os.getpid()}.jsonl",
                    f"search-{safe}-{os.getpid()}")
    target = trials if trials is not None else spec.search.trials

    def on_trial(t: Any, config: Any) -> None:
        if progress:
            m = spec.target.metric_obj
            progress(f"trial {t.number} {config.family}: {m.name} {m.level(t.values[0]):.3f}", t.number + 1, target)
        log_trial(tracker, parent, name, t, config, spec.target.metric_obj)

    try:
        lab = TorchLab(workload, prices_usd_per_h=prices, ledger=ledger, seed=spec.search.seed,
                       metric=spec.target.metric_obj, search_ledgers=lambda: sorted(ws.ledgers.glob(f"search-{safe}-*.jsonl")))
        return run_search(spec, lab, study, info, trials=target, on_trial=on_trial)
    finally:
        ledger.close()
