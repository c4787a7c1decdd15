"""The byte-level LM workload: its corpus, windows, model, metric and training, on small caps."""

from __future__ import annotations

import io
import itertools
import math

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, RandomSampler

from paretrain.planner.inputs.space import Config
from paretrain.runtime.train.trainer import Trainer
from paretrain.runtime.train.workloads.gpt import GPT, GPTConfig, adamw, warmup_cosine, warmup_cosine_schedule
from paretrain.runtime.train.workloads.info import STDLIB_LM_INFO
from paretrain.runtime.train.workloads.stdlib_corpus import (
    TrainWindows,
    ValWindows,
    corpus_files,
    is_validation,
    load_corpus,
)
from paretrain.runtime.train.workloads.stdlib_lm import StdlibLM, bits_per_byte, evaluate, gpt_config, lm_loss

CAP = 300_000  # bytes: a dozen files, one of them in validation
TINY = Config("tiny", "gpt", (("layers", 1), ("width", 32), ("heads", 2), ("context", 32)), lr=3e-3)


@pytest.fixture(scope="module")
def full():
    return load_corpus()


@pytest.fixture(scope="module")
def small():
    return load_corpus(max_bytes=CAP)


def test_corpus_is_deterministic_and_its_fingerprint_recorded(full, tmp_path):
    again = load_corpus(cache_dir=tmp_path)
    cached = load_corpus(cache_dir=tmp_path)  # read back from the .npz
    assert again.fingerprint == full.fingerprint == cached.fingerprint
    assert len(full.fingerprint) == 64 and full.nbytes > 1_000_000
    assert np.array_equal(cached.train, full.train) and np.array_equal(cached.val, full.val)
    assert list(tmp_path.glob(f"stdlib-corpus-{full.fingerprint[:16]}-all.npz"))
    assert full.train.dtype == np.uint8 and full.val.size > 0


def test_no_file_is_in_both_splits_and_about_one_in_ten_validates(full):
    rels = [rel for rel, _ in corpus_files()]
    val = {r for r in rels if is_validation(r)}
    train = set(rels) - val
    assert not val & train and len(val) == full.val_files and len(rels) == full.files
    assert 0.05 < len(val) / len(rels) < 0.15
    assert not any(part in {"site-packages", "test", "tests"} for r in rels for part in r.split("/"))
    assert rels == sorted(rels)


def test_a_capped_corpus_is_a_prefix_of_the_full_one(full, small):
    assert small.nbytes <= CAP and small.fingerprint != full.fingerprint
    assert np.array_equal(full.train[: small.train.size], small.train)
    assert np.array_equal(full.val[: small.val.size], small.val)


def test_training_windows_are_shifted_pairs_fixed_by_the_seed(small):
    w = TrainWindows(small.train, 64, seed=3)
    x, y = w[7]
    assert x.shape == y.shape == (64,) and x.dtype == y.dtype == torch.int64
    assert torch.equal(x[1:], y[:-1])
    assert len(w) == (small.train.size - 1) // 64
    again = TrainWindows(small.train, 64, seed=3)
    other = TrainWindows(small.train, 64, seed=4)
    assert all(torch.equal(w[i][0], again[i][0]) for i in range(20))
    assert not all(torch.equal(w[i][0], other[i][0]) for i in range(20))
    with pytest.raises(IndexError):
        w[len(w)]


def test_validation_windows_are_fixed_and_do_not_overlap(small):
    v = ValWindows(small.val, 64)
    assert len(v) == (small.val.size - 1) // 64
    x0, y0 = v[0]
    x1, _ = v[1]
    assert torch.equal(x0, torch.from_numpy(small.val[:64].astype(np.int64)))
    assert torch.equal(x1, torch.from_numpy(small.val[64:128].astype(np.int64)))
    assert y0[-1] == x1[0]
    limited = ValWindows(small.val, 64, limit=10)
    assert len(limited) == 10 and limited.starts[0] == 0 and limited.starts[-1] == v.starts[-1]


def test_too_short_data_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="raise max_bytes"):
        TrainWindows(np.zeros(10, dtype=np.uint8), 64)


def test_declared_family_builds_with_its_defaults():
    assert STDLIB_LM_INFO.family_names == ("gpt",)
    cfg = gpt_config(Config("d", "gpt"))
    assert (cfg.layers, cfg.width, cfg.heads, cfg.context) == (2, 64, 2, 64)
    for p in STDLIB_LM_INFO.family("gpt").params:
        assert p.admits(p.default)
    with pytest.raises(ValueError, match="width % heads"):
        GPTConfig(width=32, heads=3)


def test_logits_shape_and_loss_at_init_is_about_eight_bits_per_byte(small):
    torch.manual_seed(0)
    x, y = (torch.stack(t) for t in zip(*(TrainWindows(small.train, 64)[i] for i in range(16)), strict=False))
    for tied in (True, False):
        model = GPT(GPTConfig(layers=2, width=64, heads=2, context=64, tied=tied))
        logits = model(x)
        assert logits.shape == (16, 256, 64)
        bpb = bits_per_byte(float(lm_loss(model, (x, y)).detach()))
        # tied: the head favours repeating the input byte (runs of spaces), slightly under 8
        assert abs(bpb - 8.0) < (0.5 if tied else 0.1)
    assert abs(bits_per_byte(math.log(256)) - 8.0) < 1e-12


def test_changing_a_future_byte_leaves_earlier_logits_alone():
    torch.manual_seed(0)
    model = GPT(GPTConfig(layers=2, width=32, heads=4, context=32)).eval()
    x = torch.randint(0, 256, (2, 32))
    changed = x.clone()
    changed[:, 20] = (changed[:, 20] + 1) % 256
    a, b = model(x), model(changed)
    assert torch.equal(a[..., :20], b[..., :20])
    assert not torch.allclose(a[..., 20:], b[..., 20:])


def test_a_window_longer_than_the_context_is_read_as_independent_pieces():
    torch.manual_seed(0)
    model = GPT(GPTConfig(layers=1, width=32, heads=2, context=16)).eval()
    x = torch.randint(0, 256, (3, 48))
    whole = model(x)
    pieces = torch.cat([model(x[:, i : i + 16]) for i in (0, 16, 32)], dim=2)
    assert torch.allclose(whole, pieces, atol=1e-6)
    with pytest.raises(ValueError, match="multiple"):
        model(torch.zeros(1, 40, dtype=torch.long))


def test_warmup_then_cosine_decay():
    values = [warmup_cosine(s, 100, 10) for s in range(120)]
    assert values[0] < values[5] < values[9] < values[10] == 1.0
    assert all(a >= b for a, b in itertools.pairwise(values[10:101]))
    assert values[100] == pytest.approx(0.1) and values[119] == pytest.approx(0.1)


def test_a_few_hundred_steps_lower_bits_per_byte_clearly():
    torch.set_num_threads(1)
    wl = StdlibLM(sequence=32, max_bytes=CAP, val_windows=128)
    torch.manual_seed(0)
    model = wl.build(TINY)
    steps = 300
    opt = adamw(model, TINY.lr)
    schedule = warmup_cosine_schedule(opt, steps, warmup_steps=15)
    train = wl.train_dataset()
    loader = DataLoader(
        train,
        batch_size=16,
        sampler=RandomSampler(
            train, replacement=True, num_samples=16 * steps, generator=torch.Generator().manual_seed(0)
        ),
    )
    val = DataLoader(wl.val_dataset(), batch_size=64)
    before = wl.evaluate(model, val)
    for batch in loader:
        opt.zero_grad(set_to_none=True)
        wl.loss(model, batch).backward()
        opt.step()
        schedule.step()
    after = wl.evaluate(model, val)
    assert set(after) == {"val_loss", "val_bpb"}
    assert before["val_bpb"] > 7.0 and after["val_bpb"] < 4.5, (before, after)
    assert after["val_bpb"] == pytest.approx(bits_per_byte(after["val_loss"]))


def test_model_state_round_trips_through_a_weights_only_checkpoint():
    torch.manual_seed(0)
    model = GPT(GPTConfig(layers=2, width=32, heads=2, context=32, tied=True))
    opt = adamw(model, 1e-2)
    x = torch.randint(0, 256, (4, 32))
    lm_loss(model, (x, x)).backward()
    opt.step()
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    torch.manual_seed(1)
    restored = GPT(GPTConfig(layers=2, width=32, heads=2, context=32, tied=True))
    restored.load_state_dict(torch.load(buf, weights_only=True))
    assert restored.head.weight is restored.tok.weight  # still tied after loading
    assert torch.equal(model(x), restored(x))


def test_trains_through_the_runtime_trainer_with_per_byte_metrics(tmp_path):
    wl = StdlibLM(max_bytes=CAP, cache_dir=tmp_path, val_windows=32)
    t = Trainer(wl, Config("g", "gpt", (("layers", 1), ("width", 32)), lr=3e-3), batch_size=8)
    assert (t.metric.name, t.metric.direction) == ("val_bpb", "minimize")
    losses = [t.step() for _ in range(5)]
    assert all(math.isfinite(v) for v in losses)
    ev = t.evaluate()
    direct = evaluate(t.model, DataLoader(wl.val_dataset(), batch_size=16))
    assert ev.metrics["val_loss"] == pytest.approx(direct["val_loss"], rel=1e-5)
    assert ev.value == pytest.approx(direct["val_bpb"], rel=1e-5) and ev.score == -ev.value
    assert direct["val_loss"] < math.log(256) + 0.5
