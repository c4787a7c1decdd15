"""The plan leaves out a batch size whose profiled peak memory passes the device's memory: a
GPU's own, a CPU offer's RAM, and on a CPU offer ``runtime.max_memory_mb`` when the spec sets
it (the same cap a run's step is held to)."""

from __future__ import annotations

import numpy as np
import pytest

from paretrain.planner.inputs.catalog import Offer, local_offers
from paretrain.planner.inputs.spec_parse import parse_spec
from paretrain.planner.measure.profile import build_profile
from paretrain.planner.program.build import build_problem
from paretrain.planner.program.stagecost import memory_bytes
from paretrain.runtime.train.workloads import WORKLOADS
from tests.conftest import small_spec
from tests.planner.synthetic_lab import SyntheticLab

PLANNER = {
    "convergence": "full",
    "stages": 2,
    "batch_sizes": [16, 64],
    "convergence_batch_sizes": [16, 64, 256],
    "profile_steps": 10,
}


def _planned_batches(**runtime: object) -> set[int]:
    """The per-worker batches with a finite stage time for some choice (unpruned)."""
    lab = SyntheticLab()  # 1000 bytes per sample of peak memory: batch 16 ~ 16 KiB, 64 ~ 62 KiB
    data = small_spec(
        planner=PLANNER, runtime={"eval_every_samples": 1000, "checkpoint_every_s": 5, **runtime}
    )
    spec = parse_spec(data, "s", WORKLOADS)
    profile = build_profile(spec, lab, list(spec.configs))
    offers = local_offers(lab.devices(), spec.hardware)
    problem, _ = build_problem(spec, offers, profile, list(spec.configs), prune=False)
    return {
        opt.batch_size for o, opt in enumerate(problem.options) if np.isfinite(problem.time_s[:, :, o]).any()
    }


def test_max_memory_mb_leaves_out_the_cpu_batch_sizes_whose_peak_passes_it():
    assert _planned_batches() == {16, 64}
    assert _planned_batches(max_memory_mb=32 / 1024) == {16}  # 32 KiB


def test_max_memory_mb_caps_a_cpu_offer_and_leaves_a_gpu_to_its_own_memory():
    cpu = Offer("c", "test", "cpu", 1.0, memory_gib=8.0)
    gpu = Offer("g", "test", "gpu", 1.0, memory_gib=16.0)
    assert memory_bytes(cpu) == 8 * 2**30 and memory_bytes(cpu, 100.0) == pytest.approx(100 * 2**20)
    assert memory_bytes(gpu, 100.0) == 16 * 2**30
