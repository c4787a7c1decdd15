"""The workload API: what a user's training code gives paretrain (public; re-exported as
``paretrain.workload``).

A workload says *what* is trained; paretrain owns *how*: the loop, batch size per stage,
learning-rate rescaling, precision, DataLoaders, checkpoints, the ledger and replans. Modelled
on what PyTorch users know (LightningModule's ``training_step`` / ``validation_step`` /
``configure_optimizers``, torch ``Dataset``), a workload is an object with:

- ``info``: a ``paretrain.planner.inputs.space.WorkloadInfo``: its model families and search space as data, the
  metrics its evaluation returns with their directions, and the metric targeted by default;
- ``train_dataset()`` and ``val_dataset()``: torch ``Dataset``s (map-style, indexed by the
  runtime's seeded sampler; or an ``IterableDataset``, read in order), deterministic under the
  workload's seed;
- ``build(config) -> nn.Module``: a model for one configuration of one of its families;
- optionally ``loss(model, batch) -> Tensor`` (default: cross-entropy of ``model(x)`` against
  ``y`` for a batch ``(x, y)``), ``evaluate(model, batches) -> dict[str, float]`` (default:
  ``val_loss`` and ``val_accuracy`` of a classifier, averaged per sample), ``inputs(batch)`` (what
  the model takes, for the inference-latency measure; default ``batch[0]``),
  ``optimizer(model, config)`` (default: Adam or SGD from the config) and ``fingerprint()``
  (a digest of the data, recorded with every run).

Subclass ``Workload`` to get the defaults, or write any object with the same members: a spec
names it with ``workload: {python: pkg.module:factory, args: {...}}`` or ``workload: {file:
./my_workload.py, factory: make_workload, args: {...}}``; the factory is called with ``args`` as
keywords and must return a workload. ``check_workload`` says, in one line, what is missing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, IterableDataset, TensorDataset

from paretrain.planner.inputs.space import Config, WorkloadInfo

__all__ = [
    "Dataset",
    "IterableDataset",
    "TensorDataset",
    "Workload",
    "WorkloadInfo",
    "check_workload",
    "classification_metrics",
    "tensor_fingerprint",
]


def classification_metrics(model: nn.Module, batches: Iterable[Any]) -> dict[str, float]:
    """``val_loss`` (mean cross-entropy per sample) and ``val_accuracy`` of a classifier."""
    total, correct, n = 0.0, 0, 0
    for x, y in batches:
        out = model(x).float()
        total += float(nn.functional.cross_entropy(out, y, reduction="sum"))
        correct += int((out.argmax(1) == y).sum())
        n += int(y.shape[0])
    return {"val_loss": total / max(n, 1), "val_accuracy": correct / max(n, 1)}


def tensor_fingerprint(*tensors: torch.Tensor) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class Workload:
    """Base class with the optional members' defaults; subclasses give ``info``,
    ``train_dataset``, ``val_dataset`` and ``build``."""

    info: WorkloadInfo

    def train_dataset(self) -> Dataset:
        raise NotImplementedError

    def val_dataset(self) -> Dataset:
        raise NotImplementedError

    def build(self, config: Config) -> nn.Module:
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(model(x), y)

    def evaluate(self, model: nn.Module, batches: Iterable[Any]) -> dict[str, float]:
        return classification_metrics(model, batches)

    def inputs(self, batch: Any) -> Any:
        return batch[0]

    def optimizer(self, model: nn.Module, config: Config) -> torch.optim.Optimizer | None:
        return None  # the runtime's default: Adam (or SGD with momentum 0.9) from the config

    def fingerprint(self) -> str:
        ds = self.train_dataset()
        if isinstance(ds, TensorDataset):
            return tensor_fingerprint(*ds.tensors)
        return ""


_REQUIRED = ("info", "train_dataset", "val_dataset", "build")


def check_workload(obj: Any, where: str) -> list[str]:
    """What ``obj`` lacks to be a workload (empty: it is one). Cheap: builds no data or model."""
    problems = [f"has no '{name}'" for name in _REQUIRED if not hasattr(obj, name)]
    if problems:
        return problems
    info = obj.info
    if not isinstance(info, WorkloadInfo):
        return [f"'info' must be a paretrain.planner.inputs.space.WorkloadInfo, got {type(info).__name__}"]
    for name in ("train_dataset", "val_dataset", "build"):
        if not callable(getattr(obj, name)):
            problems.append(f"'{name}' must be callable")
    for name in ("loss", "evaluate", "inputs", "optimizer", "fingerprint"):
        if hasattr(obj, name) and not callable(getattr(obj, name)):
            problems.append(f"'{name}' must be callable")
    return problems


def member(obj: Any, name: str) -> Any:
    """A workload's own member, else the default from ``Workload`` bound to it."""
    found = getattr(obj, name, None)
    if found is not None:
        return found
    return getattr(Workload, name).__get__(obj)


def declared_metrics(info: WorkloadInfo) -> Mapping[str, str]:
    return dict(info.metrics)
