"""The workload API, for users: what your training code gives paretrain.

Subclass ``Workload`` (or write any object with the same members), declare its model families
and metrics in a ``WorkloadInfo``, and name its factory in a spec
(``workload: {file: ./my_workload.py, factory: make_workload, args: {...}}``). See the docs'
how-to guide "Your own workload" (``docs/how-to/own-workload.md``) and ``examples/custom_workload/``.

>>> from paretrain.workload import Workload, WorkloadInfo, Family, Param, check_workload
>>> class Nothing: pass
>>> check_workload(Nothing(), "here")
["has no 'info'", "has no 'train_dataset'", "has no 'val_dataset'", "has no 'build'"]
"""

from __future__ import annotations

from torch.utils.data import Dataset, IterableDataset, TensorDataset

from paretrain.planner.inputs.space import Config, Family, Param, WorkloadInfo
from paretrain.runtime.train.workloads.api import Workload, check_workload, classification_metrics

__all__ = [
    "Config",
    "Dataset",
    "Family",
    "IterableDataset",
    "Param",
    "TensorDataset",
    "Workload",
    "WorkloadInfo",
    "check_workload",
    "classification_metrics",
]
