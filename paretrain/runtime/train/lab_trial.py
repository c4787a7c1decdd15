"""One search trial measured for real (``TorchLab.run_trial``): train a config at its base batch
on the planning device, evaluating as it goes, then time its inference latency; every second
is charged to the search's ledger and the trial spends no more than it holds.

The trial is watched (``paretrain.planner.search.faults`` gives the rule): a non-finite training
loss at any step, or a non-finite evaluated metric, ends it as ``divergence``; ``build`` raising
ends it as ``infeasible``; any other workload member raising aborts it with a one-line
``WorkloadError`` naming the member and the config; ``check`` (the worker's signal flag), asked
before every step, aborts it too. Each way, what the trial spent is flushed to the ledger first
and goes with the outcome, so that the search settles it to the envelope.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

import torch
from torch.utils.data import Dataset

from paretrain.planner.inputs.metric import Metric
from paretrain.planner.inputs.space import Config
from paretrain.planner.search.faults import (
    DIVERGENCE,
    INFEASIBLE,
    UNFUNDED,
    SearchInterrupted,
    TrialAborted,
    TrialFault,
)
from paretrain.planner.search.search import TrialRun
from paretrain.runtime.train.devices import claim
from paretrain.runtime.train.dry_check import NamedFault, WorkloadError, raised
from paretrain.runtime.train.lab_meter import EnvelopeExhausted, LabMeter, train_evaluating
from paretrain.runtime.train.trainer import Evaluation, Trainer, estimate_peak_bytes

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
    *,
    check: Callable[[], None] | None = None,
    name: str | None = None,
) -> TrialRun:
    """See ``TorchLab.run_trial``; ``check`` is asked before every step and may raise
    ``SearchInterrupted``; ``name`` is how the spec names the workload (for its messages)."""
    start = lab.spent()
    meter = lab.meter(lab.convergence_device, f"trial {config.id}", cap=start + cap_usd, stage="search")
    meter.more = more
    meter.slowest = lab.trial_prior_s  # the first step's guard: as slow as the last trial's slowest
    # the trial's money is shared: a stalled step must not pass it. Where the deadline can cut
    # one (``paretrain.runtime.train.deadline``), no unit need be reserved as a stall
    timer = meter.deadline
    meter.floor_s = 0.0 if timer is not None and timer.active else TRIAL_STALL_S
    try:
        return _measure(lab, config, meter, start, max_samples, eval_every, should_stop, check)
    except _Diverged as err:
        meter.flush()
        return _unscored(lab, start, TrialFault(DIVERGENCE, str(err)))
    except _MemberRaised as err:
        meter.flush()
        error = err.workload_error(name or lab.workload.info.name, config)
        if err.member == "build":  # a config the model cannot take: an infeasible point
            return _unscored(lab, start, TrialFault(INFEASIBLE, str(error)))
        raise TrialAborted(error, lab.spent() - start) from err.__cause__
    except SearchInterrupted as err:
        meter.flush()
        raise TrialAborted(err, lab.spent() - start, "interrupted", err.signal_name) from None
    except BaseException as err:
        meter.flush()
        raise TrialAborted(err, lab.spent() - start) from None


def _measure(
    lab: TrialHost,
    config: Config,
    meter: LabMeter,
    start: float,
    max_samples: int,
    eval_every: int,
    should_stop: Callable[[int, float, int], bool],
    check: Callable[[], None] | None,
) -> TrialRun:
    torch_device = claim(lab.convergence_device)
    built = time.perf_counter()
    trainer = _WatchedTrainer(
        _Members(lab.workload),
        config,
        batch_size=min(config.base_batch, lab.train_size()),
        device=torch_device,
        seed=lab.seed,
        metric=lab.metric,
    )
    trainer.check = check
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
    latency, budget_hit = _latency(trainer, meter) if not budget_hit else (math.nan, True)
    meter.flush()
    if not curve:  # the envelope ran out before the first evaluation: nothing to score
        fault = TrialFault(
            UNFUNDED,
            f"the search envelope ran out after {trainer.samples_seen} samples, before a first evaluation",
        )
        return replace(_unscored(lab, start, fault), budget_hit=True)
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


def _unscored(lab: TrialHost, start: float, fault: TrialFault) -> TrialRun:
    """A trial that ran but is not scored: only what it spent and why."""
    return TrialRun(
        curve=(),
        cost_to_best_usd=0.0,
        cost_per_sample_usd=0.0,
        spend_usd=lab.spent() - start,
        latency_ms=1e9,
        params=0,
        peak_mem_bytes=0,
        fault=fault,
    )


def _latency(trainer: Trainer, meter: LabMeter) -> tuple[float, bool]:
    """The trained model's latency, and whether the trial's money ran out measuring it (then it
    is a trial at its budget, with no latency, not the search's end)."""
    try:
        return latency_ms(trainer, meter), False
    except EnvelopeExhausted:
        return math.nan, True
    except _MemberRaised:
        raise
    except Exception as err:  # the user's model, run on what inputs() gave
        raise _MemberRaised("forward", err) from err


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


# -- the watch: a user's members named when they raise, non-finite numbers caught ---------------

#: the workload's members a trial calls, and what to do when one raises
_FIXES = {
    "build": "make build() accept this config, or narrow search.space to the configs it accepts",
    "train_dataset": "make train_dataset() and every one of its samples readable",
    "val_dataset": "make val_dataset() return a torch Dataset",
    "loss": "make loss() return a scalar tensor for every training batch",
    "evaluate": "make evaluate(), and the model it runs, return a dict of named numbers for the validation set",
    "inputs": "make inputs() return what the model takes",
    "optimizer": "make optimizer() return a torch optimizer over the model's parameters",
    "forward": "make the model take what inputs() returns",
}


def _what(member: str, cfg: Config) -> str:
    label = " ".join([repr(cfg.id), *(f"{k}={v}" for k, v in cfg.params)])
    if member == "build":
        return f"build({label})"
    if member in ("train_dataset", "val_dataset"):
        return f"{member}() (training {label})"
    if member == "inputs":
        return "inputs(a batch)"
    if member == "forward":
        return f"the model of {label} on inputs(a batch)"
    return f"{member}(model {label})"


class _MemberRaised(NamedFault):
    """A workload member raised ``err`` during a trial."""

    def __init__(self, member: str, err: BaseException) -> None:
        super().__init__(f"{member} raised {type(err).__name__}")
        self.member, self.err = member, err

    def workload_error(self, workload: str, cfg: Config) -> WorkloadError:
        return WorkloadError(workload, _what(self.member, cfg), raised(self.err), _FIXES[self.member])


class _Diverged(NamedFault):
    """A non-finite loss or metric: the message says which, and when."""


def _named(member: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (_MemberRaised, _Diverged, SearchInterrupted):
            raise
        except Exception as err:  # a user's code: anything it raises is named
            raise _MemberRaised(member, err) from err

    return call


class _Members:
    """A workload whose members, when they raise, say which member it was."""

    def __init__(self, workload: Any) -> None:
        self._workload = workload

    def __getattr__(self, name: str) -> Any:
        if name == "_workload":  # asked before __init__ set it (a copy): not a member
            raise AttributeError(name)
        found = getattr(self._workload, name)
        return _named(name, found) if name in _FIXES and callable(found) else found


class _WatchedTrainer(Trainer):
    """A trainer that asks ``check`` before each step and stops at a non-finite loss or metric."""

    check: Callable[[], None] | None = None

    def step(self) -> float:
        if self.check is not None:
            self.check()
        value = super().step()
        if not math.isfinite(value):
            raise _Diverged(f"loss {value} at step {self.steps}")
        return value

    def _next_batch(self) -> Any:
        try:
            return super()._next_batch()
        except Exception as err:  # the user's dataset, read one sample at a time
            raise _MemberRaised("train_dataset", err) from err

    def evaluate(self, chunk: int = 512, val: Dataset | None = None) -> Evaluation:
        out = super().evaluate(chunk, val)
        for metric, value in out.metrics.items():
            if not math.isfinite(value):
                raise _Diverged(f"{metric} {value} at sample {self.samples_seen}")
        return out
