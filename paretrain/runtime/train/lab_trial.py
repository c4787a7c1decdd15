"""One search trial measured for real (``TorchLab.run_trial``): train a config at its base batch
on the planning device, evaluating as it goes, then time its inference latency; every second
is charged to the search's ledger and the trial spends no more than it holds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, Protocol

import torch

from paretrain.planner.inputs.metric import Metric
from paretrain.planner.inputs.space import Config
from paretrain.planner.search.search import TrialRun
from paretrain.runtime.train.devices import claim
from paretrain.runtime.train.lab_meter import EnvelopeExhausted, LabMeter, train_evaluating
from paretrain.runtime.train.trainer import Trainer, estimate_peak_bytes

__all__ = ["TRIAL_STALL_S", "TrialHost", "latency_ms", "run_trial"]

#: a search trial stops (or asks the envelope for more) while what it holds still pays for the
#: reserve of a unit this long (``paretrain.runtime.money.reserve``), whatever its steps take:
#: a machine under load stalls a step for that long
TRIAL_STALL_S = 1.0


class TrialHost(Protocol):
    """What a trial needs of the lab it runs in (``paretrain.runtime.train.torch_lab.TorchLab``)."""

    workload: Any
    seed: int
    metric: Metric
    convergence_device: str
    trial_prior_s: float  # the slowest set-up or step of the last trial (guards the next one's first)

    def spent(self) -> float: ...

    def train_size(self) -> int: ...

    def meter(self, device: str, what: str, cap: float | None = None, stage: str = "profile") -> LabMeter: ...


def run_trial(
    lab: TrialHost,
    config: Config,
    max_samples: int,
    eval_every: int,
    cap_usd: float,
    should_stop: Callable[[int, float, int], bool],
    more: Callable[[float], float] | None = None,
) -> TrialRun:
    """See ``TorchLab.run_trial``."""
    torch_device = claim(lab.convergence_device)
    start = lab.spent()
    meter = lab.meter(lab.convergence_device, f"trial {config.id}", cap=start + cap_usd, stage="search")
    meter.more = more
    meter.slowest = lab.trial_prior_s  # the first step's guard: as slow as the last trial's slowest
    meter.floor_s = TRIAL_STALL_S  # the trial's money is shared: a stalled step must not pass it
    built = time.perf_counter()
    trainer = Trainer(
        lab.workload,
        config,
        batch_size=min(config.base_batch, lab.train_size()),
        device=torch_device,
        seed=lab.seed,
        metric=lab.metric,
    )
    built = time.perf_counter() - built
    best, cost_to_best = -math.inf, 0.0

    def on_eval(samples: int, value: float, i: int) -> bool:
        nonlocal best, cost_to_best
        acc = lab.metric.score(value)  # the search maximizes scores: higher is better
        meter.flush()
        if acc > best:
            best, cost_to_best = acc, lab.spent() - start
        return should_stop(samples, acc, i)

    curve: list[tuple[int, float]] = []
    stopped = budget_hit = False
    try:
        curve, stopped = train_evaluating(trainer, meter, max_samples, eval_every, on_eval)
    except EnvelopeExhausted as err:
        budget_hit, curve = True, err.curve
    meter.flush()
    lab.trial_prior_s = max(built, meter.slowest)
    train_spend = lab.spent() - start
    latency = latency_ms(trainer, meter) if not budget_hit else math.nan
    meter.flush()
    if not curve:  # the envelope ran out before the first evaluation
        curve = [(trainer.samples_seen, round(trainer.evaluate().value, 5))]
    return TrialRun(
        curve=tuple((n, lab.metric.score(v)) for n, v in curve),
        cost_to_best_usd=max(cost_to_best, 0.0),
        cost_per_sample_usd=train_spend / max(trainer.samples_seen, 1),
        spend_usd=lab.spent() - start,
        latency_ms=latency if latency == latency else 1e9,
        params=trainer.parameter_count(),
        peak_mem_bytes=estimate_peak_bytes(trainer, trainer.batch_size),
        stopped=stopped,
        budget_hit=budget_hit,
    )


def latency_ms(trainer: Trainer, meter: LabMeter, repeats: int = 50) -> float:
    """Median per-sample inference latency (one sample at a time, no gradients)."""
    x = trainer.example_inputs(1)
    model = trainer.model.eval()
    times: list[float] = []
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
