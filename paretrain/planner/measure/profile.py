"""What to measure, and the profile file that holds the measurements.

A profile holds, per (hardware, config, precision), timed training steps at several batch
sizes; per (config, batch size), a convergence run (samples until each accuracy level);
and gradient-noise samples at points of training progress; with truncated runs, the checkpoint
each run ended in (``checkpoints``: a run of the same config may start there, so the profile's
training is not paid twice; the lab writes the files, the profile names them). A precision is
measured only on
the local devices that train in it (``LocalDevice.precisions``); the (device, precision) pairs
the spec asked for and a device does not support are listed in ``unsupported``, so that the
plan can say why they are not planned. Measurement goes through a
``Lab``. The file is JSON (``paretrain.profile/1``) and is reused while its key (spec
content that matters, code version, device) is unchanged.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

from paretrain.planner.inputs.catalog import local_offers
from paretrain.planner.measure.budgeted import measure_budgeted
from paretrain.planner.measure.lab import OutOfMemory

# re-exported: these records lived here before paretrain.planner.measure.measurements
from paretrain.planner.measure.measurements import (
    ConvergenceRun,
    NoiseSample,
    StepProfile,
    StepSample,
    SyncSample,
    TruncatedCheckpoint,
)

if TYPE_CHECKING:
    from paretrain.planner.inputs.space import Config
    from paretrain.planner.inputs.spec import Spec
    from paretrain.planner.measure.lab import Lab, LocalDevice

__all__ = [
    "PROFILE_SCHEMA",
    "ConvergenceRun",
    "NoiseSample",
    "Profile",
    "StepProfile",
    "StepSample",
    "SyncSample",
    "TruncatedCheckpoint",
    "build_profile",
    "merge_profiles",
    "profile_key",
]

PROFILE_SCHEMA = "paretrain.profile/1"

Progress = Callable[[str, int, int], None]  # (what, index, total)


@dataclass(frozen=True, slots=True)
class Profile:
    key: str
    device: str
    steps: tuple[StepProfile, ...] = ()
    convergence: tuple[ConvergenceRun, ...] = ()
    noise: tuple[NoiseSample, ...] = ()
    measured_at: str = ""
    spend_usd: float = 0.0
    notes: Mapping[str, Any] = field(default_factory=dict)
    peaks: Mapping[str, float] = field(default_factory=dict)  # device -> measured fp32 GFLOP/s
    sync: tuple[SyncSample, ...] = ()
    #: (device, precision) pairs the spec asked for that the device does not train in
    unsupported: tuple[tuple[str, str], ...] = ()
    #: the checkpoints the truncated runs ended in (written by the lab beside the profile file)
    checkpoints: tuple[TruncatedCheckpoint, ...] = ()

    def step_profile(self, hardware: str, config_id: str, precision: str) -> StepProfile | None:
        for s in self.steps:
            if (s.hardware, s.config_id, s.precision) == (hardware, config_id, precision):
                return s
        return None

    def runs_for(self, config_id: str) -> tuple[ConvergenceRun, ...]:
        return tuple(r for r in self.convergence if r.config_id == config_id)

    def diverged(self) -> dict[str, str]:
        """Config id -> why its convergence run diverged (a non-finite loss or metric): such a
        config is marked failed and never planned."""
        out: dict[str, str] = {}
        for r in self.convergence:
            if r.diverged and r.config_id not in out:
                out[r.config_id] = f"{r.diverged} of its run at batch {r.batch_size}"
        return out

    def noise_for(self, config_id: str) -> tuple[NoiseSample, ...]:
        return tuple(
            sorted((n for n in self.noise if n.config_id == config_id), key=lambda n: n.progress_samples)
        )


def profile_key(spec: Spec, lab_fingerprint: str, configs: Sequence[Config]) -> str:
    """The cache key: the spec content profiling depends on, the configs, the code and device
    (``lab_fingerprint``: the machine, the measuring code, a user workload's code). A workload
    file enters by its name, not its folder: its content is in ``lab_fingerprint``, so a copy
    of the project in another folder reuses the profile."""
    workload = dict(spec.data.get("workload") or {})
    if str(workload.get("name", "")).startswith("file:") and workload.get("file"):
        base = PurePath(str(workload["file"])).name
        workload.update(name=f"file:{base}:{workload.get('factory')}", file=base)
    relevant = {
        "workload": workload,
        "configs": [c.to_dict() for c in configs],
        "levels": list(spec.target.levels),
        "max_samples": spec.target.max_samples,
        "allow": sorted(spec.hardware.allow),
        "batch_sizes": list(spec.planner.batch_sizes),
        "precisions": list(spec.planner.precisions),
        "convergence_batch_sizes": list(spec.planner.convergence_batch_sizes),
        "convergence": spec.planner.convergence,
        "profile_fraction": spec.planner.profile_fraction,
        "profile_steps": spec.planner.profile_steps,
        "max_workers": spec.planner.max_workers,
        "noise": spec.planner.noise,
        "eval_every": spec.runtime.eval_every_samples,
        "lab": lab_fingerprint,
    }
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:24]


def build_profile(
    spec: Spec,
    lab: Lab,
    configs: Sequence[Config],
    *,
    progress: Progress | None = None,
    key: str = "",
    measured_at: str = "",
) -> Profile:
    """Measure every allowed local (device, config, precision), each device's matrix-multiply
    rate, all-reduce times when several workers are allowed, and per config its convergence:
    one truncated run under the profile's budget (``planner.convergence: truncated``,
    ``paretrain.planner.measure.budgeted``), or runs to the top level at several batch sizes and
    gradient noise along training (``full``)."""
    local = _reference_devices(spec, lab)
    hints = spec.convergence or {}
    cores = max((d.threads for d in lab.devices() if d.kind == "cpu"), default=1)
    out = _Measured(usd_per_h={o.id: o.price_usd_per_h for o in local_offers(local, spec.hardware)})
    measured = [c for c in configs if c.id not in hints]
    truncated = spec.planner.convergence == "truncated"
    # in this order: a convergence run trains on the CPU its step times found cheapest per sample
    tasks = [
        *_step_tasks(spec, lab, local, configs, out),
        *_sync_tasks(spec, lab, local, cores, out),
        *([] if truncated else _convergence_tasks(spec, lab, measured, out)),
    ]
    noise_cfgs = measured if spec.planner.noise and not truncated else []
    total = len(tasks) + len(noise_cfgs) + (1 if truncated and measured else 0)
    for i, (label, task) in enumerate(tasks):
        if progress:
            progress(label, i, total)
        task()
    noise = _measure_noise(spec, lab, noise_cfgs, out.runs, progress, start=len(tasks), total=total)
    notes: dict[str, Any] = {"cores": cores}
    if truncated and measured:
        if progress:
            progress("truncated convergence runs", len(tasks), total)
        notes["truncated"] = _truncated(spec, lab, measured, out, noise)
    if out.out_of_memory:
        notes["out_of_memory"] = out.out_of_memory
    if progress:
        progress("done", total, total)
    return Profile(
        key=key,
        device=lab.fingerprint(),
        steps=tuple(out.steps),
        convergence=tuple(out.runs),
        noise=tuple(noise),
        measured_at=measured_at,
        peaks=out.peaks,
        sync=tuple(out.syncs),
        notes=notes,
        unsupported=tuple(
            (dev.id, q) for dev in local for q in spec.planner.precisions if q not in dev.precisions
        ),
    )


Task = tuple[str, Callable[[], None]]  # (what, the measurement, which records into _Measured)


@dataclass
class _Measured:
    """What the tasks of ``build_profile`` measured so far."""

    steps: list[StepProfile] = field(default_factory=list)
    runs: list[ConvergenceRun] = field(default_factory=list)
    peaks: dict[str, float] = field(default_factory=dict)
    syncs: list[SyncSample] = field(default_factory=list)
    out_of_memory: list[str] = field(default_factory=list)  # what was not measured, and why
    usd_per_h: dict[str, float] = field(default_factory=dict)  # the local devices' prices


def _truncated(
    spec: Spec, lab: Lab, configs: Sequence[Config], out: _Measured, noise: list[NoiseSample]
) -> dict[str, Any]:
    """One truncated run per config under the profile's budget (``budgeted``); its account."""
    got = measure_budgeted(
        spec,
        lab,
        configs,
        out.steps,
        lambda cid, b: convergence_cpu(out.steps, cid, b, out.usd_per_h),
        (NOISE_SMALL_BATCH, NOISE_BIG_BATCH),
    )
    out.runs.extend(got.runs)
    noise.extend(got.noise)
    return got.notes


def _reference_devices(spec: Spec, lab: Lab) -> list[LocalDevice]:
    """The allowed local devices; with only catalog offers allowed, the fastest local CPU as
    the reference that their step times are modeled from."""
    local = [d for d in lab.devices() if spec.hardware.allows(d.id)]
    if not local and any(not a.startswith("local/") for a in spec.hardware.allow):
        cpus = sorted((d for d in lab.devices() if d.kind == "cpu"), key=lambda d: d.threads)
        local = cpus[-1:]
    return local


def _step_tasks(
    spec: Spec, lab: Lab, local: Sequence[LocalDevice], configs: Sequence[Config], out: _Measured
) -> list[Task]:
    """Each device's peak rate, and timed steps of every config in each precision it trains in."""
    tasks: list[Task] = []
    for dev in local:
        tasks.append((f"peak of {dev.id}", partial(_peak, lab, dev.id, out)))
        for cfg in configs:
            for precision in spec.planner.precisions:
                if precision in dev.precisions:
                    label = f"steps {cfg.id} on {dev.id} {precision}"
                    tasks.append((label, partial(_steps, spec, lab, cfg, dev.id, precision, out)))
    return tasks


def _sync_tasks(spec: Spec, lab: Lab, local: Sequence[LocalDevice], cores: int, out: _Measured) -> list[Task]:
    """All-reduce times among the worker counts this machine's cores can hold (CPU devices)."""
    if spec.planner.max_workers <= 1 or not any(d.kind == "cpu" for d in local) or cores <= 1:
        return []
    return [
        (f"all-reduce of {nbytes >> 10} KiB among {n}", partial(_sync, lab, n, nbytes, out))
        for n in sorted({w for w in worker_counts(spec.planner.max_workers) if 1 < w <= cores})
        for nbytes in (1 << 16, 1 << 20, 1 << 22)
    ]


def _convergence_tasks(spec: Spec, lab: Lab, configs: Sequence[Config], out: _Measured) -> list[Task]:
    """A convergence run of every config at each convergence batch size."""
    return [
        (f"convergence {cfg.id} at batch {b}", partial(_convergence, spec, lab, cfg, b, out))
        for cfg in configs
        for b in spec.planner.convergence_batch_sizes
    ]


def _peak(lab: Lab, device: str, out: _Measured) -> None:
    out.peaks[device] = lab.measure_peak(device)


def _steps(spec: Spec, lab: Lab, cfg: Config, device: str, precision: str, out: _Measured) -> None:
    try:
        out.steps.append(
            lab.measure_steps(cfg, device, precision, spec.planner.batch_sizes, spec.planner.profile_steps)
        )
    except OutOfMemory as err:  # not even the smallest batch fits: not planned there
        out.out_of_memory.append(f"{err} ({precision}); not planned there")


def _sync(lab: Lab, workers: int, nbytes: int, out: _Measured) -> None:
    out.syncs.append(SyncSample(workers, nbytes, *lab.measure_sync(workers, nbytes)))


def _convergence(spec: Spec, lab: Lab, cfg: Config, batch_size: int, out: _Measured) -> None:
    if any(r.config_id == cfg.id and r.diverged for r in out.runs):
        return  # marked failed at another batch size: nothing more is spent on it
    try:
        run = lab.measure_convergence(
            cfg,
            batch_size,
            spec.target.levels,
            spec.target.max_samples,
            spec.runtime.eval_every_samples,
            device=convergence_cpu(out.steps, cfg.id, batch_size, out.usd_per_h),
        )
    except OutOfMemory as err:
        out.out_of_memory.append(f"{err}; its convergence is not measured at that batch")
        return
    out.runs.append(run)


def _measure_noise(
    spec: Spec,
    lab: Lab,
    configs: Sequence[Config],
    runs: Sequence[ConvergenceRun],
    progress: Progress | None,
    *,
    start: int,
    total: int,
) -> list[NoiseSample]:
    """Gradient noise of each config along the training its convergence runs reached."""
    noise: list[NoiseSample] = []
    for j, cfg in enumerate(configs):
        reached = [n for r in runs if r.config_id == cfg.id for _, n in r.reached if n]
        if not reached or any(r.config_id == cfg.id and r.diverged for r in runs):
            continue
        if progress:
            progress(f"gradient noise of {cfg.id}", start + j, total)
        top = min(max(reached), spec.target.max_samples)
        noise.extend(lab.measure_noise(cfg, noise_points(top), NOISE_SMALL_BATCH, NOISE_BIG_BATCH))
    return noise


#: Batch sizes of the two-batch gradient-noise estimator (McCandlish et al. 2018, App. A).
NOISE_SMALL_BATCH = 16
NOISE_BIG_BATCH = 512


def convergence_cpu(
    steps: Sequence[StepProfile],
    config_id: str,
    batch_size: int,
    usd_per_h: Mapping[str, float] | None = None,
) -> str | None:
    """The measured local CPU where a convergence run of ``config_id`` at ``batch_size`` (the
    nearest measured batch size, fp32) costs least per sample: step time over batch size times
    the device's price (``usd_per_h``, from ``hardware.prices``), the faster device on a tie and
    wherever a price is unknown; None when none was measured.

    By cost, not speed: knowing is paid in money, and the cheapest device per sample is where
    the cheapest schedules train, so the run's checkpoint is the one a knee on that device starts
    from (``paretrain.planner.measure.measurements.TruncatedCheckpoint``). On this machine a GRU
    at batch 64 ran 1.24x faster on two threads than on one, at twice the price: its truncated run
    cost 0.62x on one thread. By speed alone, a model whose steps do not speed up on two threads
    (small sequential kernels, or a busy machine) was already not run on the two-thread device."""
    measured: list[tuple[float, str]] = []  # (seconds a sample, device)
    for sp in steps:
        if sp.config_id != config_id or sp.precision != "fp32" or not sp.hardware.startswith("local/cpu"):
            continue
        near = min(
            (s for s in sp.samples if s.workers == 1),
            key=lambda s: abs(s.batch_size - batch_size),
            default=None,
        )
        if near is not None:
            measured.append((near.step_s / near.batch_size, sp.hardware))
    prices = usd_per_h or {}
    priced = all(hw in prices for _, hw in measured)  # else speed alone: costs not comparable
    ranked = sorted((s * prices[hw] if priced else 0.0, s, hw) for s, hw in measured)
    return ranked[0][2] if ranked else None


def noise_points(top: int, n: int = 6) -> list[int]:
    """Progress points (samples) for noise measurements: geometric from top/16 up to top."""
    lo = max(1, top // 16)
    return sorted({round(lo * (top / lo) ** (i / (n - 1))) for i in range(n)})


def worker_counts(max_workers: int) -> list[int]:
    """1, 2, 4, ... up to ``max_workers`` (and ``max_workers`` itself)."""
    out, n = [], 1
    while n <= max_workers:
        out.append(n)
        n *= 2
    if out[-1] != max_workers:
        out.append(max_workers)
    return out


def merge_profiles(base: Profile, others: Iterable[Profile]) -> Profile:
    """Add profiles measured elsewhere; their measured entries win over modeled ones and ours."""
    steps = {(s.hardware, s.config_id, s.precision): s for s in base.steps}
    for other in others:
        for s in other.steps:
            k = (s.hardware, s.config_id, s.precision)
            if s.source == "measured" or k not in steps:
                steps[k] = s
    return replace(base, steps=tuple(steps[k] for k in sorted(steps)))
