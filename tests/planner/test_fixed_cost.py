"""The fixed part of a run: a fresh run's warm-up, measured by the profile, is paid once, by the
first stage, in the plan and in every replan alike (one cost model)."""

from __future__ import annotations

import pytest

from paretrain.planner.inputs.catalog import Offer
from paretrain.planner.measure.fits import StepTimeModel
from paretrain.planner.measure.throughput import StepModel, SyncModel
from paretrain.planner.program.problem import Option
from paretrain.planner.program.stagecost import stage_cost


def cost(first: bool, fixed_s: float, *, eval_s: float = 0.0, resumed: bool = False, work: float = 1000.0):
    step = StepModel(
        StepTimeModel(0.01, 0.0, 1, 1024), SyncModel(0.0, 1e15), 0.0, eval_s, False, {}, 0.0, 0.0, fixed_s
    )
    offer = Offer("local/cpu-1", "local", "cpu", 3.6, memory_gib=1.0, local=True)
    return stage_cost(
        work=work,
        b_noise=1e9,
        option=Option("local/cpu-1", "fp32", 100),
        step=step,
        offer=offer,
        instances=1,
        storage_bytes=0.0,
        first=first,
        eval_every=5000 if eval_s else 10**9,
        ckpt_every=1e9,
        resumed=resumed,
    )


def test_the_warm_up_is_paid_by_the_first_stage_only_in_time_and_money():
    assert cost(True, 0.5).time_s - cost(True, 0.0).time_s == pytest.approx(0.5)
    assert cost(True, 0.5).cost_usd - cost(True, 0.0).cost_usd == pytest.approx(0.5 * 3.6 / 3600)
    assert cost(False, 0.5).time_s == pytest.approx(cost(False, 0.0).time_s)


def test_a_run_from_a_checkpoint_pays_the_evaluation_after_its_first_step():
    def one(resumed: bool):  # one step: a checkpoint that is (almost) at its level
        return cost(True, 0.0, eval_s=0.25, resumed=resumed, work=100.0)

    assert one(True).time_s - one(False).time_s == pytest.approx(0.25)
    assert one(True).cost_usd - one(False).cost_usd == pytest.approx(0.25 * 3.6 / 3600)
