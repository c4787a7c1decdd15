"""A spec's profile on this machine: read from ``profiles/`` while its key is unchanged, else
measured for real under the profile envelope and written whole.

The envelope holds across the attempts at one profile (``paretrain.runtime.money.profile_account``):
a measurement that a signal or a fault stopped wrote nothing, but what it spent counts against the
next attempt. A member of the user's workload that raises mid-measurement has the time it took
charged all the same (``TorchLab.settle``). The planning around it: ``paretrain.runtime.pipeline``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from paretrain.planner.errors import BudgetExhausted, SpecError
from paretrain.planner.inputs.catalog import Offer, local_offers
from paretrain.planner.inputs.space import Config
from paretrain.planner.inputs.spec import Spec
from paretrain.planner.measure.profile import Profile, build_profile, merge_profiles, profile_key
from paretrain.runtime.files import read_profile, write_profile
from paretrain.runtime.locks import held
from paretrain.runtime.money.ledger import Ledger
from paretrain.runtime.money.profile_account import has_mark, mark_written, open_spend
from paretrain.runtime.train.deadline import Deadline
from paretrain.runtime.train.devices import local_devices
from paretrain.runtime.train.process_setup import warm_up_torch
from paretrain.runtime.train.signals import MeasureInterrupted, StopFlag
from paretrain.runtime.train.torch_lab import TorchLab
from paretrain.runtime.train.workloads import load_workload, prepare_data, workload_source_digest
from paretrain.runtime.workspace import Workspace

__all__ = ["get_profile", "read_spec_profiles"]


def read_spec_profiles(spec: Spec) -> list[Profile]:
    """The profile files the spec's ``profiles:`` names, read and validated."""
    out = []
    for i, path in enumerate(spec.profiles):
        if not Path(path).is_file():
            raise SpecError(
                spec.path,
                f"profiles[{i}]",
                "must name an existing profile file",
                path,
                "correct the path (relative to the working directory), or write the file with "
                "'paretrain profile SPEC -o FILE' on the machine it measures",
            )
        out.append(read_profile(path))
    return out


def _convergence_device(offers: Sequence[Offer]) -> str | None:
    """The lab's default device for convergence and noise runs: the allowed local CPU with the
    most threads (a spec allowing only local/cpu-1 must not have them run, and be charged, on two
    threads); None (the lab's own choice) when no local CPU is allowed. A convergence run trains
    on the allowed CPU where a sample of its config costs least instead
    (``paretrain.planner.measure.profile.convergence_cpu``) when the profile measured one."""
    cpus = [o for o in offers if o.local and o.kind == "cpu"]
    return max(cpus, key=lambda o: o.threads).id if cpus else None


def key_of(spec: Spec, configs: Sequence[Config]) -> str:
    """The key of the profile that ``spec`` and ``configs`` need here: the spec content it
    depends on, the machine, the measuring code and a user workload's code
    (``workload_source_digest``); a change to any of them measures anew."""
    code = f"{TorchLab.fingerprint_here()}-{workload_source_digest(spec.workload.name)}"
    return profile_key(spec, code, configs)


def get_profile(
    spec: Spec,
    ws: Workspace,
    configs: Sequence[Config],
    offers: Sequence[Offer],
    *,
    progress: Callable[[str, int, int], None] | None = None,
    force: bool = False,
    stop: StopFlag | None = None,
    note: Callable[[str], None] | None = None,
) -> tuple[Profile, bool]:
    """The profile for this spec, configs and machine: reused from ``profiles/`` while its key
    is unchanged, else measured for real (charged to the profile envelope; truncated runs keep
    their last state in ``profiles/KEY.checkpoints/``) and written whole. A signal caught by
    ``stop`` ends the measuring at its next unit of work (``MeasureInterrupted``: one line with
    what was spent, no profile written). One process measures a profile at a time: another that
    needs it meanwhile waits (saying so through ``note``), then reuses it
    (``paretrain.runtime.locks``). Returns (profile, reused)."""
    brought = read_spec_profiles(spec)  # a bad file must fail before anything is measured
    workload = load_workload(spec.workload, ws.cache)
    # every local device is priced, also one measured only as the reference for catalog offers
    prices = {
        o.id: o.price_usd_per_h for o in local_offers(local_devices(), replace(spec.hardware, local="auto"))
    }
    key = key_of(spec, configs)
    path = ws.profiles / f"{key}.json"
    if path.exists() and not force:
        profile, reused = read_profile(path), True
    else:
        # one process measures a profile at a time; one that waited reuses what it wrote
        with held(
            ws.profiles / f"{key}.lock",
            f"this profile ({path.name}): it is reused here once written",
            wait=note or (lambda msg: None),
            check=_waiting_check(stop),
        ):
            if path.exists() and not force:  # measured by the process it waited for
                return _with(read_profile(path), brought), True
            profile = _measure(spec, ws, workload, prices, key, configs, offers, progress, stop)
            write_profile(profile, path)
            mark_written(ws.ledgers / f"profile-{key[:12]}.jsonl", f"profile-{key[:12]}")
        reused = False
    return _with(profile, brought), reused


def _waiting_check(stop: StopFlag | None) -> Callable[[], None] | None:
    """A signal while this process waits for another one's measurement: one line, nothing spent."""
    if stop is None:
        return None

    def check() -> None:
        try:
            stop.check()
        except MeasureInterrupted as err:
            raise MeasureInterrupted(
                err.signum,
                f"profiling stopped by {err.signal_name} while it waited for another process "
                "measuring the same profile; this process spent nothing",
            ) from None

    return check


def _with(profile: Profile, brought: Sequence[Profile]) -> Profile:
    """The profile with the ones the spec's ``profiles:`` brought merged in."""
    return merge_profiles(profile, brought) if brought else profile


def _lab(
    spec: Spec,
    workload: Any,
    prices: dict[str, float],
    ledger: Ledger,
    cap_usd: float,
    offers: Sequence[Offer],
    stop: StopFlag | None,
) -> TorchLab:
    """The lab a profile measures in: charged to ``ledger`` up to ``cap_usd``, stopped by
    ``stop``'s signal, its truncated runs' checkpoints marked with the workload's code."""
    lab = TorchLab(
        workload,
        prices_usd_per_h=prices,
        ledger=ledger,
        cap_usd=cap_usd,
        seed=spec.workload.seed,
        metric=spec.target.metric_obj,
        convergence_device=_convergence_device(offers),
        stop=stop.check if stop is not None else None,
    )
    lab.workload_code = workload_source_digest(spec.workload.name)
    return lab


def _measure(
    spec: Spec,
    ws: Workspace,
    workload: Any,
    prices: dict[str, float],
    key: str,
    configs: Sequence[Config],
    offers: Sequence[Offer],
    progress: Callable[[str, int, int], None] | None,
    stop: StopFlag | None,
) -> Profile:
    """Measure the profile for real, charged to its own ledger under the profile envelope less
    what unfinished attempts at it spent (``_earlier``). Its ``spend_usd`` counts them: they are
    part of what knowing cost. The caller writes it."""
    path = ws.profiles / f"{key}.json"
    earlier = _earlier(spec, ws, key, path)  # refused before the data is even prepared
    # before the ledger opens, as a run does: the workload's setup and torch's lazy imports
    # are the process's, not a measurement of the hardware
    prepare_data(workload)
    warm_up_torch()
    ledger_path = ws.ledgers / f"profile-{key[:12]}.jsonl"
    left = spec.budget.profile_usd - earlier
    ledger = Ledger(ledger_path, f"profile-{key[:12]}")
    start = ledger.spent
    lab: TorchLab | None = None
    try:
        lab = _lab(spec, workload, prices, ledger, start + left, offers, stop)
        with Deadline() as lab.deadline:  # a unit of the user's code the envelope cannot pay is cut
            profile = build_profile(
                spec,
                lab,
                configs,
                progress=progress,
                key=key,
                measured_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            )
        if profile.convergence and spec.planner.convergence == "truncated":
            # the state each truncated run ended in, beside the profile file: no work paid twice
            label = f"{key}.checkpoints"
            profile = replace(profile, checkpoints=tuple(lab.keep_truncated(ws.profiles / label, label)))
        profile = replace(profile, spend_usd=earlier + ledger.spent - start)
    except MeasureInterrupted as err:
        ledger.close()
        raise _profile_interrupted(err, ledger, start, spec, earlier) from None
    except BaseException:
        if lab is not None:  # a member of the workload that raised: the time it took is spent
            with contextlib.suppress(Exception):  # best effort: the fault itself is what is said
                lab.settle()
        raise
    finally:
        ledger.close()
    return profile


def _earlier(spec: Spec, ws: Workspace, key: str, path: Path) -> float:
    """What the attempts at this profile since its last written measurement spent
    (``paretrain.runtime.money.profile_account``); ``BudgetExhausted`` when that leaves nothing
    of the envelope. A ledger from before the account was kept, beside its written profile, is
    closed first, so that the attempts from now on count."""
    ledger_path = ws.ledgers / f"profile-{key[:12]}.jsonl"
    if path.exists() and ledger_path.exists() and not has_mark(ledger_path):
        mark_written(ledger_path, f"profile-{key[:12]}")
    earlier = open_spend(ledger_path, profile_exists=path.exists())
    if spec.budget.profile_usd - earlier <= 0:
        raise BudgetExhausted(
            f"profiling not started: earlier attempts at this profile that did not finish spent "
            f"${earlier:.6g} of the profile envelope ${spec.budget.profile_usd:.6g} (charged in "
            f"{ledger_path}). To fix: raise budget.envelopes.profile"
        )
    return earlier


def _profile_interrupted(
    err: MeasureInterrupted, ledger: Ledger, start: float, spec: Spec, earlier: float
) -> MeasureInterrupted:
    """The one line of a profile stopped by a signal: what it spent, and that nothing was written."""
    spent = earlier + ledger.spent - start
    with_earlier = f" (${spent:.6g} with earlier unfinished attempts)" if earlier > 0 else ""
    return MeasureInterrupted(
        err.signum,
        f"profiling stopped by {err.signal_name} at a measurement boundary: spent "
        f"${ledger.spent - start:.6g}{with_earlier} of the profile envelope "
        f"${spec.budget.profile_usd:.6g} (charged in {ledger.path}); no profile was written. "
        "To continue: run the same command again (it measures from the start, "
        f"within the ${max(spec.budget.profile_usd - spent, 0.0):.6g} left of the envelope)",
    )
