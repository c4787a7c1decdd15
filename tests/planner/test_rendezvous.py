"""A run on several workers pays for forming its group (launch and rendezvous) with its first
stage, on every instance it holds: measured on local offers, ``Offer.rendezvous_s`` on offers
nobody measured. Later stages keep the group."""

from __future__ import annotations

import pytest

from paretrain.planner.inputs.catalog import Offer
from paretrain.planner.measure.fits import StepTimeModel
from paretrain.planner.measure.measurements import SyncSample
from paretrain.planner.measure.throughput import StepModel, SyncModel, fit_sync, instances_for, modeled_sync
from paretrain.planner.plan.fitted import StepModelRecord
from paretrain.planner.program.problem import Option
from paretrain.planner.program.stagecost import stage_cost

GPU = Offer(
    "cloud/gpu-1x",
    "cloud",
    "gpu",
    3.6,
    memory_gib=80.0,
    accelerator="X",
    accelerator_count=1,
    peak_tflops_fp32=50.0,
    rendezvous_s=40.0,
)


def _cost(workers: int, sync: SyncModel, offer: Offer = GPU, first: bool = True):
    step = StepModel(StepTimeModel(0.01, 0.0, 1, 1024), sync, 0.0, 0.0, False, {})
    return stage_cost(
        work=10_000.0,
        b_noise=1e12,
        option=Option(offer.id, "fp32", 100, workers),
        step=step,
        offer=offer,
        instances=instances_for(offer, workers),
        storage_bytes=0.0,
        first=first,
        eval_every=1e12,
        ckpt_every=1e12,
    )


def test_a_two_instance_stage_pays_the_rendezvous_on_both_instances():
    from dataclasses import replace

    sync = modeled_sync(GPU, 2)
    assert sync.rendezvous_s == 40.0
    steps_only = _cost(2, replace(sync, rendezvous_s=0.0))
    two = _cost(2, sync)
    assert two.time_s == pytest.approx(steps_only.time_s + 40.0, rel=1e-9)
    assert two.cost_usd == pytest.approx(2 * (steps_only.time_s + 40.0) * 3.6 / 3600, rel=1e-9)
    later = _cost(2, sync, first=False)  # the group formed with the run's first stage
    assert later.time_s == pytest.approx(
        _cost(2, replace(sync, rendezvous_s=0.0), first=False).time_s, rel=1e-9
    )


def test_one_worker_forms_no_group():
    assert _cost(1, SyncModel(0.0, 1e15, 1, False, rendezvous_s=99.0)).time_s == pytest.approx(1.0, rel=1e-6)


def test_the_measured_rendezvous_is_the_median_launch_of_the_profile():
    sync = fit_sync(
        [
            SyncSample(2, 1 << 20, 0.002, start_s=3.0),
            SyncSample(2, 1 << 22, 0.006, start_s=9.0),
            SyncSample(2, 1 << 24, 0.02, start_s=4.0),
        ]
    )
    assert sync is not None and sync.rendezvous_s == 4.0 and not sync.modeled


def test_the_plan_file_keeps_the_rendezvous_of_a_stage_with_workers():
    m = StepModel(
        StepTimeModel(0.01, 0.0, 1, 1024),
        SyncModel(1e-4, 1e9, 2, False, rendezvous_s=5.5),
        0.0,
        0.0,
        False,
        {},
    )
    rec = StepModelRecord.of(("local/cpu-1", "c", "fp32", 2), m, 2, 0.0)
    assert rec.model().sync.rendezvous_s == 5.5
    assert StepModelRecord.of(("local/cpu-1", "c", "fp32", 1), m, 1, 0.0).rendezvous_s == 0.0


def test_local_workers_compute_slower_by_the_measured_contention():
    """Two processes sharing a machine's cores each compute slower than one alone: the profile
    measures it through the launcher and the step model of n > 1 workers carries it."""
    sync = fit_sync(
        [
            SyncSample(2, 1 << 16, 0.001, 3.0, contention=1.4),
            SyncSample(2, 1 << 20, 0.002, 3.0, contention=1.6),
            SyncSample(2, 1 << 22, 0.004, 3.0, contention=1.5),
        ]
    )
    assert sync is not None and sync.contention == 1.5
    m = StepModel(StepTimeModel(0.01, 0.0, 1, 1024), sync, 0.0, 0.0, False, {})
    assert m.predict(64, 1) == pytest.approx(0.01)
    # the compute slowed by 1.5, the all-reduce, and rank 0's command broadcast (one more latency)
    assert m.predict(64, 2) == pytest.approx(0.015 + sync.predict(2, 0.0) + sync.latency_s)
    rec = StepModelRecord.of(("local/cpu-1", "c", "fp32", 2), m, 2, 0.0)
    assert rec.model().predict(64, 2) == pytest.approx(m.predict(64, 2))
    assert modeled_sync(GPU, 2).contention == 1.0  # instances of their own
