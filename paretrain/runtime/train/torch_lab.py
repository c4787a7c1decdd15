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

import torch

from paretrain.planner.inputs.metric import Metric
from paretrain.planner.inputs.space import Config
from paretrain.planner.measure.lab import LocalDevice, OutOfMemory
from paretrain.planner.measure.profile import (
    ConvergenceRun,
    NoiseSample,
    StepProfile,
    TruncatedCheckpoint,
)
from paretrain.planner.search.search import TrialRun
from paretrain.runtime.money.ledger import Ledger
from paretrain.runtime.train.deadline import Deadline
from paretrain.runtime.train.devices import claim, local_devices, machine_fingerprint
from paretrain.runtime.train.lab_memory import free_memory
from paretrain.runtime.train.lab_meter import Diverged, LabMeter, train_evaluating
from paretrain.runtime.train.lab_steps import measure_steps, train_size
from paretrain.runtime.train.lab_trial import TRIAL_STALL_S, run_trial
from paretrain.runtime.train.lab_truncated import (
    NOISE_REPEATS,
    LiveRun,
    keep_runs,
    measure_truncated,
    noise_sample,
)
from paretrain.runtime.train.trainer import Trainer

__all__ = ["TRIAL_STALL_S", "TorchLab", "code_version"]

#: the modules whose code decides what a profile measures; hashed by content, wherever they live
_CODE_MODULES = (
    "paretrain.runtime.train.trainer",
    "paretrain.runtime.train.torch_lab",
    "paretrain.runtime.train.lab_meter",
    "paretrain.runtime.train.lab_truncated",
    "paretrain.runtime.train.lab_memory",
    "paretrain.runtime.train.lab_steps",
    "paretrain.runtime.train.batches",
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
        self.open_meter: LabMeter | None = None  # the latest measurement's (``settle``)
        #: the digest of a user workload's code (``workloads.workload_source_digest``), kept with
        #: each truncated run's checkpoint: a run does not start from state other code trained
        self.workload_code = ""
        #: cuts a unit of work the envelope can no longer pay for (set while a profile measures)
        self.deadline: Deadline | None = None
        self._devices = local_devices()
        cpus = [d for d in self._devices if d.kind == "cpu" and d.id in self.prices]
        self.convergence_device = convergence_device or (
            max(cpus, key=lambda d: d.threads).id if cpus else self._devices[0].id
        )

    def devices(self) -> Sequence[LocalDevice]:
        return self._devices

    def fingerprint(self) -> str:
        return self.fingerprint_here()

    @staticmethod
    def fingerprint_here() -> str:
        """This machine and the measuring code (``code_version``)."""
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
        meter.deadline = self.deadline
        self.open_meter = meter
        return meter

    def settle(self) -> None:
        """Charge the time of the measurement under way when it ended by an exception that its
        own code did not settle: a member of the user's workload that raised inside an
        evaluation, say. The time it took was spent on the profile's devices all the same."""
        if self.open_meter is not None:
            self.open_meter.settle()

    def spent(self) -> float:
        """What the lab's ledger holds so far (0 without one)."""
        return self.ledger.spent if self.ledger else 0.0

    def train_size(self) -> int:
        return train_size(self.workload)

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
        return measure_steps(self, config, device, precision, batch_sizes, steps)

    def measure_peak(self, device: str, size: int = 512, repeats: int = 20) -> float:
        """Achieved fp32 matrix-multiply rate on ``device`` (GFLOP/s): the scale against which
        catalog offers' peak TFLOP/s are compared for modeled step times."""
        torch_device = claim(device)
        meter = self.meter(device, f"matrix-multiply rate of {device}")
        meter.guard(0.0)  # the warm-up: a first unit (``lab_meter.FIRST_UNIT_S``)
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
            batch_size=min(batch_size, train_size(self.workload)),
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
        eval_share: float = 1.0,
    ) -> tuple[ConvergenceRun, list[NoiseSample]]:
        """One config's truncated run, continued from the last call
        (``paretrain.runtime.train.lab_truncated``)."""
        device = device if device in self.prices else self.convergence_device
        return measure_truncated(
            self,
            config,
            batch_size,
            levels,
            evals,
            noise_at,
            noise_batches,
            device,
            noise_repeats,
            eval_share,
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
