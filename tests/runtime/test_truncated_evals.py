"""A truncated run's evaluations read the share of the validation set its round asks for
(``paretrain.runtime.train.lab_truncated``), a fixed random draw of at least
``MIN_EVAL_EXAMPLES`` examples, and the whole set wherever a value passes a level first."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset, IterableDataset, TensorDataset

from paretrain.planner.inputs.space import Config
from paretrain.runtime.money.ledger import Ledger
from paretrain.runtime.train.batches import drawn
from paretrain.runtime.train.lab_truncated import MIN_EVAL_EXAMPLES
from paretrain.runtime.train.torch_lab import TorchLab
from paretrain.runtime.train.workloads.mnist1d import Mnist1D


def test_a_draw_is_fixed_by_its_seed_kept_in_order_and_nested_in_a_larger_one():
    x = torch.arange(100.0)
    data = TensorDataset(x, 2 * x)
    small, n = drawn(data, 10, seed=3)
    assert n == 10 and len(small) == 10
    firsts = small.tensors[0].tolist()
    assert firsts == sorted(firsts) and len(set(firsts)) == 10  # the set's order, no repeats
    assert small.tensors[1].tolist() == [2 * v for v in firsts]  # examples kept whole
    assert drawn(data, 10, seed=3)[0].tensors[0].tolist() == firsts  # the same draw for the seed
    assert drawn(data, 10, seed=4)[0].tensors[0].tolist() != firsts
    larger = set(drawn(data, 40, seed=3)[0].tensors[0].tolist())
    assert set(firsts) <= larger  # a larger draw holds the smaller
    assert firsts != list(range(10))  # a draw, not the head
    assert drawn(data, 100, seed=3) == (data, 100)  # not smaller: the whole set

    class Mapped(Dataset):
        def __len__(self):
            return 50

        def __getitem__(self, i):
            return i

    part, n = drawn(Mapped(), 5, seed=0)
    assert n == 5 and sorted(part) == list(part) and len(set(part)) == 5

    class Stream(IterableDataset):
        def __iter__(self):
            return iter(range(5))

    stream = Stream()
    assert drawn(stream, 2, seed=0) == (stream, -1)  # no length: the whole stream


class Counted(Mnist1D):
    """MNIST-1D whose evaluations record how many examples each read."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.read: list[int] = []

    def evaluate(self, model, batches):
        right = n = 0
        for x, y in batches:
            right += int((model(x).argmax(-1) == y).sum())
            n += len(y)
        self.read.append(n)
        return {"val_accuracy": right / n}


def _lab(tmp_path) -> tuple[TorchLab, Counted]:
    workload = Counted(samples=6000, val_fraction=0.5, seed=1, cache_dir=tmp_path / "cache")
    ledger = Ledger(tmp_path / "ledger.jsonl", run_id="profile")
    return TorchLab(workload, prices_usd_per_h={"local/cpu-1": 0.0425}, ledger=ledger), workload


def test_a_round_evaluates_on_its_share_and_a_first_pass_of_a_level_on_the_whole_set(tmp_path):
    lab, workload = _lab(tmp_path)
    cfg = Config("m", "mlp", (("width", 16), ("depth", 1)))
    whole = 3000
    # a level every evaluation passes (the first pass is read again on the whole set) and one
    # none does: a tenth of the set asked for, the least number of examples read
    run, _ = lab.measure_truncated(cfg, 32, [0.0, 1.01], [64, 128, 192], [], (16, 64), "local/cpu-1", 4, 0.1)
    assert workload.read == [MIN_EVAL_EXAMPLES, whole, MIN_EVAL_EXAMPLES, MIN_EVAL_EXAMPLES]
    assert dict(run.reached)[0.0] == 64 and dict(run.reached)[1.01] is None
    # the next round asks for more than the least: the draw grows, the level is passed already
    workload.read.clear()
    lab.measure_truncated(cfg, 32, [0.0, 1.01], [256], [], (16, 64), "local/cpu-1", 4, 0.9)
    assert workload.read == [2700]
    workload.read.clear()
    lab.measure_truncated(cfg, 32, [0.0, 1.01], [320], [], (16, 64), "local/cpu-1", 4, 1.0)
    assert workload.read == [whole]
