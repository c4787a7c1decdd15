"""The workload contract: one suite that every workload, built-in or example, must pass.

As Optuna runs one suite over every sampler, each test here runs once per entry of
``FACTORIES``; a new workload is tested by adding one line. Each factory builds a small
instance of its workload (``make(seed, cache_dir)``). What a workload must do: pass
``check_workload``; give the same data for the same seed; build a model for every declared
family that gives a finite loss through the ``Trainer``; evaluate to exactly the metrics it
declares, its target among them; round-trip a checkpoint through ``torch.save`` and
``torch.load(weights_only=True)``; resume to the very losses and parameters of an
uninterrupted run, in fp32 and in each mixed precision the CPU trains in; and, for a dataset
read through a ``DataLoader``, give the same batches with worker processes as without.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import IterableDataset, TensorDataset

from paretrain.planner.inputs.metric import Metric
from paretrain.planner.inputs.space import Config
from paretrain.runtime.train.batches import BatchStream
from paretrain.runtime.train.devices import trains_in
from paretrain.runtime.train.trainer import Trainer
from paretrain.runtime.train.workloads import user_factory
from paretrain.runtime.train.workloads.api import check_workload, member

Factory = Callable[[int, Path], Any]
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "custom_workload" / "digits_workload.py"
BATCH = 8


def _mnist1d(seed: int, cache_dir: Path) -> Any:
    from paretrain.runtime.train.workloads.mnist1d import Mnist1D

    return Mnist1D(samples=1000, val_fraction=0.2, seed=seed, cache_dir=cache_dir)


def _stdlib_lm(seed: int, cache_dir: Path) -> Any:
    from paretrain.runtime.train.workloads.stdlib_lm import StdlibLM

    return StdlibLM(max_bytes=200_000, val_windows=32, seed=seed, cache_dir=cache_dir)


def _digits(seed: int, cache_dir: Path) -> Any:
    # loaded the way the runtime loads a spec's ``workload: {file: ..., factory: ...}``
    return user_factory(f"file:{EXAMPLE}:make_workload")(seed=seed)


FACTORIES = [
    pytest.param(_mnist1d, id="mnist1d"),
    pytest.param(_stdlib_lm, id="stdlib_lm"),
    pytest.param(
        _digits,
        id="digits-example",
        marks=pytest.mark.skipif(
            not EXAMPLE.is_file(), reason=f"the user example {EXAMPLE.name} is not in this checkout yet"
        ),
    ),
]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # tiny models: a second intra-op thread buys nothing and, on a shared 2-core machine,
    # spins against the other processes; both sides of every comparison run alike
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("workload-cache")


@pytest.fixture(params=FACTORIES)
def make(request: pytest.FixtureRequest, cache_dir: Path) -> Callable[..., Any]:
    factory: Factory = request.param
    return lambda seed=0, cache=cache_dir: factory(seed, cache)


def default_configs(workload: Any) -> list[Config]:
    """One config per declared family, every parameter at its declared default."""
    info = workload.info
    return [
        Config(
            f"{f.name}-default",
            f.name,
            tuple((p.name, p.default) for p in f.params if p.default is not None),
            lr=info.lr.default if info.lr.default is not None else 1e-3,
        )
        for f in info.families
    ]


def first_items(dataset: Any, n: int) -> list[Any]:
    if isinstance(dataset, IterableDataset):
        it = iter(dataset)
        return [next(it) for _ in range(n)]
    return [dataset[i] for i in range(min(n, len(dataset)))]


def same(a: Any, b: Any) -> bool:
    """Exact equality of nested batches (tensors, numbers, tuples, lists, dicts)."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=False))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


def same_params(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def saved(trainer: Trainer) -> dict[str, Any]:
    """The trainer's state after a trip through a file, as a checkpoint takes it."""
    buf = io.BytesIO()
    torch.save(trainer.state_dict(), buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def test_check_workload_finds_nothing_missing(make):
    w = make()
    assert check_workload(w, "test") == []
    info = w.info
    assert info.families and len(set(info.family_names)) == len(info.family_names)
    assert info.target in dict(info.metrics)


def test_the_same_seed_gives_the_same_data(make, tmp_path):
    # separate caches, so that each instance makes its data rather than reading the other's
    a, b = make(seed=3, cache=tmp_path / "a"), make(seed=3, cache=tmp_path / "b")
    for name in ("train_dataset", "val_dataset"):
        da, db = getattr(a, name)(), getattr(b, name)()
        assert same(first_items(da, 16), first_items(db, 16)), f"{name} differs between two instances"
        if not isinstance(da, IterableDataset):
            assert len(da) == len(db) > 0
    assert member(a, "fingerprint")() == member(b, "fingerprint")()


def test_every_family_builds_with_its_defaults_and_gives_a_finite_loss(make):
    w = make()
    for cfg in default_configs(w):
        t = Trainer(w, cfg, batch_size=BATCH)
        assert t.parameter_count() > 0, cfg.family
        losses = [t.step() for _ in range(2)]
        assert all(math.isfinite(v) for v in losses), (cfg.family, losses)
        with torch.no_grad():  # what the inference-latency probe feeds the model
            out = t.model.eval()(t.example_inputs(2))
        assert torch.isfinite(out.float()).all(), cfg.family


def test_evaluate_returns_exactly_the_declared_metrics_with_the_target_among_them(make):
    w = make()
    info = w.info
    declared = dict(info.metrics)
    t = Trainer(w, default_configs(w)[0], batch_size=BATCH)
    t.step()
    ev = t.evaluate()
    assert set(ev.metrics) == set(declared)
    assert all(math.isfinite(v) for v in ev.metrics.values()), ev.metrics
    assert ev.metric == Metric(info.target, declared[info.target])
    assert ev.value == ev.metrics[info.target]
    assert ev.score == (ev.value if declared[info.target] == "maximize" else -ev.value)


def test_a_checkpoint_round_trips_into_a_fresh_trainer(make):
    w = make()
    for cfg in default_configs(w):
        a = Trainer(w, cfg, batch_size=BATCH)
        for _ in range(2):
            a.step()
        state = saved(a)
        b = Trainer(make(), cfg, batch_size=2 * BATCH)  # the state sets the batch size back
        b.load_state_dict(state)
        assert same_params(a.model, b.model), cfg.family
        assert (b.batch_size, b.samples_seen, b.steps, b.lr) == (a.batch_size, a.samples_seen, a.steps, a.lr)
        assert b.stream.position() == a.stream.position()
        assert a.step() == b.step(), cfg.family


def test_a_resumed_run_takes_the_same_steps_as_an_uninterrupted_one(make):
    # Exact equality: the same ops in the same order on one CPU process are bitwise
    # reproducible, and the state restores the data position, the RNG, the optimizer and the
    # warm-up; a tolerance here would hide a resume that drifts by one batch.
    w = make()
    n, m = 3, 4
    for cfg in default_configs(w):
        a = Trainer(w, cfg, batch_size=BATCH, warmup_steps=n + 2)  # warm-up spans the save
        for _ in range(n):
            a.step()
        state = saved(a)
        after = [a.step() for _ in range(m)]
        b = Trainer(make(), cfg, batch_size=BATCH)
        b.load_state_dict(state)
        assert [b.step() for _ in range(m)] == after, cfg.family
        assert same_params(a.model, b.model), cfg.family
        assert b.stream.position() == a.stream.position()


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_a_mixed_precision_run_gives_finite_losses_and_resumes_exactly(make, precision):
    if not trains_in("cpu", precision):
        pytest.skip(f"torch's CPU autocast does not train in {precision} here")
    w = make()
    cfg = default_configs(w)[0]
    a = Trainer(w, cfg, batch_size=BATCH, precision=precision)
    assert (a.scaler is not None) == (precision == "fp16")  # fp16 scales its loss
    first = [a.step() for _ in range(2)]
    state = saved(a)
    after = [a.step() for _ in range(2)]
    assert all(math.isfinite(v) for v in first + after), (precision, first, after)
    assert all(math.isfinite(v) for v in a.evaluate().metrics.values())
    b = Trainer(make(), cfg, batch_size=BATCH, precision=precision)
    b.load_state_dict(state)
    assert [b.step() for _ in range(2)] == after
    assert same_params(a.model, b.model)


def test_loader_workers_give_the_same_batches_as_none(make):
    w = make()
    ds = w.train_dataset()
    if isinstance(ds, TensorDataset):
        pytest.skip("a TensorDataset is indexed on the device directly; no DataLoader, no workers")
    if isinstance(ds, IterableDataset):
        pytest.skip("an IterableDataset is read in its own order in this process")
    plain = BatchStream(ds, seed=5, device="cpu", workers=0)
    loaded = BatchStream(ds, seed=5, device="cpu", workers=2)
    for stream in (plain, loaded):  # near the end of an epoch: the next batches cross into the next
        stream.restore(0, len(ds) - 2 * BATCH - 3)
    for i in range(5):
        assert same(plain.next(BATCH), loaded.next(BATCH)), f"batch {i}"
        assert plain.position() == loaded.position(), f"position after batch {i}"
    assert loaded.position()[0] == 1
    for stream in (plain, loaded):  # a batch-size change and a resume, mid-epoch
        stream.invalidate()
        stream.restore(1, 5)
    assert same([plain.next(2 * BATCH) for _ in range(2)], [loaded.next(2 * BATCH) for _ in range(2)])
    assert plain.position() == loaded.position() == (1, 5 + 4 * BATCH)


def test_a_trainer_with_loader_workers_trains_as_one_without(make):
    w = make()
    if isinstance(w.train_dataset(), (TensorDataset, IterableDataset)):
        pytest.skip("no DataLoader for this dataset: loader_workers does not apply")
    cfg = default_configs(w)[0]
    plain = Trainer(w, cfg, batch_size=BATCH)
    loaded = Trainer(make(), cfg, batch_size=BATCH, loader_workers=2)
    assert [plain.step() for _ in range(3)] == [loaded.step() for _ in range(3)]
    assert same_params(plain.model, loaded.model)
    assert plain.evaluate().metrics == loaded.evaluate().metrics
