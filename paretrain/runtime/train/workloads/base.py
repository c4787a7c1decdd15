"""The Workload protocol: data tensors and a model builder for a config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from paretrain.planner.inputs.space import Config, WorkloadInfo

__all__ = ["Data", "Workload"]


@dataclass(frozen=True)
class Data:
    """Train and validation tensors (features float32, labels int64)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    digest: str = ""

    @property
    def train_size(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def nbytes(self) -> int:
        return sum(
            int(t.numel() * t.element_size()) for t in (self.x_train, self.y_train, self.x_val, self.y_val)
        )


class Workload(Protocol):
    """A training workload: what it offers (``info``), its data and its models."""

    info: WorkloadInfo

    def data(self) -> Data: ...

    def build(self, config: Config) -> torch.nn.Module: ...
