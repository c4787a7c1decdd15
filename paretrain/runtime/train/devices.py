"""Local devices (CPU thread counts, CUDA GPUs) and how a stage claims one.

``local/cpu-N`` is this machine's CPU used by torch with N intra-op threads (N = 1, 2, 4, ...
up to the core count); ``local/cuda:I`` is CUDA device I when torch sees one.

Each device lists the precisions it trains in. ``fp32`` always; ``bf16`` and ``fp16`` where a
small forward and backward pass under ``torch.autocast`` really computes in that type there
(an autocast that does not support a type warns and runs in fp32, which would profile fp32
under another name), and, for ``fp16``, where a gradient scaler exists for the device (the
trainer scales fp16 losses so that small gradients do not underflow). On a CUDA device,
``bf16`` also needs ``torch.cuda.is_bf16_supported()`` (compute capability 8.0 or later).
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import warnings
from pathlib import Path

import torch

from paretrain.planner.measure.lab import LocalDevice
from paretrain.runtime.train.process_setup import set_threads

__all__ = ["PRECISIONS", "claim", "cpu_model", "local_devices", "machine_fingerprint", "trains_in"]

PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 8.0


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


@functools.cache
def trains_in(device: str, precision: str) -> bool:
    """Whether a training step on torch device ``device`` ("cpu", "cuda:0") runs in
    ``precision`` (probed once per process: a forward and backward pass of a small layer)."""
    if precision == "fp32":
        return True
    dtype = _DTYPES.get(precision)
    kind = device.split(":", 1)[0]
    if dtype is None:
        return False
    try:
        if kind == "cuda" and precision == "bf16" and not torch.cuda.is_bf16_supported():
            return False
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # "... not supported/available, disabling": a no
            if precision == "fp16":
                torch.amp.GradScaler(kind)  # the trainer's loss scaler for fp16
            weight = torch.full((8, 8), 0.125, device=device, requires_grad=True)  # no RNG drawn
            with torch.autocast(device_type=kind, dtype=dtype):
                out = torch.nn.functional.linear(torch.ones(4, 8, device=device), weight)
            out.float().sum().backward()
        grad = weight.grad
        return out.dtype == dtype and grad is not None and bool(torch.isfinite(grad).all())
    except Exception:
        return False


def _precisions(device: str) -> tuple[str, ...]:
    return tuple(q for q in PRECISIONS if trains_in(device, q))


def local_devices() -> list[LocalDevice]:
    """The devices of this machine: CPU at 1, 2, 4, ... threads, and every CUDA GPU, each with
    the precisions it trains in."""
    cores, mem = _cores(), _memory_gib()
    out, n = [], 1
    cpu = _precisions("cpu")
    while n <= cores:
        out.append(LocalDevice(f"local/cpu-{n}", "cpu", n, n, mem, precisions=cpu))
        n *= 2
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            out.append(
                LocalDevice(
                    f"local/cuda:{i}",
                    "gpu",
                    1,
                    1,
                    props.total_memory / 2**30,
                    accelerator=props.name,
                    precisions=_precisions(f"cuda:{i}"),
                )
            )
    return out


def claim(device_id: str) -> str:
    """Make torch use ``device_id``; return the torch device string ("cpu" or "cuda:I")."""
    kind = device_id.split("/", 1)[1]
    if kind.startswith("cpu-"):
        set_threads(int(kind[4:]))
        return "cpu"
    if kind.startswith("cuda:"):
        return kind
    raise ValueError(f"unknown local device {device_id!r}")


def machine_fingerprint() -> str:
    parts = [cpu_model(), str(_cores()), platform.machine(), torch.__version__]
    if torch.cuda.is_available():
        parts += [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]
