"""Step time of a config on an offer at a precision and worker count: measured, else modeled.

Single worker: ``t1(b) = alpha + beta * b`` fitted to the measured steps of that (offer,
config, precision) (``paretrain.planner.measure.fits``). An offer nobody measured (a catalog offer) is
*modeled* from the fastest measured local device: ``beta`` scaled by the ratio of that
device's measured matrix-multiply rate to the offer's peak TFLOP/s at the precision, ``alpha``
(per-step overhead: Python, kernel launches) kept. A profile measured on that offer elsewhere
(``profiles:`` in the spec) always wins over the model.

Several workers (data parallel, AdaptDL/Pollux form without overlap):
``t(b, n) = t1(b) + t_sync(n)`` where ``t_sync(n) = lat * (n - 1) + 2 (n - 1) / n * G / bw`` is a
ring all-reduce of the G gradient bytes. On local CPUs ``lat`` and ``bw`` are fitted to
measured gloo all-reduces; on catalog offers they are modeled from the interconnect (inside one
instance: NVLink-class for 8-GPU instances, PCIe otherwise; across instances: the network).
A worker count outside the measured range is reported as extrapolated.

**Speed factor.** The profile's timed passes (``StepProfile``) give the *shape* of a local
device's step time over batch sizes; its convergence runs (``ConvergenceRun.step_s``), real
training loops with their evaluations, ten times longer and later in the profile, give its
*level*. A measured local offer's steps and evaluations are scaled by ``speed_factors``: per
device, the seconds-weighted geometric mean of its convergence runs' step time over the passes'
at the same batch size; a device no convergence run trained on takes the factor of all runs
together (the machine's) when it is a CPU. Measured on this 2-vCPU machine
(``benchmarks/plan_fidelity``): the convergence runs stepped 0.78-1.12x as long as the passes
(one thread: 0.98-1.12x, as the runs evaluate between steps); applied afterwards to 18 runs of
4-10 s planned without it, the factor cut the P50's wall-time error from 13.6% to 8.7%, and 18
new runs planned with it missed by 9.3%.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from paretrain.planner.measure.fits import StepTimeModel, fit_step_time

if TYPE_CHECKING:
    from paretrain.planner.inputs.catalog import Offer
    from paretrain.planner.measure.profile import Profile, StepProfile, SyncSample

__all__ = [
    "StepModel",
    "SyncModel",
    "fit_sync",
    "instances_for",
    "modeled_sync",
    "speed_factors",
    "step_models",
    "virtual_checkpoint_s",
]


def virtual_checkpoint_s(params: int) -> float:
    """Writing a checkpoint on an offer nobody measured: 10 ms (open, fsync, rename on a local
    SSD) plus weights and two optimizer slots (and 64 KiB) at 200 MB/s. The runtime's virtual
    clock charges exactly this."""
    return 0.01 + (12.0 * params + 65536) / 2e8


#: Interconnect bandwidths (bytes/s) for modeled all-reduce, and the per-hop latency.
NVLINK_BPS = 150e9
PCIE_BPS = 12e9
NETWORK_BPS = 12.5e9  # 100 Gbit/s between instances
HOP_LATENCY_S = 50e-6


@dataclass(frozen=True, slots=True)
class SyncModel:
    """``t_sync(n) = latency_s * (n - 1) + 2 (n - 1) / n * bytes / bandwidth_bps``; forming the
    group (launching the workers and their rendezvous) takes ``rendezvous_s``; each worker
    computes ``contention`` times slower than alone while the others do (local processes sharing
    a machine's cores; 1 on instances of their own)."""

    latency_s: float
    bandwidth_bps: float
    max_workers_measured: int = 1
    modeled: bool = True
    rendezvous_s: float = 0.0
    contention: float = 1.0

    def predict(self, workers: int, grad_bytes: float) -> float:
        if workers <= 1:
            return 0.0
        return (
            self.latency_s * (workers - 1) + 2.0 * (workers - 1) / workers * grad_bytes / self.bandwidth_bps
        )


@dataclass(frozen=True, slots=True)
class StepModel:
    """Step time of one (offer, config, precision) at any batch size and worker count."""

    single: StepTimeModel
    sync: SyncModel
    grad_bytes: float
    eval_s: float
    modeled: bool
    memory: Mapping[int, int]
    ckpt_s: float = 0.0
    spread: float = (
        0.0  # relative pass-to-pass spread of the measured step times (paretrain.planner.measure.uncertainty)
    )
    fixed_s: float = 0.0  # a fresh run's warm-up beyond its steady steps
    speed_factor: float = (
        1.0  # the convergence runs' speed over the timed passes', in ``single`` and ``eval_s``
    )

    def predict(self, batch_size: int, workers: int = 1) -> float:
        """One step of ``workers`` data-parallel workers at per-worker ``batch_size``: the compute
        (slowed by the measured contention), the gradients' all-reduce, and the command rank 0
        broadcasts before each step (``paretrain.runtime.train.parallel``: one more small collective)."""
        if workers <= 1:
            return self.single.predict(batch_size)
        command = self.sync.latency_s * (workers - 1)
        return (
            self.single.predict(batch_size) * self.sync.contention
            + self.sync.predict(workers, self.grad_bytes)
            + command
        )

    def extrapolated(self, batch_size: int, workers: int) -> bool:
        return self.single.extrapolated(batch_size) or workers > self.sync.max_workers_measured

    def memory_at(self, batch_size: int) -> int | None:
        """Measured peak memory at ``batch_size``, or a line through the two nearest."""
        if batch_size in self.memory:
            return self.memory[batch_size]
        pts = sorted(self.memory.items())
        if len(pts) < 2:
            return pts[0][1] if pts else None
        (b0, v0), (b1, v1) = pts[-2:] if batch_size > pts[-1][0] else pts[:2]
        return int(v0 + (v1 - v0) * (batch_size - b0) / (b1 - b0))


def fit_sync(samples: Sequence[SyncSample]) -> SyncModel | None:
    """Fit latency and bandwidth to measured all-reduces (least squares, both >= 0)."""
    pts = [s for s in samples if s.workers > 1 and s.seconds > 0]
    if not pts:
        return None
    A = np.array([[s.workers - 1, 2.0 * (s.workers - 1) / s.workers * s.bytes] for s in pts])
    y = np.array([s.seconds for s in pts])
    from scipy.optimize import nnls

    (lat, inv_bw), _ = nnls(A, y)
    bw = 1.0 / inv_bw if inv_bw > 0 else 1e15
    starts = sorted(getattr(s, "start_s", 0.0) for s in pts)
    most = max(s.workers for s in pts)
    slow = sorted(getattr(s, "contention", 1.0) for s in pts if s.workers == most)
    return SyncModel(
        float(lat),
        float(bw),
        most,
        modeled=False,
        rendezvous_s=float(starts[len(starts) // 2]),
        contention=float(slow[len(slow) // 2]),
    )


def modeled_sync(offer: Offer, workers: int) -> SyncModel:
    """The interconnect model for an offer nobody measured."""
    per_instance = max(1, offer.accelerator_count)
    if workers > per_instance:
        bw = NETWORK_BPS
    elif offer.accelerator_count >= 8:
        bw = NVLINK_BPS
    else:
        bw = PCIE_BPS
    return SyncModel(HOP_LATENCY_S, bw, 1, modeled=True, rendezvous_s=offer.rendezvous_s)


def instances_for(offer: Offer, workers: int) -> int:
    """How many instances of ``offer`` ``workers`` workers need (GPU offers: one per GPU)."""
    if offer.kind == "gpu":
        return -(-workers // max(1, offer.accelerator_count))
    return workers  # a local CPU worker is one more process with the offer's threads


def step_models(
    profile: Profile,
    offers: Sequence[Offer],
    config_ids: Sequence[str],
    precisions: Sequence[str],
    worker_counts: Sequence[int],
) -> dict[tuple[str, str, str, int], StepModel]:
    """A step model per (offer, config, precision, workers) that can be measured or modeled."""
    out: dict[tuple[str, str, str, int], StepModel] = {}
    measured: dict[tuple[str, str, str], StepProfile] = {
        (s.hardware, s.config_id, s.precision): s for s in profile.steps if s.source == "measured"
    }
    local_sync = fit_sync(profile.sync)
    factors = speed_factors(profile)
    for cid in config_ids:
        for q in precisions:
            ref = _reference(profile, measured, cid, q)
            for offer in offers:
                one = _one_worker(offer, measured.get((offer.id, cid, q)), ref, factors, q)
                if one is None:
                    continue
                for n in worker_counts:
                    if offer.local:
                        if n > 1 and (local_sync is None or offer.threads * n > _cores(profile)):
                            continue
                        sync = local_sync or _NO_SYNC
                    else:
                        sync = modeled_sync(offer, n)
                    out[(offer.id, cid, q, n)] = replace(
                        one, sync=sync, modeled=one.modeled or (n > 1 and sync.modeled)
                    )
    return out


#: The sync of a model with one worker: nothing to all-reduce.
_NO_SYNC = SyncModel(0.0, 1e15, 1, False)


def _one_worker(
    offer: Offer,
    sp: StepProfile | None,
    ref: tuple[StepProfile, StepTimeModel, float] | None,
    factors: Mapping[str, float],
    q: str,
) -> StepModel | None:
    """One worker's step model on ``offer``: its measured steps (``sp``) scaled by the device's
    speed factor, else the reference device's scaled by peak rates (a catalog offer), else None."""
    if sp is not None:
        f = factors.get(offer.id, factors.get("*", 1.0) if offer.kind == "cpu" else 1.0)
        pts = [(s.batch_size, s.step_s * f) for s in sp.samples if s.workers == 1]
        return StepModel(
            fit_step_time(pts),
            _NO_SYNC,
            4.0 * sp.param_count,
            sp.eval_s * f,
            False,
            _memory(sp),
            sp.ckpt_s,
            sum(s.spread for s in sp.samples) / max(len(sp.samples), 1),
            sp.fixed_s,
            f,
        )
    if ref is None or offer.local or _peak(offer, q) <= 0:
        return None
    rsp, rmodel, rpeak = ref
    ratio = rpeak / (_peak(offer, q) * 1e12)
    return StepModel(
        StepTimeModel(rmodel.alpha, rmodel.beta * ratio, rmodel.b_min, rmodel.b_max),
        _NO_SYNC,
        4.0 * rsp.param_count,
        rsp.eval_s * min(1.0, ratio),
        True,
        _memory(rsp),
        virtual_checkpoint_s(rsp.param_count),
        0.0,
        0.0,
        1.0,
    )


#: the peak memory the planner takes for a batch whose step ran out of memory: more than any device
OUT_OF_MEMORY = 1 << 62


def _memory(sp: StepProfile) -> dict[int, int]:
    """Peak memory by batch size as measured, and a batch that ran out of memory as more than any
    device has (batches between the largest that fit and it interpolate to more than fits)."""
    memory = {s.batch_size: s.peak_mem_bytes for s in sp.samples}
    if sp.oom_batch:
        memory[sp.oom_batch] = OUT_OF_MEMORY
    return memory


def speed_factors(profile: Profile) -> dict[str, float]:
    """Per local device (and ``"*"``: all together), how its convergence runs stepped against its
    timed passes at the same batch size (the module docstring); no entry where no run compares."""
    fits: dict[tuple[str, str, str], StepTimeModel] = {}
    for sp in profile.steps:
        pts = [(s.batch_size, s.step_s) for s in sp.samples if s.workers == 1]
        if sp.source == "measured" and pts:
            fits[(sp.hardware, sp.config_id, sp.precision)] = fit_step_time(pts)
    sums: dict[str, list[float]] = {}
    for run in profile.convergence:
        fit = fits.get((run.device, run.config_id, run.precision))
        if fit is None or run.step_s <= 0 or run.steps <= 0:
            continue
        w, r = run.step_s * run.steps, run.step_s / fit.predict(run.batch_size)
        for key in (run.device, "*"):
            acc = sums.setdefault(key, [0.0, 0.0])
            acc[0] += w * float(np.log(r))
            acc[1] += w
    return {k: float(np.exp(a / w)) for k, (a, w) in sums.items() if w > 0}


def _cores(profile: Profile) -> int:
    return int(profile.notes.get("cores", 1)) if profile.notes else 1


def _peak(offer: Offer, precision: str) -> float:
    return offer.peak_tflops_bf16 if precision == "bf16" else offer.peak_tflops_fp32


def _reference(
    profile: Profile, measured: Mapping[tuple[str, str, str], StepProfile], cid: str, q: str
) -> tuple[StepProfile, StepTimeModel, float] | None:
    """The measured local device with the best throughput for (config, precision), its fitted
    model and its measured fp32 matrix-multiply rate in FLOP/s."""
    best = None
    for (h, c, qq), sp in measured.items():
        if c != cid or qq != q or h not in profile.peaks:
            continue
        pts = [(s.batch_size, s.step_s) for s in sp.samples if s.workers == 1]
        if not pts:
            continue
        model = fit_step_time(pts)
        tput = max(b / t for b, t in pts)
        if best is None or tput > best[0]:
            best = (tput, sp, model, profile.peaks[h] * 1e9)
    return None if best is None else best[1:]
