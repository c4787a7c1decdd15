"""TorchLab: the planner's Lab on this machine's real devices, charged to a ledger.

Every second a measurement keeps a device busy is charged at that device's price under the
``profile`` stage, in ticks of at most a quarter second; before each step the lab checks that
the spend so far, the time not yet charged and the next step stay within its envelope, and
stops with ``BudgetExhausted`` (exit 3) otherwise.
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

from paretrain.planner.errors import BudgetExhausted
from paretrain.planner.inputs.metric import Metric
from paretrain.planner.inputs.space import Config
from paretrain.planner.measure.lab import LocalDevice
from paretrain.planner.measure.profile import ConvergenceRun, NoiseSample, StepProfile, StepSample
from paretrain.planner.search.search import TrialRun
from paretrain.runtime.money.ledger import Ledger
from paretrain.runtime.train.devices import claim, local_devices, machine_fingerprint
from paretrain.runtime.train.trainer import Trainer, estimate_peak_bytes

__all__ = ["TRIAL_STALL_S", "TorchLab", "code_version"]

#: a search trial stops (or asks the envelope for more) while what it holds still pays for
#: twice this long, whatever its steps take: a machine under load stalls a step for that long
TRIAL_STALL_S = 1.0

#: the modules whose code decides what a profile measures; hashed by content, wherever they live
_CODE_MODULES = (
    "paretrain.runtime.train.trainer",
    "paretrain.runtime.train.torch_lab",
    "paretrain.runtime.train.workloads.mnist1d",
    "paretrain.runtime.train.distributed",
    "paretrain.planner.measure.profile",
    "paretrain.planner.measure.measurements",
    "paretrain.planner.measure.fits",
)


def code_version() -> str:
    """A digest of the code that measures (so a profile is remeasured when it changes)."""
    h = hashlib.sha256()
    for name in _CODE_MODULES:
        spec = importlib.util.find_spec(name)
        origin = Path(spec.origin) if spec is not None and spec.origin else None
        h.update(origin.read_bytes() if origin is not None and origin.exists() else name.encode())
    return h.hexdigest()[:12]


def _synchronizer(device: str) -> Callable[[], None]:
    """Waits for the kernels queued on a CUDA device (``local/cuda:I`` or ``cuda:I``); a no-op
    elsewhere. CUDA runs a step's kernels asynchronously: a clock read without waiting times
    the launches, and the work lands on whatever is timed next."""
    kind = device.split("/", 1)[-1]
    if kind.startswith("cuda"):
        return lambda: torch.cuda.synchronize(kind)
    return lambda: None


class _Meter:
    """Charges device time to the ledger in ticks and guards the envelope before each step."""

    def __init__(
        self,
        ledger: Ledger | None,
        cap_usd: float,
        price_usd_per_s: float,
        hardware: str,
        what: str,
        tick_s: float = 0.25,
        stage: str = "profile",
    ) -> None:
        self.ledger, self.cap, self.price, self.hardware, self.what = (
            ledger,
            cap_usd,
            price_usd_per_s,
            hardware,
            what,
        )
        self.stage = stage
        self.sync = _synchronizer(hardware)
        self.tick_s = tick_s
        self.start = self.last = time.perf_counter()
        self.slowest = 0.0
        self.more: Callable[[float], float] | None = None  # grants more than ``cap`` (the search envelope)
        self.floor_s = 0.0  # the least a unit of work is expected to take (a stall of the machine)
        self.trained_s, self.trained_steps = 0.0, 0  # the training steps of ``_train_evaluating``

    def guard(self, next_s: float) -> None:
        spent = self.ledger.spent if self.ledger else 0.0
        pending = (time.perf_counter() - self.last) * self.price
        nxt = 2.0 * max(next_s, self.slowest, self.floor_s) * self.price
        if spent + pending + nxt > self.cap and self.more is not None:  # ask the envelope for more
            self.cap += self.more(spent + pending + nxt - self.cap)
        if spent + pending + nxt > self.cap:
            self.flush()
            spent = self.ledger.spent if self.ledger else 0.0
            raise BudgetExhausted(
                f"{'profiling' if self.stage == 'profile' else 'the search'} stopped at its envelope: spent "
                f"${spent:.6g} of ${self.cap:.6g} while measuring {self.what}. To fix: raise "
                f"budget.envelopes.{self.stage}, or measure less"
            )

    def timed(self, work: Callable[[], object], next_s: float = 0.0) -> float:
        """Guard the envelope for ``work`` (expected to take about ``next_s``), do it, observe
        and return its seconds."""
        self.guard(next_s)
        self.sync()
        t0 = time.perf_counter()
        work()
        self.sync()
        dt = time.perf_counter() - t0
        self.observe(dt)
        return dt

    def observe(self, step_s: float) -> None:
        self.slowest = max(self.slowest * 0.99, step_s)
        if time.perf_counter() - self.last >= self.tick_s:
            self.flush()

    def flush(self) -> None:
        now = time.perf_counter()
        dt = now - self.last
        self.last = now
        if self.ledger is not None and dt > 0:
            self.ledger.charge(
                self.stage,
                dt * self.price,
                seconds=dt,
                stage=self.stage,
                hardware=self.hardware,
                what=self.what,
            )


def _train_evaluating(
    trainer: Trainer,
    meter: _Meter,
    max_samples: int,
    eval_every: int,
    on_eval: Callable[[int, float, int], bool],
) -> tuple[list[tuple[int, float]], bool]:
    """Metered steps up to ``max_samples``, evaluating every ``eval_every`` samples (and at the
    end); ``on_eval(samples, value, index)`` (the target metric) returning True stops early. Returns the curve and
    whether it stopped early. A ``BudgetExhausted`` from the meter carries the curve so far."""
    curve: list[tuple[int, float]] = []
    next_eval = eval_every
    try:
        while trainer.samples_seen < max_samples:
            meter.trained_s += meter.timed(trainer.step)
            meter.trained_steps += 1
            if trainer.samples_seen >= next_eval or trainer.samples_seen >= max_samples:
                next_eval += eval_every * max(1, (trainer.samples_seen - next_eval) // eval_every + 1)
                meter.guard(0.0)
                value = trainer.evaluate().value  # the target metric, in its own units
                curve.append((trainer.samples_seen, round(value, 5)))
                if on_eval(trainer.samples_seen, value, len(curve) - 1):
                    return curve, True
    except BudgetExhausted as err:
        err.curve = curve  # type: ignore[attr-defined]
        raise
    return curve, False


def _train_size(workload: Any) -> int:
    """Samples in the workload's training set (a large number for an unsized iterable one)."""
    try:
        return len(workload.train_dataset())
    except TypeError:
        return 1 << 40


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
    ) -> None:
        self.workload = workload
        info = workload.info
        self.metric = metric or Metric(info.target, info.direction(info.target) or "maximize")
        self.prices = dict(prices_usd_per_h)
        self.ledger = ledger
        self.cap = cap_usd
        self.seed = seed
        self.patience = patience_evals
        self._trial_prior_s = (
            0.0  # the slowest set-up or step of the last trial (guards the next one's first)
        )
        self._devices = local_devices()
        cpus = [d for d in self._devices if d.kind == "cpu" and d.id in self.prices]
        self.convergence_device = convergence_device or (
            max(cpus, key=lambda d: d.threads).id if cpus else self._devices[0].id
        )

    def devices(self) -> Sequence[LocalDevice]:
        return self._devices

    def fingerprint(self) -> str:
        return f"{machine_fingerprint()}-{code_version()}"

    def _meter(self, device: str, what: str, cap: float | None = None, stage: str = "profile") -> _Meter:
        return _Meter(
            self.ledger,
            self.cap if cap is None else cap,
            self.prices.get(device, 0.0) / 3600.0,
            device,
            what,
            stage=stage,
        )

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
        device = self.convergence_device
        torch_device = claim(device)
        start = self.ledger.spent if self.ledger else 0.0
        meter = self._meter(device, f"trial {config.id}", cap=start + cap_usd, stage="search")
        meter.more = more
        meter.slowest = self._trial_prior_s  # the first step's guard: as slow as the last trial's slowest
        meter.floor_s = TRIAL_STALL_S  # the trial's money is shared: a stalled step must not pass it
        built = time.perf_counter()
        trainer = Trainer(
            self.workload,
            config,
            batch_size=min(config.base_batch, _train_size(self.workload)),
            device=torch_device,
            seed=self.seed,
            metric=self.metric,
        )
        built = time.perf_counter() - built
        best, cost_to_best, budget_hit = -math.inf, 0.0, False

        def on_eval(samples: int, value: float, i: int) -> bool:
            nonlocal best, cost_to_best
            acc = self.metric.score(value)  # the search maximizes scores: higher is better
            meter.flush()
            if acc > best:
                best, cost_to_best = acc, (self.ledger.spent if self.ledger else 0.0) - start
            return should_stop(samples, acc, i)

        curve: list[tuple[int, float]] = []
        stopped = False
        try:
            curve, stopped = _train_evaluating(trainer, meter, max_samples, eval_every, on_eval)
        except BudgetExhausted as err:
            budget_hit = True
            curve = getattr(err, "curve", [])
        meter.flush()
        self._trial_prior_s = max(built, meter.slowest)
        train_spend = (self.ledger.spent if self.ledger else 0.0) - start
        latency_ms = self._latency_ms(trainer, meter) if not budget_hit else float("nan")
        meter.flush()
        spend = (self.ledger.spent if self.ledger else 0.0) - start
        if not curve:  # the envelope ran out before the first evaluation
            curve = [(trainer.samples_seen, round(trainer.evaluate().value, 5))]
        scores = tuple((n, self.metric.score(v)) for n, v in curve)
        return TrialRun(
            curve=scores,
            cost_to_best_usd=max(cost_to_best, 0.0),
            cost_per_sample_usd=train_spend / max(trainer.samples_seen, 1),
            spend_usd=spend,
            latency_ms=latency_ms if latency_ms == latency_ms else 1e9,
            params=trainer.parameter_count(),
            peak_mem_bytes=estimate_peak_bytes(trainer, trainer.batch_size),
            stopped=stopped,
            budget_hit=budget_hit,
        )

    def _latency_ms(self, trainer: Trainer, meter: _Meter, repeats: int = 50) -> float:
        """Median per-sample inference latency (one sample at a time, no gradients)."""
        x = trainer.example_inputs(1)
        model = trainer.model.eval()
        times = []
        with torch.no_grad():
            model(x)
            meter.sync()
            for _ in range(repeats):
                meter.guard(times[-1] if times else 0.0)
                t0 = time.perf_counter()
                model(x)
                meter.sync()
                times.append(time.perf_counter() - t0)
                meter.observe(times[-1])
        times.sort()
        return 1000.0 * times[len(times) // 2]

    def measure_steps(
        self, config: Config, device: str, precision: str, batch_sizes: Sequence[int], steps: int
    ) -> StepProfile:
        torch_device = claim(device)
        meter = self._meter(device, f"steps of {config.id} on {device}")
        n_train = _train_size(self.workload)
        usable = [b for b in batch_sizes if b <= n_train]
        trainer = Trainer(
            self.workload,
            config,
            batch_size=usable[0],
            precision=precision,
            device=torch_device,
            seed=self.seed,
            metric=self.metric,
        )
        # Interleaved: ``rounds`` passes over the batch sizes, each timing a share of the steps
        # after one untimed step at the new size, and the mean of a size's per-pass means. A
        # slow spell of a shared machine then lands on every batch size alike instead of on
        # whichever size was being measured, so the planner's comparison between batch sizes
        # holds even when the absolute speed drifts; the mean (not the median) keeps the slow
        # spells a run will also meet, since a run's time is the sum of its steps. Before it, a
        # quarter second of untimed steps: a fresh process runs its first steps up to 1.6x slower.
        rounds = max(1, min(5, steps // 4))
        passes: dict[int, list[float]] = {b: [] for b in usable}
        warm_until, warm_s = time.perf_counter() + 0.25, []
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
        samples = []
        for b in usable:
            step_s = float(np.mean(passes[b]))
            spread = float(np.std(passes[b]) / step_s) if len(passes[b]) > 1 else 0.0
            samples.append(
                StepSample(b, 1, step_s, b / step_s, estimate_peak_bytes(trainer, b), round(spread, 5))
            )
        # what the warm-up steps took beyond the steady state at the first batch size: paid once per run
        fixed = max(0.0, sum(warm_s) - len(warm_s) * float(np.mean(passes[usable[0]])))
        evals = []
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
        )

    def _ckpt_s(self, trainer: Trainer, meter: _Meter, repeats: int = 3) -> float:
        """Median seconds to write the trainer's checkpoint as the runtime does (atomic, fsync)."""
        import tempfile

        from paretrain.runtime.train.checkpoint import save_checkpoint

        times = []
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
        meter = self._meter(device, f"matrix-multiply rate of {device}")
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
        meter = self._meter(device, f"all-reduce among {workers}")
        meter.guard(10.0)  # launching the processes through the agent takes 3-5 s on 2 cores
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
        meter = self._meter(device, f"convergence of {config.id} at batch {batch_size}")
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

        curve, _ = _train_evaluating(trainer, meter, max_samples, eval_every, on_eval)
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
        )

    def measure_noise(
        self, config: Config, progress_samples: Sequence[int], small: int, big: int, repeats: int = 16
    ) -> Sequence[NoiseSample]:
        """McCandlish et al. (2018), Appendix A: from |G_small|^2 and |G_big|^2 (averaged over
        ``repeats`` fresh batches) estimate |G|^2 and tr(Sigma); B_simple = tr(Sigma) / |G|^2."""
        device = self.convergence_device
        torch_device = claim(device)
        meter = self._meter(device, f"gradient noise of {config.id}")
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
            gs: list[float] = []
            gb: list[float] = []
            pair_s = 0.0
            for _ in range(repeats):
                pair_s = meter.timed(
                    lambda gs=gs, gb=gb: (
                        gs.append(trainer.grad_sq_norm(small)),
                        gb.append(trainer.grad_sq_norm(big)),
                    ),
                    pair_s,
                )
            s2, b2 = sum(gs) / repeats, sum(gb) / repeats
            g2 = (big * b2 - small * s2) / (big - small)
            tr = (s2 - b2) / (1.0 / small - 1.0 / big)
            acc = trainer.evaluate().value
            # a non-positive |G|^2 estimate (noise dominates) gives no usable B_simple: recorded as 0
            out.append(
                NoiseSample(
                    config.id,
                    trainer.samples_seen,
                    round(acc, 5),
                    g2,
                    tr,
                    tr / g2 if g2 > 0 and tr > 0 else 0.0,
                )
            )
        meter.flush()
        return out
