"""A step that raises inside a safe window (``paretrain.runtime.run.steps.window_steps``): the
steps before it were charged, so they are handed to the executor (``on_fault``) before the
fault goes on; none are when the first step raises."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from paretrain.runtime.run.steps import window_steps


class _Trainer:
    batch_size = 8

    def __init__(self, fail_at: int) -> None:
        self.fail_at, self.steps, self.samples_seen = fail_at, 0, 0

    def step(self) -> float:
        if self.steps + 1 == self.fail_at:
            raise torch.OutOfMemoryError("CUDA out of memory")
        self.steps += 1
        self.samples_seen += self.batch_size
        return 0.5


def _run(fail_at: int, got: list) -> None:
    meter = SimpleNamespace(t=0.0, ledger=SimpleNamespace(spent=0.0))
    account = SimpleNamespace(meter=meter, setup=SimpleNamespace(emulated=lambda hw: True))
    state = SimpleNamespace(hw="x", next_eval=10**6, stage=SimpleNamespace(step_s=0.1), slowest=0.0)
    window = SimpleNamespace(
        charger=lambda price, seconds, step: 0.001,
        price_s=0.01,
        until=1e9,
        spend=1e9,
        slow=1.0,
        slowest=1e9,
    )
    window_steps(
        state,
        _Trainer(fail_at),
        account,
        window,
        stage_left=10**6,
        max_samples=10**6,
        ckpt_at=1e9,
        on_fault=got.append,
    )


def test_the_steps_before_a_step_that_raises_are_handed_over_first():
    got: list = []
    with pytest.raises(torch.OutOfMemoryError):
        _run(4, got)
    [done] = got
    assert (done.samples, done.batch, done.loss) == (24, 8, 0.5)
    assert done.busy_usd == pytest.approx(0.003)


def test_nothing_is_handed_over_when_the_first_step_raises():
    got: list = []
    with pytest.raises(torch.OutOfMemoryError):
        _run(1, got)
    assert got == []
