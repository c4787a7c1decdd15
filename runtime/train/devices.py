"""Local devices (CPU thread counts, CUDA GPUs) and how a stage claims one.

``local/cpu-N`` is this machine's CPU used by torch with N intra-op threads (N = 1, 2, 4, ...
up to the core count); ``local/cuda:I`` is CUDA device I when torch sees one.
"""

from __future__ import annotations

import hashlib
import os
import platform
from pathlib import Path

import torch

from planner.lab import LocalDevice
from runtime.train.trainer import set_threads

__all__ = ["local_devices", "claim", "machine_fingerprint", "cpu_model"]


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


def local_devices() -> list[LocalDevice]:
    """The devices of this machine: CPU at 1, 2, 4, ... threads, and every CUDA GPU."""
    cores, mem = _cores(), _memory_gib()
    out, n = [], 1
    while n <= cores:
        out.append(LocalDevice(f"local/cpu-{n}", "cpu", n, n, mem, bf16=True))
        n *= 2
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            out.append(LocalDevice(f"local/cuda:{i}", "gpu", 1, 1, props.total_memory / 2**30,
                                   accelerator=props.name, bf16=torch.cuda.is_bf16_supported()))
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
