"""Step timing: how long a config's training steps, evaluations and checkpoints take on a device.

``measure_steps`` times steps at each planner batch size in interleaved passes
(``_interleaved_passes``), then the evaluation and the checkpoint write, each under the lab's
meter (``paretrain.runtime.train.lab_meter.LabMeter``): what timing costs is charged like any
other measurement. What is timed is sized to what the plan needs from it: the passes stop once
the shape of step time over batch sizes is known (``PASS_SE``), and an evaluation is timed on the
validation set's first ``EVAL_TIMING_EXAMPLES`` examples, scaled to the whole set.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from paretrain.planner.inputs.space import Config
from paretrain.planner.measure.measurements import StepProfile, StepSample
from paretrain.runtime.train.batches import head
from paretrain.runtime.train.checkpoint import save_checkpoint
from paretrain.runtime.train.devices import claim, machine_fingerprint
from paretrain.runtime.train.lab_memory import fitting_batches
from paretrain.runtime.train.lab_meter import LabMeter
from paretrain.runtime.train.trainer import EVAL_CHUNK, Trainer, estimate_peak_bytes


class TorchLab(Protocol):
    """What step timing needs of ``paretrain.runtime.train.torch_lab.TorchLab``."""

    workload: Any
    seed: int
    metric: Any

    def meter(self, device: str, what: str, cap: float | None = None, stage: str = "profile") -> LabMeter: ...


__all__ = [
    "EVAL_TIMINGS",
    "EVAL_TIMING_EXAMPLES",
    "EVAL_TIMING_S",
    "MIN_PASSES",
    "MIN_PASS_STEPS",
    "PASS_SE",
    "measure_steps",
    "train_size",
]

#: passes over the batch sizes before step timing may stop early
MIN_PASSES = 3
#: the fewest steps a batch size is timed in a pass (``_timed_steps``)
MIN_PASS_STEPS = 2
#: the shape of step time is known when each size's per-pass ratio to the smallest size has a
#: standard error of at most this share of its mean (``_known``)
PASS_SE = 0.02
#: timed evaluations: at most this many, fewer once they add up to ``EVAL_TIMING_S`` seconds,
#: each of the validation set's first ``EVAL_TIMING_EXAMPLES`` examples (four chunks)
EVAL_TIMINGS = 3
EVAL_TIMING_S = 0.5
EVAL_TIMING_EXAMPLES = 2048


def measure_steps(
    lab: TorchLab, config: Config, device: str, precision: str, batch_sizes: Sequence[int], steps: int
) -> StepProfile:
    """``Lab.measure_steps`` on this machine (see the module docstring)."""
    torch_device = claim(device)
    meter = lab.meter(device, f"steps of {config.id} on {device}")
    n_train = train_size(lab.workload)
    usable = sorted(b for b in batch_sizes if b <= n_train)
    trainer = Trainer(
        lab.workload,
        config,
        batch_size=usable[0],
        precision=precision,
        device=torch_device,
        seed=lab.seed,
        metric=lab.metric,
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
    return StepProfile(
        device,
        config.id,
        precision,
        tuple(samples),
        eval_s=_eval_s(trainer, meter),
        source="measured",
        measured_on=machine_fingerprint(),
        param_count=trainer.parameter_count(),
        ckpt_s=_ckpt_s(trainer, meter),
        fixed_s=round(fixed, 6),
        oom_batch=oom_batch,
    )


def train_size(workload: Any) -> int:
    """Samples in the workload's training set (a large number for an unsized iterable one)."""
    try:
        return len(workload.train_dataset())
    except TypeError:
        return 1 << 40


def _eval_s(trainer: Trainer, meter: LabMeter) -> float:
    """Seconds of an evaluation of the whole validation set, timed on its first
    ``EVAL_TIMING_EXAMPLES`` examples and scaled to the whole (an evaluation's time is its
    chunks' time): after one chunk that warms up (not counted), the mean of ``EVAL_TIMINGS`` of
    them, or fewer once they add up to ``EVAL_TIMING_S``. Timing the whole set cost the profile of
    a GRU of width 256 on 6,000 MNIST-1D examples 2.3 s an evaluation on one thread, a quarter of
    its step timing; what the run's evaluations really take is checked against the convergence
    runs (the speed factor).

    The warm-up reads one chunk, not the timed head: the first evaluation's extra time is its
    first chunk's (buffers, the switch to eval mode). An evaluation is a tenth or less of a run's
    time, so a second timed head (``EVAL_TIMING_S``) is worth its cost only where a head is short
    and its timing noisy. On the m job's GRU (``benchmarks/timing_cost.py``) the timing cost
    0.7-1.1 s a device instead of 1.2-1.9 s, and missed a whole evaluation by 0.4-2.8% against
    2.2-2.6% before."""
    val, share = head(trainer.val_dataset, EVAL_TIMING_EXAMPLES)
    chunk, chunk_share = head(val, EVAL_CHUNK)
    meter.guard(0.0)
    warm = trainer.evaluate(val=chunk).seconds
    timed: list[float] = []
    while len(timed) < EVAL_TIMINGS and sum(timed) < EVAL_TIMING_S:
        meter.guard(timed[-1] if timed else warm / chunk_share)  # the head: the chunk's time by its share
        timed.append(trainer.evaluate(val=val).seconds)
    meter.flush()
    return sum(timed) / len(timed) / share


def _ckpt_s(trainer: Trainer, meter: LabMeter, repeats: int = 3) -> float:
    """Median seconds to write the trainer's checkpoint as the runtime does (atomic, fsync)."""
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


def _interleaved_passes(
    trainer: Trainer, meter: LabMeter, usable: Sequence[int], steps: int
) -> tuple[dict[int, list[float]], list[float]]:
    """Per batch size, the mean step time of each pass, and the warm-up steps' times.

    Interleaved: ``rounds`` passes over the batch sizes, each timing a share of the steps, and
    the mean of a size's per-pass means. A slow spell of a shared machine then lands on every
    batch size alike instead of on whichever size was being measured, so the planner's
    comparison between batch sizes holds even when the absolute speed drifts; the mean (not the
    median) keeps the slow spells a run will also meet, since a run's time is the sum of its
    steps. Before it, a quarter second of untimed steps: a fresh process runs its first steps up
    to 1.6x slower.

    A size's first pass starts with one untimed step (a new shape's first step allocates its
    buffers). Later passes time the step after a switch too, unless the switch starts a data
    loader's workers again (``BatchStream.restarts_on_switch``): on the m job's GRU
    (``benchmarks/cost_of_knowing.py --size m``) the first step after a switch took 0.96-1.02x
    the steps after it on either device, and the untimed steps had been a fifth of a pass.

    ``steps`` is the most a size is timed: from ``MIN_PASSES`` passes on, the passes stop once
    the shape of step time over batch sizes is known (``_known``). That shape is what the plan
    takes from these passes; the level comes from the profile's convergence runs (the speed
    factor), so a quiet machine need not time every step asked for. Within a pass, each size
    is timed for about as long as the smallest size's share took (at least ``MIN_PASS_STEPS``
    steps): a long step varies less against its length than a short one, so equal time rather
    than equal steps gives each size's mean a like precision, and the largest sizes, whose
    steps are most of a pass's cost at equal steps, cost no more than the smallest."""
    rounds = max(1, min(5, steps // 4))
    passes: dict[int, list[float]] = {b: [] for b in usable}
    warm_s: list[float] = []
    warm_until = time.perf_counter() + 0.25
    while len(warm_s) < 3 or time.perf_counter() < warm_until:
        warm_s.append(meter.timed(trainer.step))
    for r in range(rounds):
        share = steps * (r + 1) // rounds - steps * r // rounds
        seconds = math.inf  # what the smallest size's share took in this pass
        for b in usable:
            trainer.set_batch_size(b)
            if r == 0 or trainer.stream.restarts_on_switch:
                meter.timed(trainer.step, passes[b][-1] if passes[b] else 0.0)  # untimed: see above
            timed = _timed_steps(trainer, meter, share, seconds, passes[b][-1] if passes[b] else 0.0)
            seconds = min(seconds, sum(timed))
            passes[b].append(sum(timed) / len(timed))
        if r + 1 >= MIN_PASSES and _known(passes):
            break
    return passes, warm_s


def _timed_steps(trainer: Trainer, meter: LabMeter, share: int, seconds: float, guess: float) -> list[float]:
    """One pass at the trainer's batch size: up to ``share`` timed steps, fewer once they add up
    to ``seconds`` (at least ``MIN_PASS_STEPS``)."""
    timed: list[float] = []
    while len(timed) < share and (len(timed) < MIN_PASS_STEPS or sum(timed) < seconds):
        timed.append(meter.timed(trainer.step, timed[-1] if timed else guess))
    return timed


def _known(passes: dict[int, list[float]]) -> bool:
    """Whether the passes pin down the shape of step time over batch sizes: every size's step
    time relative to the smallest's, pass by pass, has a standard error of at most ``PASS_SE`` of
    its mean. A slow spell of a shared machine slows a whole pass alike, so the ratios settle
    before the means do. With one batch size, its mean itself."""
    sizes = sorted(passes)
    base = passes[sizes[0]]
    series = [[t / t0 for t, t0 in zip(passes[b], base, strict=True)] for b in sizes[1:]] or [base]
    for xs in series:
        if len(xs) < 2 or float(np.std(xs, ddof=1)) / len(xs) ** 0.5 > PASS_SE * float(np.mean(xs)):
            return False
    return True
