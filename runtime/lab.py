"""TorchLab: the planner's Lab on this machine's real devices, charged to a ledger.

Every second a measurement keeps a device busy is charged at that device's price under the
``profile`` stage, in ticks of at most a quarter second; before each step the lab checks that
the spend so far, the time not yet charged and the next step stay within its envelope, and
stops with ``BudgetExhausted`` (exit 3) otherwise.
"""

from __future__ import annotations

import hashlib
import time

import torch
from pathlib import Path
from typing import Mapping, Sequence

from planner.errors import BudgetExhausted
from planner.lab import LocalDevice
from planner.profile import ConvergenceRun, NoiseSample, StepProfile, StepSample
from planner.space import Config
from runtime.devices import claim, local_devices, machine_fingerprint
from runtime.ledger import Ledger
from runtime.trainer import Trainer, estimate_peak_bytes
from runtime.workloads.base import Workload

__all__ = ["TorchLab", "code_version"]

_CODE_FILES = ("runtime/trainer.py", "runtime/lab.py", "runtime/workloads/mnist1d.py", "runtime/distributed.py",
               "planner/profile.py", "planner/models.py")


def code_version() -> str:
    """A digest of the code that measures (so a profile is remeasured when it changes)."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for rel in _CODE_FILES:
        p = root / rel
        h.update(p.read_bytes() if p.exists() else rel.encode())
    return h.hexdigest()[:12]


class _Meter:
    """Charges device time to the ledger in ticks and guards the envelope before each step."""

    def __init__(self, ledger: Ledger | None, cap_usd: float, price_usd_per_s: float, hardware: str,
                 what: str, tick_s: float = 0.25) -> None:
        self.ledger, self.cap, self.price, self.hardware, self.what = ledger, cap_usd, price_usd_per_s, hardware, what
        self.tick_s = tick_s
        self.start = self.last = time.perf_counter()
        self.slowest = 0.0

    def guard(self, next_s: float) -> None:
        spent = self.ledger.spent if self.ledger else 0.0
        pending = (time.perf_counter() - self.last) * self.price
        nxt = 2.0 * max(next_s, self.slowest) * self.price
        if spent + pending + nxt > self.cap:
            self.flush()
            spent = self.ledger.spent if self.ledger else 0.0
            raise BudgetExhausted(
                f"profiling stopped at its envelope: spent ${spent:.6g} of ${self.cap:.6g} while "
                f"measuring {self.what}. To fix: raise budget.envelopes.profile, measure fewer "
                "configs or batch sizes, or lower target.max_samples")

    def observe(self, step_s: float) -> None:
        self.slowest = max(self.slowest * 0.99, step_s)
        if time.perf_counter() - self.last >= self.tick_s:
            self.flush()

    def flush(self) -> None:
        now = time.perf_counter()
        dt = now - self.last
        self.last = now
        if self.ledger is not None and dt > 0:
            self.ledger.charge("profile", dt * self.price, seconds=dt, stage="profile",
                               hardware=self.hardware, what=self.what)


class TorchLab:
    """Measures configs for real with torch on the local devices."""

    def __init__(self, workload: Workload, *, prices_usd_per_h: Mapping[str, float],
                 ledger: Ledger | None = None, cap_usd: float = float("inf"), seed: int = 0,
                 convergence_device: str | None = None, patience_evals: int = 15) -> None:
        self.workload = workload
        self.prices = dict(prices_usd_per_h)
        self.ledger = ledger
        self.cap = cap_usd
        self.seed = seed
        self.patience = patience_evals
        self._devices = local_devices()
        cpus = [d for d in self._devices if d.kind == "cpu" and d.id in self.prices]
        self.convergence_device = convergence_device or (
            max(cpus, key=lambda d: d.threads).id if cpus else self._devices[0].id)

    def devices(self) -> Sequence[LocalDevice]:
        return self._devices

    def fingerprint(self) -> str:
        return f"{machine_fingerprint()}-{code_version()}"

    def _meter(self, device: str, what: str) -> _Meter:
        return _Meter(self.ledger, self.cap, self.prices.get(device, 0.0) / 3600.0, device, what)

    def measure_steps(self, config: Config, device: str, precision: str,
                      batch_sizes: Sequence[int], steps: int) -> StepProfile:
        torch_device = claim(device)
        meter = self._meter(device, f"steps of {config.id} on {device}")
        n_train = self.workload.data().train_size
        usable = [b for b in batch_sizes if b <= n_train]
        trainer = Trainer(self.workload, config, batch_size=usable[0], precision=precision,
                          device=torch_device, seed=self.seed)
        samples = []
        for b in usable:
            trainer.set_batch_size(b)
            times = []
            for i in range(steps + 3):  # 3 warm-up steps are not timed
                meter.guard(times[-1] if times else 0.0)
                t0 = time.perf_counter()
                trainer.step()
                dt = time.perf_counter() - t0
                meter.observe(dt)
                if i >= 3:
                    times.append(dt)
            step_s = sum(times) / len(times)  # a run's time is a sum of steps: the mean predicts it
            samples.append(StepSample(b, 1, step_s, b / step_s, estimate_peak_bytes(trainer, b)))
        evals = []
        for _ in range(4):  # the first evaluation warms up and is not counted
            meter.guard(evals[-1] if evals else 0.0)
            evals.append(trainer.evaluate().seconds)
        meter.flush()
        return StepProfile(device, config.id, precision, tuple(samples), eval_s=sum(evals[1:]) / 3,
                           source="measured", measured_on=machine_fingerprint(),
                           param_count=trainer.parameter_count())

    def measure_peak(self, device: str, size: int = 512, repeats: int = 20) -> float:
        """Achieved fp32 matrix-multiply rate on ``device`` (GFLOP/s): the scale against which
        catalog offers' peak TFLOP/s are compared for modeled step times."""
        torch_device = claim(device)
        meter = self._meter(device, f"matrix-multiply rate of {device}")
        a = torch.randn(size, size, device=torch_device)
        b = torch.randn(size, size, device=torch_device)
        a @ b  # warm-up
        best = float("inf")
        for _ in range(repeats):
            meter.guard(best if best < float("inf") else 0.0)
            t0 = time.perf_counter()
            a @ b
            if torch_device.startswith("cuda"):
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t0)
            meter.observe(best)
        meter.flush()
        return 2.0 * size ** 3 / best / 1e9

    def measure_sync(self, workers: int, nbytes: int) -> float:
        """Seconds of one gloo all-reduce of ``nbytes`` among ``workers`` local processes."""
        from runtime.distributed import allreduce_seconds

        device = f"local/cpu-{workers}" if f"local/cpu-{workers}" in self.prices else self.convergence_device
        meter = self._meter(device, f"all-reduce among {workers}")
        meter.guard(5.0)  # spawning the processes takes a few seconds
        seconds = allreduce_seconds(workers, nbytes)
        meter.flush()
        return seconds

    def measure_convergence(self, config: Config, batch_size: int, levels: Sequence[float],
                            max_samples: int, eval_every: int) -> ConvergenceRun:
        device = self.convergence_device
        torch_device = claim(device)
        meter = self._meter(device, f"convergence of {config.id} at batch {batch_size}")
        trainer = Trainer(self.workload, config, batch_size=min(batch_size, self.workload.data().train_size),
                          device=torch_device, seed=self.seed)
        reached: dict[float, int | None] = {lv: None for lv in levels}
        curve: list[tuple[int, float]] = []
        best, since_best, next_eval = 0.0, 0, eval_every
        t_start = time.perf_counter()
        while trainer.samples_seen < max_samples:
            meter.guard(0.0)
            t0 = time.perf_counter()
            trainer.step()
            meter.observe(time.perf_counter() - t0)
            if trainer.samples_seen >= next_eval or trainer.samples_seen >= max_samples:
                next_eval += eval_every * max(1, (trainer.samples_seen - next_eval) // eval_every + 1)
                acc = trainer.evaluate().accuracy
                curve.append((trainer.samples_seen, round(acc, 5)))
                for lv in levels:
                    if reached[lv] is None and acc >= lv:
                        reached[lv] = trainer.samples_seen
                if acc > best:
                    best, since_best = acc, 0
                else:
                    since_best += 1
                if all(v is not None for v in reached.values()) or since_best >= self.patience:
                    break
        meter.flush()
        return ConvergenceRun(config.id, batch_size, tuple(sorted(reached.items())), round(best, 5),
                              tuple(curve), eval_every, "fp32", round(time.perf_counter() - t_start, 3))

    def measure_noise(self, config: Config, progress_samples: Sequence[int], small: int,
                      big: int, repeats: int = 8) -> Sequence[NoiseSample]:
        """McCandlish et al. (2018), Appendix A: from |G_small|^2 and |G_big|^2 (averaged over
        ``repeats`` fresh batches) estimate |G|^2 and tr(Sigma); B_simple = tr(Sigma) / |G|^2."""
        device = self.convergence_device
        torch_device = claim(device)
        meter = self._meter(device, f"gradient noise of {config.id}")
        trainer = Trainer(self.workload, config, batch_size=config.base_batch, device=torch_device,
                          seed=self.seed)
        out = []
        for target in sorted(progress_samples):
            while trainer.samples_seen < target:
                meter.guard(0.0)
                t0 = time.perf_counter()
                trainer.step()
                meter.observe(time.perf_counter() - t0)
            gs, gb = [], []
            for _ in range(repeats):
                meter.guard(0.0)
                gs.append(trainer.grad_sq_norm(small))
                gb.append(trainer.grad_sq_norm(big))
                meter.observe(0.0)
            s2, b2 = sum(gs) / repeats, sum(gb) / repeats
            g2 = (big * b2 - small * s2) / (big - small)
            tr = (s2 - b2) / (1.0 / small - 1.0 / big)
            acc = trainer.evaluate().accuracy
            # a non-positive |G|^2 estimate (noise dominates) gives no usable B_simple: recorded as 0
            out.append(NoiseSample(config.id, trainer.samples_seen, round(acc, 5), g2, tr,
                                   tr / g2 if g2 > 0 and tr > 0 else 0.0))
        meter.flush()
        return out
