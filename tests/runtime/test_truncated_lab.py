"""The lab's truncated run (``paretrain.runtime.train.lab_truncated``) on real MNIST-1D: rounds
continue one run; a round asked to evaluate a part of the validation set reads a fixed random
part, and a level is only marked reached by the whole set."""

from __future__ import annotations

import pytest

from paretrain.planner.inputs.space import Config
from paretrain.planner.measure.lab import MIN_EVAL_EXAMPLES
from paretrain.runtime.train.torch_lab import TorchLab
from paretrain.runtime.train.workloads.mnist1d import Mnist1D

VAL = 3000  # validation examples: a part of at least MIN_EVAL_EXAMPLES is smaller than the set


@pytest.fixture()
def lab(tmp_path):
    workload = Mnist1D(samples=2 * VAL, val_fraction=0.5, seed=2, cache_dir=tmp_path / "cache")
    return TorchLab(workload, prices_usd_per_h={"local/cpu-1": 0.0425})


def _counting(lab: TorchLab) -> list[int]:
    """Wrap the trainers' evaluations so that the examples each one reads are recorded."""
    sizes: list[int] = []
    evaluate = Mnist1D.evaluate

    def counting(self, model, batches):
        n = 0

        def each():
            nonlocal n
            for b in batches:
                n += len(b[0])
                yield b

        out = evaluate(self, model, each())
        sizes.append(n)
        return out

    lab.workload.evaluate = counting.__get__(lab.workload)
    return sizes


MLP = Config("m", "mlp", (("width", 32), ("depth", 1)))


def test_a_share_of_the_validation_set_reads_a_fixed_part_of_at_least_the_minimum(lab):
    sizes = _counting(lab)
    run, _ = lab.measure_truncated(MLP, 32, [1.0], [64, 128], [], (16, 64), "local/cpu-1", 4, eval_share=0.1)
    assert sizes == [MIN_EVAL_EXAMPLES, MIN_EVAL_EXAMPLES]  # 10% of 3000 is below the minimum
    assert [s for s, _ in run.curve] == [64, 128]
    sizes.clear()
    # the next round continues the same run, on the whole set when its share is 1
    run, _ = lab.measure_truncated(MLP, 32, [1.0], [192], [], (16, 64), "local/cpu-1", 4, eval_share=1.0)
    assert sizes == [VAL] and [s for s, _ in run.curve] == [64, 128, 192]


def test_a_level_reached_on_a_part_is_judged_again_on_the_whole_set(lab):
    sizes = _counting(lab)
    # every value reaches level 0: the first evaluation is taken again on the whole set, the
    # second (level 0 reached already) is not
    run, _ = lab.measure_truncated(MLP, 32, [0.0], [64, 128], [], (16, 64), "local/cpu-1", 4, eval_share=0.1)
    assert sizes == [MIN_EVAL_EXAMPLES, VAL, MIN_EVAL_EXAMPLES]
    assert dict(run.reached)[0.0] == 64
