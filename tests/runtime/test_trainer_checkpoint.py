"""The trainer's state round-trips through atomic checkpoints; damaged files are skipped."""

from __future__ import annotations

import torch

from paretrain.planner.inputs.space import Config
from paretrain.runtime.train.checkpoint import checkpoint_paths, load_latest, save_checkpoint
from paretrain.runtime.train.trainer import Trainer
from paretrain.runtime.train.workloads.mnist1d import Mnist1D


def workload(tmp_path):
    return Mnist1D(samples=1200, val_fraction=0.2, seed=1, cache_dir=tmp_path / "cache")


def test_data_is_seeded_and_cached(tmp_path):
    a = workload(tmp_path).data()
    b = workload(tmp_path).data()  # read back from the .npz cache
    assert torch.equal(a.x_train, b.x_train) and a.digest == b.digest
    assert a.x_val.shape == (240, 40) and a.train_size == 960
    assert set(a.y_train.tolist()) <= set(range(10))


def test_every_family_trains_one_step(tmp_path):
    w = workload(tmp_path)
    for cfg in (
        Config("m", "mlp", (("width", 32), ("depth", 2))),
        Config("c", "cnn", (("channels", 8), ("depth", 3), ("kernel", 5))),
        Config("g", "gru", (("hidden", 16), ("depth", 1))),
        Config("s", "mlp", optimizer="sgd", lr=0.05),
    ):
        t = Trainer(w, cfg, batch_size=16)
        loss = t.step()
        assert loss > 0 and t.samples_seen == 16
        assert 0.0 <= t.evaluate().value <= 1.0


def test_evaluation_in_chunks_gives_the_same_loss_and_accuracy_as_one_pass(tmp_path):
    t = Trainer(
        workload(tmp_path), Config("c", "cnn", (("channels", 8), ("depth", 2), ("kernel", 5))), batch_size=32
    )
    for _ in range(5):
        t.step()
    whole, chunked = t.evaluate(chunk=4096), t.evaluate(chunk=64)  # 240 samples: one pass, four chunks
    assert chunked.value == whole.value
    assert abs(chunked.loss - whole.loss) <= 1e-5 * whole.loss


def test_a_batch_change_rescales_adams_second_moments_and_leaves_sgd_alone(tmp_path):
    w = workload(tmp_path)
    adam = Trainer(w, Config("c", "cnn", (("channels", 8), ("depth", 2), ("kernel", 5))), batch_size=32)
    sgd = Trainer(w, Config("s", "mlp", optimizer="sgd", lr=0.05), batch_size=32)
    for t in (adam, sgd):
        for _ in range(3):
            t.step()
    before = [s["exp_avg_sq"].clone() for s in adam.optimizer.state.values()]
    momenta = [s["momentum_buffer"].clone() for s in sgd.optimizer.state.values()]
    adam.set_batch_size(128)
    sgd.set_batch_size(128)
    after = [s["exp_avg_sq"] for s in adam.optimizer.state.values()]
    assert before and all(torch.allclose(a, b * 0.25) for a, b in zip(after, before, strict=False))
    assert all(
        torch.equal(a, s["momentum_buffer"])
        for a, s in zip(momenta, sgd.optimizer.state.values(), strict=False)
    )
    adam.set_batch_size(128)  # no change, no rescale
    assert all(torch.allclose(a, b * 0.25) for a, b in zip(after, before, strict=False))


def test_resume_from_checkpoint_continues_identically(tmp_path):
    w = workload(tmp_path)
    cfg = Config("m", "mlp", (("width", 32), ("depth", 2)))
    a = Trainer(w, cfg, batch_size=32, seed=3)
    for _ in range(40):  # crosses an epoch boundary (960 / 32 = 30 steps)
        a.step()
    save_checkpoint(tmp_path / "ck", {"trainer": a.state_dict(), "run": {"stage": 0}}, keep=2)
    losses_a = [a.step() for _ in range(10)]
    state, _ = load_latest(tmp_path / "ck")
    b = Trainer(w, cfg, batch_size=32, seed=3)
    b.load_state_dict(state["trainer"])
    losses_b = [b.step() for _ in range(10)]
    assert losses_a == losses_b
    assert a.samples_seen == b.samples_seen


def test_batch_change_rescales_lr_by_the_optimizer_rule(tmp_path):
    w = workload(tmp_path)
    adam = Trainer(w, Config("a", "mlp", lr=1e-3, base_batch=32), batch_size=32)
    adam.set_batch_size(128)
    assert adam.lr == 1e-3 * 2  # sqrt(128 / 32)
    sgd = Trainer(w, Config("s", "mlp", optimizer="sgd", lr=0.01, base_batch=32), batch_size=32)
    sgd.set_batch_size(128, warmup_steps=3)
    assert sgd.lr < 0.04
    for _ in range(3):
        sgd.step()
    assert abs(sgd.lr - 0.04) < 1e-12


def test_truncated_checkpoint_is_skipped_for_the_previous_one(tmp_path):
    folder = tmp_path / "ck"
    for i in range(3):
        save_checkpoint(folder, {"trainer": {"i": torch.tensor([i])}, "run": {"stage": i}}, keep=3)
    newest = checkpoint_paths(folder)[-1]
    newest.write_bytes(newest.read_bytes()[:50])
    state, _path = load_latest(folder)
    assert state["run"]["stage"] == 1
    assert not newest.exists() and newest.with_suffix(".damaged").exists()


def test_only_the_last_k_checkpoints_are_kept(tmp_path):
    for i in range(5):
        save_checkpoint(tmp_path, {"trainer": {}, "run": {"i": i}}, keep=2)
    assert [p.name for p in checkpoint_paths(tmp_path)] == ["ckpt-00000003.pt", "ckpt-00000004.pt"]
