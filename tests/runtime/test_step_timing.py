"""Step timing (``paretrain.runtime.train.lab_steps``): passes stop once the shape of step time
over batch sizes is known; what it times is charged to the profile's ledger."""

from __future__ import annotations

import math

import pytest

from paretrain.planner.inputs.space import Config
from paretrain.runtime.money.ledger import Ledger
from paretrain.runtime.train.lab_steps import PASS_SE, _known, _timed_steps
from paretrain.runtime.train.torch_lab import TorchLab
from paretrain.runtime.train.workloads.mnist1d import Mnist1D


def test_the_shape_is_known_when_each_sizes_ratio_to_the_smallest_holds_pass_by_pass():
    # the machine slows whole passes alike (x1, x1.5, x0.8): the ratios hold, the means do not
    drifting = {64: [0.10, 0.15, 0.08], 128: [0.18, 0.27, 0.144]}
    assert _known(drifting)
    # a size whose ratio to the smallest moves pass by pass is not known yet
    assert not _known({64: [0.10, 0.10, 0.10], 128: [0.18, 0.24, 0.15]})

    # at the bound: a ratio's standard error just under and just over PASS_SE of its mean
    def ratios(se: float) -> dict[int, list[float]]:
        d = se * 3**0.5  # three ratios 1-d, 1, 1+d have standard deviation d, error d / sqrt(3)
        return {64: [1.0, 1.0, 1.0], 256: [1 - d, 1.0, 1 + d]}

    assert _known(ratios(0.99 * PASS_SE))
    assert not _known(ratios(1.01 * PASS_SE))
    # one batch size: its mean itself
    assert _known({64: [0.100, 0.101, 0.099]})
    assert not _known({64: [0.10, 0.15, 0.08]})
    assert not _known({64: [0.1], 128: [0.2]})  # one pass says nothing about its spread


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("steps")
    workload = Mnist1D(samples=1200, val_fraction=0.2, seed=1, cache_dir=tmp / "cache")
    ledger = Ledger(tmp / "ledger.jsonl", run_id="profile")
    return TorchLab(workload, prices_usd_per_h={"local/cpu-1": 0.0425}, ledger=ledger)


def test_step_timing_measures_every_size_and_charges_what_it_timed(lab):
    cfg = Config("m", "mlp", (("width", 32), ("depth", 2)))
    before = lab.spent()
    sp = lab.measure_steps(cfg, "local/cpu-1", "fp32", [16, 32, 64], steps=20)
    assert [s.batch_size for s in sp.samples] == [16, 32, 64]
    assert all(s.step_s > 0 and s.samples_per_s > 0 for s in sp.samples)
    assert sp.eval_s > 0 and sp.ckpt_s > 0
    # every second the device was busy is charged at its price: at least the steps, evaluations
    # (a warm-up chunk, here the whole 240-example set, and at least one timed) and checkpoint writes it timed
    least_s = sum(s.step_s for s in sp.samples) * 3 + sp.eval_s * 2 + sp.ckpt_s * 3
    assert lab.spent() - before >= 0.9 * least_s * 0.0425 / 3600


def test_an_evaluation_is_timed_on_the_head_of_the_validation_set_and_scaled_by_its_share():
    import torch
    from torch.utils.data import Dataset, IterableDataset, TensorDataset

    from paretrain.runtime.train.batches import head

    x = torch.arange(10.0)
    tensors = TensorDataset(x, x * 2)
    first, share = head(tensors, 4)
    assert share == 0.4 and len(first) == 4 and first[3][1].item() == 6.0

    class Mapped(Dataset):
        def __len__(self):
            return 8

        def __getitem__(self, i):
            return i

    mapped, share = head(Mapped(), 2)
    assert share == 0.25 and list(mapped) == [0, 1]

    class Stream(IterableDataset):
        def __iter__(self):
            return iter(range(5))

    stream = Stream()
    assert head(stream, 2) == (stream, 1.0)  # no length: the whole set
    assert head(tensors, None) == (tensors, 1.0)
    assert head(tensors, 10) == (tensors, 1.0)


def test_evaluate_on_a_head_reads_only_its_examples(lab):
    from paretrain.runtime.train.batches import head
    from paretrain.runtime.train.trainer import Trainer

    t = Trainer(lab.workload, Config("m", "mlp", (("width", 16), ("depth", 1))), batch_size=16)
    seen: list[int] = []
    evaluate = t._evaluate

    def counting(model, batches):
        def each():
            for b in batches:
                seen.append(len(b[0]))
                yield b

        return evaluate(model, each())

    t._evaluate = counting
    t.evaluate(chunk=64, val=head(t.val_dataset, 100)[0])
    assert sum(seen) == 100 and seen == [64, 36]
    seen.clear()
    t.evaluate(chunk=64)
    assert sum(seen) == 240  # the whole validation set (1200 examples, a fifth of them)


def test_a_trial_whose_money_runs_out_measuring_its_latency_is_a_trial_at_its_budget(lab, monkeypatch):
    """Under load a trial's training can end at the edge of what it holds; the latency measured
    after it then meets the envelope. That is the trial's budget, not the search's end."""
    from paretrain.runtime.train import lab_trial
    from paretrain.runtime.train.lab_meter import EnvelopeExhausted

    def out_of_money(trainer, meter, repeats=50):
        raise EnvelopeExhausted("the search stopped at its envelope")

    monkeypatch.setattr(lab_trial, "latency_ms", out_of_money)
    cfg = Config("m", "mlp", (("width", 16), ("depth", 1)))
    run = lab.run_trial(cfg, max_samples=256, eval_every=128, cap_usd=1.0, should_stop=lambda *_: False)
    assert run.budget_hit and run.latency_ms == 1e9
    assert [n for n, _ in run.curve] == [128, 256] and run.spend_usd > 0


class _ScriptedMeter:
    """A meter whose every timed call 'takes' the same scripted seconds."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.calls = seconds, 0

    def timed(self, fn, _guess: float = 0.0) -> float:
        fn()
        self.calls += 1
        return self.seconds


class _Steps:
    def __init__(self) -> None:
        self.steps = 0

    def step(self) -> float:
        self.steps += 1
        return 0.0


@pytest.mark.parametrize(
    ("step_s", "seconds", "timed"),
    [(0.4, 1.0, 3), (0.3, 1.0, 4), (0.05, 1.0, 10), (0.4, math.inf, 10), (2.0, 1.0, 2)],
    ids=[
        "long-steps-stop-at-the-smallest-sizes-time",
        "until-past-it",
        "short-steps-take-the-share",
        "first-size",
        "at-least-two",
    ],
)
def test_a_size_is_timed_for_about_the_smallest_sizes_time_in_a_pass(step_s, seconds, timed):
    trainer, meter = _Steps(), _ScriptedMeter(step_s)
    out = _timed_steps(trainer, meter, 10, seconds, 0.0)
    assert len(out) == timed and trainer.steps == timed  # every step it takes is timed


class _Stream:
    def __init__(self, restarts: bool) -> None:
        self.restarts_on_switch = restarts


class _Switching(_Steps):
    """A trainer that knows whether its next step is the first after a switch of batch size."""

    def __init__(self, restarts: bool) -> None:
        super().__init__()
        self.stream, self.switched = _Stream(restarts), False

    def set_batch_size(self, b: int) -> None:
        self.switched = True


class _SwitchMeter:
    """A meter whose first step after a switch 'takes' 1 s, every other step 10 ms."""

    def __init__(self, trainer: _Switching) -> None:
        self.trainer = trainer

    def timed(self, fn, _guess: float = 0.0) -> float:
        first, self.trainer.switched = self.trainer.switched, False
        fn()
        return 1.0 if first else 0.01


@pytest.mark.parametrize("restarts", [False, True], ids=["tensors", "loader"])
def test_the_step_after_a_switch_is_untimed_on_a_sizes_first_pass_or_when_a_loader_restarts(restarts):
    """A size's first pass never times the step after the switch; later passes do, unless the
    switch restarts the data loader (whose start the run pays once, not every step)."""
    from paretrain.runtime.train.lab_steps import _interleaved_passes

    trainer = _Switching(restarts)
    passes, _warm = _interleaved_passes(trainer, _SwitchMeter(trainer), [32, 64], steps=20)
    assert all(p[0] == 0.01 for p in passes.values())  # first pass: the switch's step untimed
    later = [t for p in passes.values() for t in p[1:]]
    assert later and all((t == 0.01) == restarts for t in later), passes
