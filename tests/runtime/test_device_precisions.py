"""Which precisions a local device trains in: probed with a real autocast step, never assumed."""

from __future__ import annotations

import contextlib
import warnings

import pytest
import torch

from paretrain.runtime.train import devices
from paretrain.runtime.train.devices import PRECISIONS, local_devices, trains_in


@pytest.fixture(autouse=True)
def fresh_probe():
    trains_in.cache_clear()
    yield
    trains_in.cache_clear()


def test_every_device_trains_in_fp32_and_lists_only_what_its_probe_confirms():
    found = local_devices()
    assert found and all(d.precisions[0] == "fp32" for d in found)
    for d in found:
        torch_device = "cpu" if d.kind == "cpu" else d.id.split("/", 1)[1]
        assert d.precisions == tuple(q for q in PRECISIONS if trains_in(torch_device, q))


def test_this_cpu_trains_in_bf16_and_fp16_when_autocast_computes_in_them():
    # torch >= 2.3 autocasts both on CPU (the CI's torch does); the probe must see it
    for q, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        with torch.autocast("cpu", dtype=dtype):
            works = torch.nn.functional.linear(torch.ones(2, 4), torch.ones(3, 4)).dtype == dtype
        assert trains_in("cpu", q) == works


def test_an_autocast_that_disables_itself_means_not_supported(monkeypatch):
    @contextlib.contextmanager
    def refusing(device_type, dtype):
        warnings.warn(
            "In CPU autocast, but the target dtype is not supported. Disabling autocast.", stacklevel=2
        )
        yield

    monkeypatch.setattr(devices.torch, "autocast", refusing)
    assert trains_in("cpu", "fp32")
    assert not trains_in("cpu", "bf16") and not trains_in("cpu", "fp16")


def test_unknown_precisions_are_not_supported():
    assert not trains_in("cpu", "fp8") and not trains_in("cpu", "")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_without_cuda_no_cuda_precision_is_claimed_and_nothing_warns():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not any(trains_in("cuda:0", q) for q in ("bf16", "fp16"))
    assert all(d.kind == "cpu" for d in local_devices())


def test_probing_draws_nothing_from_torchs_generator():
    torch.manual_seed(7)
    before = torch.get_rng_state()
    local_devices()
    assert torch.equal(before, torch.get_rng_state())


def test_timing_on_a_cuda_device_waits_for_its_queued_kernels(monkeypatch):
    from paretrain.runtime.train import lab_meter as lab

    calls: list[str] = []
    monkeypatch.setattr(lab.torch.cuda, "synchronize", lambda device=None: calls.append(f"sync {device}"))
    meter = lab.LabMeter(None, float("inf"), 0.0, "local/cuda:1", "steps")
    meter.timed(lambda: calls.append("work"))
    assert calls == ["sync cuda:1", "work", "sync cuda:1"]  # the step's own kernels, not the one before
    calls.clear()
    lab.LabMeter(None, float("inf"), 0.0, "local/cpu-2", "steps").timed(lambda: calls.append("work"))
    assert calls == ["work"]
