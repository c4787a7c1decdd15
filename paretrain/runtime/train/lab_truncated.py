"""The lab's truncated convergence run: one config trained once, evaluated as it goes, with
gradient-noise samples taken along the same run (``paretrain.planner.measure.budgeted`` decides
how far).

A later call for the same (config, batch size, device) continues the run where the last one
stopped (the trainer stays in the lab), so the profile's rounds extend a run rather than start
it again: no sample is trained twice. Each call returns the whole run so far.

An evaluation reads the share of the validation set that the round asks for
(``paretrain.planner.measure.budgeted``: a round whose evaluations of the whole set would cost
more than its share of the round's training reads a part), never fewer than
``MIN_EVAL_EXAMPLES`` examples: a fixed random draw (``batches.drawn``), the same for every
round of a run, a larger one holding every example of a smaller. A level is reached only by an
evaluation of the whole set: a part's value past a level no earlier point reached is
evaluated again on the whole set, and the whole set's value is what the curve records. So a
part's noise may move the curve's early points, never a level the plan takes as reached.

When the profile is done, ``keep_runs`` writes the state each run ended in (the trainer's
checkpoint format: model, optimizer, RNG, data position), charged to the profile like any of its
work, so that a run of the same config can start there
(``paretrain.planner.program.reuse``): the profile's training is not paid twice.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence, Sized
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import torch

from paretrain.planner.inputs.space import Config
from paretrain.planner.measure.lab import NOISE_REPEATS, OutOfMemory
from paretrain.planner.measure.measurements import ConvergenceRun, NoiseSample, TruncatedCheckpoint
from paretrain.runtime.train.batches import drawn
from paretrain.runtime.train.checkpoint import save_state
from paretrain.runtime.train.devices import claim
from paretrain.runtime.train.lab_memory import free_memory
from paretrain.runtime.train.lab_meter import (
    Diverged,
    EnvelopeExhausted,
    LabMeter,
    checked_step,
    checked_value,
)
from paretrain.runtime.train.trainer import Trainer


class TorchLab(Protocol):
    """What this module needs of ``paretrain.runtime.train.torch_lab.TorchLab``."""

    workload: Any
    seed: int
    metric: Any
    live_runs: dict[tuple[str, int, str], LiveRun]
    workload_code: str

    def train_size(self) -> int: ...

    def meter(self, device: str, what: str, cap: float | None = None, stage: str = "profile") -> LabMeter: ...


__all__ = ["MIN_EVAL_EXAMPLES", "NOISE_REPEATS", "LiveRun", "keep_runs", "measure_truncated", "noise_sample"]

#: the fewest validation examples an evaluation of a truncated run reads: at an accuracy of
#: 0.5, the standard error of 2,048 examples is 0.011
MIN_EVAL_EXAMPLES = 2048


@dataclass
class LiveRun:
    """A truncated run kept between the profile's rounds."""

    trainer: Trainer
    device: str
    curve: list[tuple[int, float]] = field(default_factory=list)
    noise: list[NoiseSample] = field(default_factory=list)
    seconds: float = 0.0
    trained_s: float = 0.0
    trained_steps: int = 0
    trained_usd: float = 0.0  # the training steps' dollars (``TruncatedCheckpoint.trained_usd``)
    diverged: str = ""  # a non-finite loss or metric stopped it (``lab_meter.Diverged``)
    part: tuple[int, Any] | None = None  # the validation part read last, and its size


def noise_sample(
    trainer: Trainer,
    meter: LabMeter,
    config_id: str,
    small: int,
    big: int,
    repeats: int = NOISE_REPEATS,
    value: float | None = None,
) -> NoiseSample:
    """McCandlish et al. (2018), Appendix A: from |G_small|^2 and |G_big|^2 (averaged over
    ``repeats`` fresh batches) estimate |G|^2 and tr(Sigma); B_simple = tr(Sigma) / |G|^2. No
    step is taken. A non-positive |G|^2 estimate (noise dominates) gives B_simple 0: unusable.
    ``value``: the metric where the sample is taken, when an evaluation there measured it
    already (else it is evaluated)."""
    gs: list[float] = []
    gb: list[float] = []
    pair_s = 0.0

    def pair() -> None:
        gs.append(trainer.grad_sq_norm(small))
        gb.append(trainer.grad_sq_norm(big))

    for _ in range(repeats):
        pair_s = meter.timed(pair, pair_s)
    s2, b2 = sum(gs) / repeats, sum(gb) / repeats
    g2 = (big * b2 - small * s2) / (big - small)
    tr = (s2 - b2) / (1.0 / small - 1.0 / big)
    value = trainer.evaluate().value if value is None else value
    return NoiseSample(
        config_id, trainer.samples_seen, round(value, 5), g2, tr, tr / g2 if g2 > 0 and tr > 0 else 0.0
    )


def _live(lab: TorchLab, config: Config, batch_size: int, device: str) -> LiveRun:
    key = (config.id, batch_size, device)
    run = lab.live_runs.get(key)
    if run is None:
        trainer = Trainer(
            lab.workload,
            config,
            batch_size=min(batch_size, lab.train_size()),
            device=claim(device),
            seed=lab.seed,
            metric=lab.metric,
        )
        run = lab.live_runs[key] = LiveRun(trainer, device)
    else:
        claim(device)
    return run


def measure_truncated(
    lab: TorchLab,
    config: Config,
    batch_size: int,
    levels: Sequence[float],
    evals: Sequence[int],
    noise_at: Sequence[int],
    noise_batches: tuple[int, int],
    device: str,
    noise_repeats: int = NOISE_REPEATS,
    eval_share: float = 1.0,
) -> tuple[ConvergenceRun, list[NoiseSample]]:
    """Train ``config`` at ``batch_size`` on ``device`` up to the last of ``evals`` (sample
    counts), evaluating at each (on ``eval_share`` of the validation set: see the module
    docstring) and taking a gradient-noise sample (``noise_repeats`` batch pairs, at the
    evaluation's point: its value is the evaluation's) at each of ``noise_at``. A non-finite
    loss or metric ends the run for good: its record says so (``diverged``)."""
    run = _live(lab, config, batch_size, device)
    meter = lab.meter(device, f"truncated run of {config.id} at batch {batch_size}")
    trainer, t0 = run.trainer, time.perf_counter()
    points = sorted({int(s) for s in evals if s > trainer.samples_seen}) if not run.diverged else []
    noise_points = sorted({int(s) for s in noise_at})
    try:
        for target in points:
            while trainer.samples_seen < target:
                step_s = checked_step(trainer, meter, run.curve)
                run.trained_s += step_s
                run.trained_usd += step_s * meter.price
                run.trained_steps += 1
            meter.guard(0.0)
            value = _evaluated(lab, run, meter, levels, eval_share)
            run.curve.append((trainer.samples_seen, round(value, 5)))
            if noise_points and trainer.samples_seen >= noise_points[0]:
                noise_points = [p for p in noise_points if p > trainer.samples_seen]
                small, big = noise_batches
                value = run.curve[-1][1]
                run.noise.append(noise_sample(trainer, meter, config.id, small, big, noise_repeats, value))
    except Diverged as err:
        run.diverged = err.reason
    except torch.OutOfMemoryError:
        meter.flush()
        free_memory(str(trainer.device))
        del lab.live_runs[(config.id, batch_size, device)]
        raise OutOfMemory(f"{config.id} at batch {batch_size} on {device}: out of memory") from None
    meter.flush()
    run.seconds += time.perf_counter() - t0
    return _record(lab, config, batch_size, levels, run), list(run.noise)


def _evaluated(lab: TorchLab, run: LiveRun, meter: LabMeter, levels: Sequence[float], share: float) -> float:
    """The metric now, on ``share`` of the validation set (see the module docstring); on the
    whole set when the part's value reaches a level that no earlier point reached, guarded
    first as the unit it is: the part's time scaled to the whole set."""
    trainer = run.trainer
    whole = len(trainer.val_dataset) if isinstance(trainer.val_dataset, Sized) else 0
    n = max(MIN_EVAL_EXAMPLES, math.ceil(share * whole))
    if n >= whole:
        return checked_value(trainer, run.curve)
    if run.part is None or run.part[0] != n:  # one part kept: a round's evaluations share it
        run.part = (n, drawn(trainer.val_dataset, n, lab.seed)[0])
    t0 = time.perf_counter()
    value = checked_value(trainer, run.curve, run.part[1])
    m = lab.metric
    if not any(m.reached(value, lv) and not any(m.reached(v, lv) for _, v in run.curve) for lv in levels):
        return value
    meter.guard((time.perf_counter() - t0) * whole / n)
    return checked_value(trainer, run.curve)


def _record(
    lab: TorchLab, config: Config, batch_size: int, levels: Sequence[float], run: LiveRun
) -> ConvergenceRun:
    m = lab.metric
    reached: dict[float, int | None] = {lv: None for lv in levels}
    best: Any = m.worst
    for samples, value in run.curve:
        for lv in levels:
            if reached[lv] is None and m.reached(value, lv):
                reached[lv] = samples
        if m.better(value, best):
            best = value
    return ConvergenceRun(
        config.id,
        batch_size,
        tuple(sorted(reached.items())),
        round(best, 5) if math.isfinite(best) else best,
        tuple(run.curve),
        0,
        "fp32",
        round(run.seconds, 3),
        run.device,
        run.trained_s / max(run.trained_steps, 1),
        run.trained_steps,
        truncated=True,
        diverged=run.diverged,
    )


def keep_runs(lab: TorchLab, folder: Path, label: str) -> list[TruncatedCheckpoint]:
    """Write the state each live truncated run ended in to ``folder`` (one file per run, its path
    recorded as ``label/NAME``: ``label`` is the folder as the profile file names it), each write
    charged to the profile under its envelope. A write that does not fit the envelope is left
    out: that config's runs start from scratch."""
    kept = []
    for (config_id, _, device), run in sorted(lab.live_runs.items()):
        trainer = run.trainer
        name = f"{re.sub(r'[^A-Za-z0-9._-]', '_', config_id)}-b{trainer.batch_size}.pt"
        meter = lab.meter(device, f"checkpoint of the truncated run of {config_id}")
        what = {
            "config_id": config_id,
            "batch_size": trainer.batch_size,
            "samples": trainer.samples_seen,
            "device": device,
            "seed": lab.seed,
            "curve": [[n, v] for n, v in run.curve],  # the run that starts here goes on this curve
            "workload_code": lab.workload_code,
        }
        written: list[tuple[str, int]] = []
        try:
            meter.timed(
                partial(_write, folder / name, {"trainer": trainer.state_dict(), "profile": what}, written)
            )
        except EnvelopeExhausted:
            continue
        finally:
            meter.flush()
        sha, size = written[0]
        kept.append(
            TruncatedCheckpoint(
                config_id,
                trainer.batch_size,
                trainer.precision,
                device,
                lab.seed,
                trainer.samples_seen,
                f"{label}/{name}",
                sha,
                size,
                round(run.trained_usd, 9),
            )
        )
    return kept


def _write(path: Path, state: dict[str, Any], written: list[tuple[str, int]]) -> None:
    written.append(save_state(path, state))
