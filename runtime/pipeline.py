"""The planning pipeline on this machine: profile (cached), offers, MILP, plan.

Folders under the working directory's ``.paretrain/``: ``cache/`` (generated data),
``profiles/`` (profile files by key), ``ledger/`` (one JSONL ledger per run or profiling),
``runs/`` (checkpoints, events, status per run), ``spool/`` (tracking records to replay).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from planner.catalog import Offer, builtin_catalog_text, local_offers, parse_catalog
from planner.errors import SpecError
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

__all__ = ["Workspace", "offers_for", "get_profile", "plan_spec", "search_spec"]


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
    local = local_offers(local_devices(), spec.hardware)
    catalog: list[Offer] = []
    if spec.hardware.catalog == "builtin":
        catalog = parse_catalog(builtin_catalog_text(), "planner/data/catalog.csv")
    elif spec.hardware.catalog != "none":
        path = spec.hardware.catalog
        catalog = parse_catalog(read_text(path, "catalog", "fix hardware.catalog in the spec"), path)
    known = {o.id: o for o in local + catalog}
    chosen = []
    for i, oid in enumerate(spec.hardware.allow):
        if oid not in known:
            here = ", ".join(sorted(known)) or "none"
            raise SpecError(spec.path, f"hardware.allow[{i}]", "is not an offer on this machine or in the "
                            "catalog", oid, f"use one of: {here}")
        o = known[oid]
        if o.spot and not spec.hardware.spot:
            raise SpecError(spec.path, f"hardware.allow[{i}]", "is a spot offer but hardware.spot is false",
                            oid, "set hardware.spot: true or allow the on-demand offer")
        chosen.append(o)
    return chosen


def get_profile(spec: Spec, ws: Workspace, configs: Sequence[Config], offers: Sequence[Offer], *,
                progress: Callable[[str, int, int], None] | None = None, force: bool = False) -> tuple[Profile, bool]:
    """The profile for this spec, configs and machine: reused from ``profiles/`` while its key
    is unchanged, else measured for real (charged to the profile envelope). Returns
    (profile, reused)."""
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
                           seed=spec.workload.seed)
            start = ledger.spent
            profile = build_profile(spec, lab, configs, progress=progress, key=key,
                                    measured_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            profile = replace(profile, spend_usd=ledger.spent - start)
        finally:
            ledger.close()
        write_profile(profile, path)
        reused = False
    if spec.profiles:
        profile = merge_profiles(profile, [read_profile(p) for p in spec.profiles])
    return profile, reused


def plan_spec(spec: Spec, ws: Workspace, *, progress: Callable[[str, int, int], None] | None = None,
              force_profile: bool = False, search_configs: Sequence[Config] = ()) -> tuple[Plan, Profile, bool]:
    """Profile (cached), build the program, sweep the Pareto set, and make the plan. The
    configs are the spec's and ``search_configs`` (the search's front)."""
    offers = offers_for(spec)
    configs = list(spec.configs) + [c for c in search_configs if c.id not in {x.id for x in spec.configs}]
    profile, reused = get_profile(spec, ws, configs, offers, progress=progress, force=force_profile)
    problem, ctx = build_problem(spec, offers, profile, configs)
    front = pareto_front(problem, spec.planner.solver, spec.planner.time_limit_s, spec.planner.pareto_points)
    plan = make_plan(spec_data=dict(spec.data), spec_digest=spec.digest, profile_key=profile.key,
                     problem=problem, ctx=ctx, front=front, configs=configs, offers=offers,
                     solver=spec.planner.solver)
    return plan, profile, reused


def search_spec(spec: Spec, ws: Workspace, *, storage: str | None = None, trials: int | None = None,
                tracker: Any = None, parent: str | None = None,
                progress: Callable[[str, int, int], None] | None = None) -> Any:
    """Run (or continue) the spec's Optuna study on this machine; every trial is charged to
    the ``search`` envelope in this worker's ledger, and logged as a child run in MLflow."""
    import os
    import socket

    from planner.search import open_study, run_search
    from runtime.train.workloads import WORKLOADS

    workload = load_workload(spec.workload, ws.cache)
    info = WORKLOADS.get(spec.workload.name) or workload.info
    name = spec.search.study or spec.name
    prices = {o.id: o.price_usd_per_h for o in local_offers(local_devices(), replace(spec.hardware, local="auto"))}
    ws.ledgers.mkdir(parents=True, exist_ok=True)
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
    ledger = Ledger(ws.ledgers / f"search-{safe}-{socket.gethostname()}-{os.getpid()}.jsonl",
                    f"search-{safe}-{os.getpid()}")
    target = trials if trials is not None else spec.search.trials
    done = [0]

    def on_trial(t: Any, config: Any) -> None:
        done[0] += 1
        if progress:
            progress(f"trial {t.number} {config.family}: acc {t.values[0]:.3f}", t.number + 1, target)
        if tracker is not None:
            child = tracker.start_run(f"trial-{t.number}-{config.family}", parent=parent, tags={
                "paretrain.kind": "trial", "paretrain.study": name, "paretrain.trial": str(t.number),
                "paretrain.extrapolated": str(bool(t.user_attrs.get("extrapolated"))).lower()},
                params={**{k: v for k, v in config.to_dict().items() if k != "id"}, "trial": t.number})
            tracker.log_metrics(child, {"val_accuracy": t.values[0], "cost_usd": t.values[1],
                                        "latency_ms": t.values[2], "spend_usd": t.user_attrs.get("spend_usd", 0.0),
                                        "params": t.user_attrs.get("params", 0)})
            tracker.end_run(child)

    try:
        lab = TorchLab(workload, prices_usd_per_h=prices, ledger=ledger, seed=spec.search.seed,
                       search_ledgers=lambda: sorted(ws.ledgers.glob(f"search-{safe}-*.jsonl")))
        study = open_study(storage or spec.search.storage, name, spec.search.sampler, spec.search.seed)
        return run_search(spec, lab, study, info, trials=target, on_trial=on_trial)
    finally:
        ledger.close()
