"""Real training workloads: built-in ones by name, user ones by ``python:pkg.module:factory``.

``WORKLOADS`` maps each built-in name to its ``WorkloadInfo`` (plain data, no torch import),
so the spec can be validated without loading torch. ``load_workload`` builds the real one.

>>> from runtime.train.workloads import WORKLOADS
>>> sorted(WORKLOADS)
['mnist1d']
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

from planner.errors import SpecError
from runtime.train.workloads.info import MNIST1D_INFO

if TYPE_CHECKING:
    from planner.spec import WorkloadSpec
    from runtime.train.workloads.base import Workload

__all__ = ["WORKLOADS", "load_workload"]

WORKLOADS = {"mnist1d": MNIST1D_INFO}


def load_workload(spec: "WorkloadSpec", cache_dir: Path | None = None) -> "Workload":
    """Build the workload a spec names (its data generated or read from the cache)."""
    if spec.name == "mnist1d":
        from runtime.train.workloads.mnist1d import Mnist1D

        return Mnist1D(samples=spec.samples, val_fraction=spec.val_fraction, seed=spec.seed,
                       cache_dir=cache_dir)
    if spec.name.startswith("python:"):
        _, module, factory = spec.name.split(":")
        try:
            fn = getattr(importlib.import_module(module), factory)
        except (ImportError, AttributeError) as err:
            raise SpecError("spec", "workload.name", "must name an importable factory", spec.name,
                            f"check the module and function names ({err})") from None
        return fn(spec)
    raise SpecError("spec", "workload.name", "is not a known workload", spec.name,
                    f"use one of: {', '.join(sorted(WORKLOADS))}, or python:pkg.module:factory")
