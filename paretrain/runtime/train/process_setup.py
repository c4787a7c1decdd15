"""How a training process sets torch up once: its thread count, malloc's thresholds, torch's lazy imports."""

from __future__ import annotations

import torch

__all__ = ["keep_freed_memory", "set_threads", "warm_up_torch"]


def set_threads(threads: int) -> None:
    """Give torch ``threads`` intra-op threads (how local/cpu-N devices differ)."""
    keep_freed_memory()
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


_ALLOCATOR_TUNED = False


def keep_freed_memory() -> None:
    """Make glibc's malloc keep freed blocks up to 32 MiB for reuse (once per process).

    By default it hands large freed blocks back to the system and raises its threshold for
    doing so as the process frees bigger ones, so the cost of a step or an evaluation depended
    on what the process had allocated before: the 128-channel CNN's evaluation took 400-440 ms
    in a fresh process and 295-317 ms after a run at a larger batch, on the same machine. With
    a fixed 32 MiB mmap threshold and a 1 GiB trim threshold it takes 300-310 ms in both, and
    a plan's profile (measured in one process) holds for a run (measured in another). The
    process keeps its peak memory instead of returning it. A no-op off glibc.
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED:
        return
    _ALLOCATOR_TUNED = True
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):  # not glibc
        pass


def warm_up_torch() -> None:
    """Load torch's lazily imported parts (the first optimizer costs over a second of imports)
    so that the meter, started after this, charges training and not library loading."""
    p = torch.zeros(1, requires_grad=True)
    for opt in (torch.optim.Adam([p]), torch.optim.SGD([p], lr=0.1)):
        p.sum().backward()
        opt.step()
