"""The Lab protocol: how the planner asks for measurements.

``paretrain.runtime.train.torch_lab.TorchLab`` measures for real on local devices; tests use a synthetic Lab with
closed-form curves, which makes the planner a pure function a test can check by brute force.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from paretrain.planner.inputs.catalog import LocalDevice
from paretrain.planner.inputs.space import Config
from paretrain.planner.measure.measurements import ConvergenceRun, NoiseSample, StepProfile

__all__ = ["NOISE_REPEATS", "Lab", "LocalDevice", "OutOfMemory"]

#: batch pairs a gradient-noise sample averages, at most (the two-batch estimator)
NOISE_REPEATS = 16


class OutOfMemory(Exception):
    """A measurement's batch does not fit its device's memory (a GPU step ran out of it): the
    measurement at that batch size is not taken and the profile says so."""


class Lab(Protocol):
    """Measures configs on devices. Each call returns what it saw; the caller fits models."""

    def devices(self) -> Sequence[LocalDevice]:
        """The local devices this lab can measure on."""
        ...

    def fingerprint(self) -> str:
        """Identifies the machine and the code doing the measuring (profile cache key)."""
        ...

    def measure_steps(
        self, config: Config, device: str, precision: str, batch_sizes: Sequence[int], steps: int
    ) -> StepProfile:
        """Time ``steps`` training steps at each batch size; peak memory; evaluation time. The
        batch sizes from the first that runs out of memory on ``device`` are not timed
        (``StepProfile.oom_batch``); ``OutOfMemory`` when even the smallest does."""
        ...

    def measure_convergence(
        self,
        config: Config,
        batch_size: int,
        levels: Sequence[float],
        max_samples: int,
        eval_every: int,
        device: str | None = None,
    ) -> ConvergenceRun:
        """Train at ``batch_size`` until the top level or ``max_samples``; when each level is
        reached. ``device``: where to train (None: the lab's convergence device).
        ``OutOfMemory`` when the batch does not fit there."""
        ...

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
    ) -> tuple[ConvergenceRun, Sequence[NoiseSample]]:
        """Train at ``batch_size`` up to the last of ``evals`` (samples), evaluating at each (on
        ``eval_share`` of the validation set, or a least number of examples; a value past a
        level not reached before, on the whole set) and taking a two-batch gradient-noise sample
        (``noise_repeats`` batch pairs averaged) at each of ``noise_at``; a later call for the
        same (config, batch size, device) continues the run. The whole run so far (its
        ``truncated`` flag set) and its noise samples."""
        ...

    def measure_peak(self, device: str) -> float:
        """Achieved fp32 matrix-multiply rate of ``device`` in GFLOP/s (scales modeled offers)."""
        ...

    def measure_sync(self, workers: int, nbytes: int) -> tuple[float, float, float]:
        """(seconds of one all-reduce of ``nbytes`` among ``workers`` local processes, seconds
        from launching them to their formed group, how much slower each computes while all do)."""
        ...

    def measure_noise(
        self, config: Config, progress_samples: Sequence[int], small: int, big: int
    ) -> Sequence[NoiseSample]:
        """Gradient noise scale (two-batch estimator) at points of training progress."""
        ...
