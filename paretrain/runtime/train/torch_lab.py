"""TorchLab: the planner's Lab on this machine's real devices, charged to a ledger.

Each measurement runs under a ``paretrain.runtime.train.lab_meter.LabMeter``: every second it
keeps a device busy is charged at that device's price under the ``profile`` stage, and before
each unit of work the envelope is checked with the reserve of ``paretrain.runtime.money.reserve``
(``BudgetExhausted``, exit 3, when it does not fit). A search trial is
``paretrain.runtime.train.lab_trial``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from paretrain.planner.inputs.metric import Metric
from paretrain.planner.inputs.space import Config
from paretrain.planner.measure.lab import LocalDevice, OutOfMemory
from paretrain.planner.measure.profile import (
    ConvergenceRun,
    NoiseSample,
    StepProfile,
    StepSample,
    TruncatedCheckpoint,
)
from paretrain.planner.search.search import TrialRun
from paretrain.runtime.money.ledger import Ledger
from paretrain.runtime.train.devices import claim, local_devices, machine_fingerprint
from paretrain.runtime.train.lab_memory import fitting_batches, free_memory
from paretrain.runtime.train.lab_meter import Diverged, LabMeter, train_evaluating
from paretrain.runtime.train.lab_trial import TRIAL_STALL_S, run_trial
from paretrain.runtime.train.lab_truncated import (
    NOISE_REPEATS,
    LiveRun,
    keep_runs,
    measure_truncated,
    noise_sample,
)
from paretrain.runtime.train.trainer import Trainer, estimate_peak_bytes

__all__ = ["TRIAL_STALL_S", "TorchLab", "code_version"]

#: the modules whose code decides what a profile measures; hashed by content, wherever they live
_CODE_MODULES = (
    "paretrain.runtime.train.trainer",
    "paretrain.runtime.train.torch_lab",
    "paretrain.runtime.train.lab_meter",
    "paretrain.runtime.train.lab_truncated",
    "paretrain.runtime.train.lab_memory",
    "paretrain.runtime.money.reserve",
    "paretrain.runtime.train.workloads.mnist1d",
    "paretrain.runtime.train.distributed",
    "paretrain.planner.measure.profile",
    "paretrain.planner.measure.measurements",
    "paretrain.planner.measure.fits",
    "paretrain.planner.measure.budgeted",
)


def code_version() -> str:
    """A digest of the code that measures (so a profile is remeasured when it changes)."""
    h = hashlib.sha256()
    for name in _CODE_MODULES:
        spec = importlib.util.find_spec(name)
        origin = Path(spec.origin) if spec is not None and spec.origin else None
        h.update(origin.read_bytes() if origin is not None and origin.exists() else name.encode())
    return h.hexdigest()[:12]


def _train_size(workload: Any) -> int:
    """Samples in the workload's training set (a large number for an unsized iterable one)."""
    try:
        return len(workload.train_dataset())
    except TypeError:
        return 1 << 40


def _interleaved_passes(
    trainer: Trainer, meter: LabMeter, usable: Sequence[int], steps: int
) -> tuple[dict[int, list[float]], list[float]]:
    """Per batch size, the mean step time of each pass, and the warm-up steps' times.

    Interleaved: ``rounds`` passes over the batch sizes, each timing a share of the steps
    after one untimed step at the new size, and the mean of a size's per-pass means. A
    slow spell of a shared machine then lands on every batch size alike instead of on
    whichever size was being measured, so the planner's comparison between batch sizes
    holds even when the absolute speed drifts; the mean (not the median) keeps the slow
    spells a run will also meet, since a run's time is the sum of its steps. Before it, a
    quarter second of untimed steps: a fresh process runs its first steps up to 1.6x slower."""
    rounds = max(1, min(5, steps // 4))
    passes: dict[int, list[float]] = {b: [] for b in usable}
    warm_s: list[float] = []
    warm_until = time.perf_counter() + 0.25
    while len(warm_s) < 3 or time.perf_counter() < warm_until:
        warm_s.append(meter.timed(trainer.step))
    for r in range(rounds):
        for b in usable:
            trainer.set_batch_size(b)
            share = steps * (r + 1) // rounds - steps * r // rounds
            timed = []
            for i in range(share + 1):
                dt = meter.timed(trainer.step, passes[b][-1] if passes[b] else 0.0)
                if i:
                    timed.append(dt)
            passes[b].append(sum(timed) / len(timed))
    return passes, warm_s


class TorchLab:
    """Measures configs for real with torch on the local devices."""

    def __init__(
        self,
        workload: Any,
        *,
        prices_usd_per_h: Mapping[str, float],
        ledger: Ledger | None = None,
        cap_usd: float = float("inf"),
        seed: int = 0,
        convergence_device: str | None = None,
        patience_evals: int = 15,
        metric: Metric | None = None,
        stop: Callable[[], None] | None = None,
    ) -> None:
        self.workload = workload
        self.stop = stop  # asked before each unit of work (a signal stops the profile there)
        info = workload.info
        self.metric = metric or Metric(info.target, info.direction(info.target) or "maximize")
        self.prices = dict(prices_usd_per_h)
        self.ledger = ledger
        self.cap = cap_usd
        self.seed = seed
        self.patience = patience_evals
        self.trial_prior_s = 0.0  # the slowest set-up or step of the last trial (guards the next one's first)
        #: truncated runs kept between the profile's rounds, by (config id, batch size, device)
        self.live_runs: dict[tuple[str, int, str], LiveRun] = {}
        self._devices = local_devices()
        cpus = [d for d in self._devices if d.kind == "cpu" and d.id in self.prices]
        self.convergence_device = convergence_device or (
            max(cpus, key=lambda d: d.threads).id if cpus else self._devices[0].id
        )

    def devices(self) -> Sequence[LocalDevice]:
        return self._devices

    def fingerprint(self) -> str:
        return f"{machine_fingerprint()}-{code_version()}"

    def meter(self, device: str, what: str, cap: float | None = None, stage: str = "profile") -> LabMeter:
        meter = LabMeter(
            self.ledger,
            self.cap if cap is None else cap,
            self.prices.get(device, 0.0) / 3600.0,
            device,
            what,
            stage=stage,
        )
        meter.stop = self.stop
        return meter

    def spent(self) -> float:
        """What the lab's ledger holds so far (0 without one)."""
        return self.ledger.spent if self.ledger else 0.0

    def train_size(self) -> int:
        return _train_size(self.workload)

    # -- the search's trials ------------------------------------------------------------------
    def run_trial(
        self,
        config: Config,
        max_samples: int,
        eval_every: int,
        cap_usd: float,
        should_stop: Callable[[int, float, int], bool],
        more: Callable[[float], float] | None = None,
    ) -> TrialRun:
        """Train ``config`` on the planning device at its base batch, evaluating as it goes;
        then measure its per-sample inference latency, parameters and peak memory. It spends
        at most ``cap_usd`` and what ``more`` grants (``paretrain.planner.search.search.TrialLab``)."""
        return run_trial(self, config, max_samples, eval_every, cap_usd, should_stop, more)

    def measure_steps(
        self, config: Config, device: str, precision: str, batch_sizes: Sequence[int], steps: int
    ) -> StepProfile:
        torch_device = claim(device)
        meter = self.meter(device, f"steps of {config.id} on {device}")
        n_train = _train_size(self.workload)
        usable = sorted(b for b in batch_sizes if b <= n_train)
        trainer = Trainer(
            self.workload,
            config,
            batch_size=usable[0],
            precision=precision,
            device=torch_device,
            seed=self.seed,
            metric=self.metric,
        )
        usable, oom_batch = fitting_batches(trainer, meter, usable, f"{config.id} on {device}")
        # interleaved passes over the batch sizes (see ``_interleaved_passes``)
        passes, warm_s = _interleaved_passes(trainer, meter, usable, steps)
        samples = []
        for b in usable:
            step_s = float(np.mean(passes[b]))
            spread = float(np.std(passes[b]) / step_s) if len(passes[b]) > 1 else 0.0
            samples.append(
                StepSample(b, 1, step_s, b / step_s, estimate_peak_bytes(trainer, b), round(spread, 5))
            )
        # what the warm-up steps took beyond the steady state at the first batch size: paid once per run
        fixed = max(0.0, sum(warm_s) - len(warm_s) * float(np.mean(passes[usable[0]])))
        evals: list[float] = []
        for _ in range(4):  # the first evaluation warms up and is not counted
            meter.guard(evals[-1] if evals else 0.0)
            evals.append(trainer.evaluate().seconds)
        meter.flush()
        return StepProfile(
            device,
            config.id,
            precision,
            tuple(samples),
            eval_s=sum(evals[1:]) / 3,
            source="measured",
            measured_on=machine_fingerprint(),
            param_count=trainer.parameter_count(),
            ckpt_s=self._ckpt_s(trainer, meter),
            fixed_s=round(fixed, 6),
            oom_batch=oom_batch,
        )

    def _ckpt_s(self, trainer: Trainer, meter: LabMeter, repeats: int = 3) -> float:
        """Median seconds to write the trainer's checkpoint as the runtime does (atomic, fsync)."""
        import tempfile

        from paretrain.runtime.train.checkpoint import save_checkpoint

        times: list[float] = []
        with tempfile.TemporaryDirectory(prefix="paretrain-ckpt-") as tmp:
            for _ in range(repeats):
                meter.guard(times[-1] if times else 0.0)
                t0 = time.perf_counter()
                save_checkpoint(tmp, {"trainer": trainer.state_dict(), "run": {}}, keep=1)
                times.append(time.perf_counter() - t0)
                meter.observe(times[-1])
        meter.flush()
        return sorted(times)[len(times) // 2]

    def measure_peak(self, device: str, size: int = 512, repeats: int = 20) -> float:
        """Achieved fp32 matrix-multiply rate on ``device`` (GFLOP/s): the scale against which
        catalog offers' peak TFLOP/s are compared for modeled step times."""
        torch_device = claim(device)
        meter = self.meter(device, f"matrix-multiply rate of {device}")
        a = torch.randn(size, size, device=torch_device)
        b = torch.randn(size, size, device=torch_device)
        a @ b  # warm-up
        meter.sync()
        best = float("inf")
        for _ in range(repeats):
            meter.guard(best if best < float("inf") else 0.0)
            t0 = time.perf_counter()
            a @ b
            meter.sync()
            best = min(best, time.perf_counter() - t0)
            meter.observe(best)
        meter.flush()
        return 2.0 * size**3 / best / 1e9

    def measure_sync(self, workers: int, nbytes: int) -> tuple[float, float, float]:
        """(seconds of one gloo all-reduce of ``nbytes`` among ``workers`` local processes, seconds
        from launching them to their formed group, their compute contention), started by torch's
        elastic launcher as a data-parallel stage's are."""
        from paretrain.runtime.train.distributed import allreduce_timing

        device = f"local/cpu-{workers}" if f"local/cpu-{workers}" in self.prices else self.convergence_device
        meter = self.meter(device, f"all-reduce among {workers}")
        meter.guard(5.0)  # launching the processes through the agent takes 3-5 s on 2 cores
        timing = allreduce_timing(workers, nbytes)
        meter.flush()
        return timing

    def measure_convergence(
        self,
        config: Config,
        batch_size: int,
        levels: Sequence[float],
        max_samples: int,
        eval_every: int,
        device: str | None = None,
    ) -> ConvergenceRun:
        device = device if device in self.prices else self.convergence_device
        torch_device = claim(device)
        meter = self.meter(device, f"convergence of {config.id} at batch {batch_size}")
        trainer = Trainer(
            self.workload,
            config,
            batch_size=min(batch_size, _train_size(self.workload)),
            device=torch_device,
            seed=self.seed,
            metric=self.metric,
        )
        reached: dict[float, int | None] = {lv: None for lv in levels}
        m = self.metric
        best, since_best = m.worst, 0
        t_start = time.perf_counter()

        def on_eval(samples: int, value: float, _i: int) -> bool:
            nonlocal best, since_best
            for lv in levels:
                if reached[lv] is None and m.reached(value, lv):
                    reached[lv] = samples
            best, since_best = (value, 0) if m.better(value, best) else (best, since_best + 1)
            return all(v is not None for v in reached.values()) or since_best >= self.patience

        diverged = ""
        try:
            curve, _ = train_evaluating(trainer, meter, max_samples, eval_every, on_eval)
        except Diverged as err:  # marked, and the profile goes on without the config
            curve, diverged = err.curve, err.reason
        except torch.OutOfMemoryError:
            meter.flush()
            free_memory(torch_device)
            raise OutOfMemory(f"{config.id} at batch {batch_size} on {device}: out of memory") from None
        meter.flush()
        return ConvergenceRun(
            config.id,
            batch_size,
            tuple(sorted(reached.items())),
            round(best, 5) if math.isfinite(best) else best,
            tuple(curve),
            eval_every,
            "fp32",
            round(time.perf_counter() - t_start, 3),
            device,
            meter.trained_s / max(meter.trained_steps, 1),
            meter.trained_steps,
            diverged=diverged,
        )

    def measure_truncated(
        self,
        config: Config,
        batch_size: int,
        levels: Sequence[float],
        evals: Sequence[int],
        noise_at: Sequence[int],
        noise_batches: tuple[int, int],
        device: str | None = None,
        noise_repeats: int = NOISE_REPEATS,
    ) -> tuple[ConvergenceRun, list[NoiseSample]]:
        """One config's truncated run, continued from the last call
        (``paretrain.runtime.train.lab_truncated``)."""
        device = device if device in self.prices else self.convergence_device
        return measure_truncated(
            self, config, batch_size, levels, evals, noise_at, noise_batches, device, noise_repeats
        )

    def keep_truncated(self, folder: Path, label: str) -> list[TruncatedCheckpoint]:
        """Write the state each truncated run ended in beside the profile, charged to it
        (``paretrain.runtime.train.lab_truncated.keep_runs``), and let the runs go."""
        kept = keep_runs(self, folder, label)
        self.live_runs.clear()
        return kept

    def measure_noise(
        self,
        config: Config,
        progress_samples: Sequence[int],
        small: int,
        big: int,
        repeats: int = NOISE_REPEATS,
    ) -> Sequence[NoiseSample]:
        """Gradient noise (``lab_truncated.noise_sample``) at points of a fresh run's progress."""
        device = self.convergence_device
        torch_device = claim(device)
        meter = self.meter(device, f"gradient noise of {config.id}")
        trainer = Trainer(
            self.workload,
            config,
            batch_size=config.base_batch,
            device=torch_device,
            seed=self.seed,
            metric=self.metric,
        )
        out = []
        for target in sorted(progress_samples):
            while trainer.samples_seen < target:
                meter.timed(trainer.step)
            out.append(noise_sample(trainer, meter, config.id, small, big, repeats))
        meter.flush()
        return out
