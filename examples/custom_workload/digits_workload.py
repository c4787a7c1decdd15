"""A user's workload: scikit-learn's bundled handwritten digits, planned and run by paretrain.

The data ships inside scikit-learn (``sklearn.datasets.load_digits``: 1,797 grey 8x8 images of
the digits 0-9, from the UCI ML repository), so nothing is downloaded. It is written against the
public API only (``paretrain.workload``), as code outside paretrain would be; a spec names it:

    workload: {file: ./digits_workload.py, factory: make_workload, args: {seed: 0, val_fraction: 0.2}}

>>> w = make_workload(seed=0, val_fraction=0.2)
>>> len(w.train_dataset()), len(w.val_dataset())
(1438, 359)
>>> image, label = w.train_dataset()[0]
>>> tuple(image.shape), type(label).__name__
((1, 8, 8), 'int')
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from torch import nn

from paretrain.workload import Config, Dataset, Family, Param, Workload, WorkloadInfo

__all__ = ["DIGITS", "Digits", "DigitsDataset", "make_workload"]

# What the workload offers the planner, as data: two model families, the learning-rate range
# the search may try, and the metrics ``evaluate`` returns (the default classifier metrics).
DIGITS = WorkloadInfo(
    name="sklearn-digits",
    description="scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes)",
    input_shape=(1, 8, 8),
    classes=10,
    lr=Param("lr", "float", 3e-4, 3e-2, log=True, default=3e-3),
    families=(
        Family(
            "mlp",
            (Param("width", "int", 16, 512, log=True, default=64), Param("depth", "int", 1, 4, default=2)),
        ),
        Family("cnn", (Param("channels", "int", 4, 64, log=True, default=16),)),
    ),
    metrics=(("val_loss", "minimize"), ("val_accuracy", "maximize")),
    target="val_accuracy",
)


class DigitsDataset(Dataset):
    """Map-style: item ``i`` is (a float image tensor [1, 8, 8] in [0, 1], its label as an int)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.from_numpy(self.images[i]).unsqueeze(0), int(self.labels[i])


class Digits(Workload):
    """The digits, split into training and validation by a seeded permutation. The loss
    (cross-entropy), evaluation (``val_loss``, ``val_accuracy``) and optimizer (Adam or SGD from
    the config) are the ``Workload`` defaults."""

    info = DIGITS

    def __init__(self, seed: int = 0, val_fraction: float = 0.2) -> None:
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"`0 < val_fraction < 1` must hold, but got {val_fraction}")
        self.seed, self.val_fraction = seed, val_fraction
        self._split: tuple[DigitsDataset, DigitsDataset] | None = None
        self._digest = ""

    def _datasets(self) -> tuple[DigitsDataset, DigitsDataset]:
        if self._split is None:
            from sklearn.datasets import load_digits  # bundled with scikit-learn: no download

            d = load_digits()
            images = (d.images / 16.0).astype(np.float32)  # pixel values 0..16
            labels = d.target.astype(np.int64)
            order = np.random.default_rng(self.seed).permutation(len(labels))
            n_val = max(1, round(len(labels) * self.val_fraction))
            val, train = order[:n_val], order[n_val:]
            self._split = (
                DigitsDataset(images[train], labels[train]),
                DigitsDataset(images[val], labels[val]),
            )
            h = hashlib.sha256(images.tobytes() + labels.tobytes() + order.tobytes())
            self._digest = h.hexdigest()[:16]
        return self._split

    def train_dataset(self) -> DigitsDataset:
        return self._datasets()[0]

    def val_dataset(self) -> DigitsDataset:
        return self._datasets()[1]

    def fingerprint(self) -> str:
        """The data and its split, recorded with every run."""
        self._datasets()
        return self._digest

    def source(self) -> str:
        return f"sklearn.datasets.load_digits() split by seed {self.seed}, val_fraction {self.val_fraction}"

    def build(self, config: Config) -> nn.Module:
        if config.family == "mlp":
            return MLP(int(config.param("width", 64)), int(config.param("depth", 2)))
        if config.family == "cnn":
            return CNN(int(config.param("channels", 16)))
        raise ValueError(f"unknown digits family {config.family!r}: use mlp or cnn")


class MLP(nn.Module):
    def __init__(self, width: int, depth: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        for i in range(depth):
            layers += [nn.Linear(64 if i == 0 else width, width), nn.ReLU()]
        layers.append(nn.Linear(width if depth else 64, 10))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class CNN(nn.Module):
    """Two 3x3 convolutions (8x8, then 4x4 after pooling) and a linear head."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(channels * 4, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def make_workload(seed: int = 0, val_fraction: float = 0.2) -> Digits:
    """The factory a spec names (``workload.factory``); ``workload.args`` are its keywords."""
    return Digits(seed=seed, val_fraction=val_fraction)
