"""What a Lab returns: timed steps, convergence runs, gradient-noise and all-reduce samples, and
the checkpoints a truncated profile keeps of its runs.

Plain frozen records shared by the Lab protocol (``paretrain.planner.measure.lab``), which returns them, and the
profile file (``paretrain.planner.measure.profile``), which holds them; a module of their own so that neither of
those two has to import the other.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ConvergenceRun",
    "NoiseSample",
    "StepProfile",
    "StepSample",
    "SyncSample",
    "TruncatedCheckpoint",
]


@dataclass(frozen=True, slots=True)
class StepSample:
    batch_size: int
    workers: int
    step_s: float
    samples_per_s: float
    peak_mem_bytes: int
    spread: float = 0.0  # relative standard deviation of the per-pass mean step times

    def __post_init__(self) -> None:
        if not (self.step_s > 0 and self.batch_size >= 1 and self.workers >= 1):
            raise ValueError(f"a step sample needs step_s > 0, batch_size >= 1, workers >= 1; got {self}")


@dataclass(frozen=True, slots=True)
class StepProfile:
    """Timed steps of one config on one hardware offer at one precision."""

    hardware: str
    config_id: str
    precision: str
    samples: tuple[StepSample, ...]
    eval_s: float = 0.0
    source: str = "measured"  # "measured" | "modeled"
    measured_on: str = ""
    param_count: int = 0
    ckpt_s: float = 0.0  # seconds to write one checkpoint (0: not measured)
    #: seconds a fresh trainer's first steps take beyond the steady state (allocator and kernel
    #: warm-up): what every run pays once on top of its steps
    fixed_s: float = 0.0
    #: the smallest batch size whose step ran out of the device's memory (0: none did); it and
    #: larger ones were not timed, and the planner takes them as not fitting
    oom_batch: int = 0

    def __post_init__(self) -> None:
        if self.source not in ("measured", "modeled"):
            raise ValueError(f"`source` must be measured or modeled, but got {self.source!r}")
        object.__setattr__(
            self, "samples", tuple(sorted(self.samples, key=lambda s: (s.workers, s.batch_size)))
        )


@dataclass(frozen=True, slots=True)
class ConvergenceRun:
    """One training run at a fixed batch size: samples seen when each accuracy level was reached.

    ``reached`` maps a level to the samples at the first evaluation at or above it (None when it
    was never reached within the run). ``curve`` is the (samples, val_accuracy) trace.
    """

    config_id: str
    batch_size: int
    reached: tuple[tuple[float, int | None], ...]
    best_level: float  # the best value of the target metric it measured
    curve: tuple[tuple[int, float], ...] = ()
    eval_every: int = 0
    precision: str = "fp32"
    seconds: float = 0.0
    #: where it trained, and the mean seconds of its ``steps`` training steps (evaluations not
    #: counted): the profile's longest look at the machine's speed (``paretrain.planner.measure.throughput``)
    device: str = ""
    step_s: float = 0.0
    steps: int = 0
    #: a truncated run (``paretrain.planner.measure.budgeted``): it stopped where the profile's
    #: budget did, and levels beyond it are extrapolated from ``curve``
    truncated: bool = False
    #: why the run stopped early on a non-finite loss or metric ("the training loss was nan at
    #: step 37"); "" when it did not. Its curve holds the evaluations before that
    diverged: str = ""


@dataclass(frozen=True, slots=True)
class NoiseSample:
    """Two-batch gradient-noise measurement at one point of training progress."""

    config_id: str
    progress_samples: int
    level: float  # the target metric's value there
    g2: float  # |G|^2 estimate
    trace: float  # tr(Sigma) estimate
    b_simple: float  # tr(Sigma) / |G|^2


@dataclass(frozen=True, slots=True)
class SyncSample:
    """One measured all-reduce of ``bytes`` among ``workers`` local processes."""

    workers: int
    bytes: int
    seconds: float
    start_s: float = 0.0  # launching the processes and their rendezvous, until the group is formed
    contention: float = 1.0  # a compute block's time with all the processes running it, over alone


@dataclass(frozen=True, slots=True)
class TruncatedCheckpoint:
    """The state a truncated run (``paretrain.planner.measure.budgeted``) ended in, kept so that a
    run of the same config can start from it (``paretrain.planner.program.reuse``): what it
    trained (config, global batch, precision, device, seed), how far (``samples``), and where
    its file is (``path``, relative to the profile file's folder) with the SHA-256 of its bytes.

    ``trained_usd`` is what the profile paid for the training steps that brought the run to
    ``samples`` (the steps' seconds at the device's price; its evaluations, gradient-noise
    samples and the file's write not counted): the work a run that starts here does not pay
    again. 0 in profiles written before it was recorded."""

    config_id: str
    batch_size: int
    precision: str
    device: str
    seed: int
    samples: int
    path: str
    sha256: str
    bytes: int = 0
    trained_usd: float = 0.0

    def __post_init__(self) -> None:
        if self.samples < 0 or self.batch_size < 1:
            raise ValueError(f"a checkpoint needs samples >= 0 and batch_size >= 1; got {self}")
        if len(self.sha256) != 64:
            raise ValueError(f"`sha256` must be 64 hex digits, but got {self.sha256!r}")
