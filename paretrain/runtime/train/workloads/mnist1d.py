"""MNIST-1D, generated offline with ``mnist1d.data.make_dataset`` (never downloaded).

The generated arrays are cached as ``.npz`` (no pickle) under the cache folder, keyed by
size and seed. Models: an MLP, a 1-D CNN and a GRU, sized by the config's parameters.
"""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from paretrain.planner.inputs.space import Config
from paretrain.runtime.train.workloads.api import Workload
from paretrain.runtime.train.workloads.base import Data
from paretrain.runtime.train.workloads.info import MNIST1D_INFO

__all__ = ["Mnist1D", "generate"]


def generate(samples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """All ``samples`` MNIST-1D examples (x float32 [n, 40], y int64 [n]), shuffled by ``seed``."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = samples
    args.seed = seed
    args.train_split = 1.0
    # make_dataset reseeds Python's and NumPy's global generators; keep the caller's state.
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        d = make_dataset(args)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    return np.asarray(d["x"], dtype=np.float32), np.asarray(d["y"], dtype=np.int64)


class Mnist1D(Workload):
    """The MNIST-1D workload: seeded data with a validation split, and three model families
    (classification: the default loss and metrics of ``paretrain.runtime.train.workloads.api.Workload``)."""

    info = MNIST1D_INFO

    def __init__(
        self, samples: int = 10000, val_fraction: float = 0.1, seed: int = 0, cache_dir: Path | None = None
    ) -> None:
        self.samples, self.val_fraction, self.seed = samples, val_fraction, seed
        self.cache_dir = cache_dir
        self._data: Data | None = None

    def data(self) -> Data:
        if self._data is None:
            x, y = self._arrays()
            n_val = max(1, round(len(y) * self.val_fraction))
            digest = hashlib.sha256(x.tobytes() + y.tobytes()).hexdigest()[:16]
            self._data = Data(
                torch.from_numpy(x[n_val:].copy()),
                torch.from_numpy(y[n_val:].copy()),
                torch.from_numpy(x[:n_val].copy()),
                torch.from_numpy(y[:n_val].copy()),
                digest=digest,
            )
        return self._data

    def train_dataset(self) -> TensorDataset:
        d = self.data()
        return TensorDataset(d.x_train, d.y_train)

    def val_dataset(self) -> TensorDataset:
        d = self.data()
        return TensorDataset(d.x_val, d.y_val)

    def fingerprint(self) -> str:
        return self.data().digest

    def source(self) -> str:
        return f"mnist1d.data.make_dataset(num_samples={self.samples}, seed={self.seed})"

    def _arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if self.cache_dir is None:
            return generate(self.samples, self.seed)
        path = Path(self.cache_dir) / f"mnist1d-{self.samples}-{self.seed}.npz"
        if path.is_file():
            try:
                with np.load(path, allow_pickle=False) as f:
                    return f["x"], f["y"]
            except (OSError, ValueError, KeyError):
                pass  # a damaged cache file is regenerated below
        x, y = generate(self.samples, self.seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}.npz")
        np.savez(tmp, x=x, y=y)
        os.replace(tmp, path)
        return x, y

    def build(self, config: Config) -> nn.Module:
        p = dict(config.params)
        if config.family == "mlp":
            return MLP(40, int(p.get("width", 256)), int(p.get("depth", 2)), float(p.get("dropout", 0.0)))
        if config.family == "cnn":
            return CNN(
                int(p.get("channels", 32)),
                int(p.get("depth", 3)),
                int(p.get("kernel", 5)),
                float(p.get("dropout", 0.0)),
            )
        if config.family == "gru":
            return GRU(int(p.get("hidden", 64)), int(p.get("depth", 1)), float(p.get("dropout", 0.0)))
        raise ValueError(f"unknown MNIST-1D family {config.family!r}")


class MLP(nn.Module):
    def __init__(self, inputs: int, width: int, depth: int, dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [nn.Linear(inputs if i == 0 else width, width), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(width if depth else inputs, 10))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class CNN(nn.Module):
    """Strided 1-D convolutions, then a linear head (the MNIST-1D paper's ConvNet, sized)."""

    def __init__(self, channels: int, depth: int, kernel: int, dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        length = 40
        for i in range(depth):
            stride = 1 if i == 0 else 2
            layers += [
                nn.Conv1d(1 if i == 0 else channels, channels, kernel, stride=stride, padding=kernel // 2),
                nn.ReLU(),
            ]
            length = (length + 2 * (kernel // 2) - kernel) // stride + 1
        self.features = nn.Sequential(*layers)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(channels * length, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.features(x.unsqueeze(1)).flatten(1)))


class GRU(nn.Module):
    """A GRU reading the signal one point at a time; the last state classifies."""

    def __init__(self, hidden: int, depth: int, dropout: float) -> None:
        super().__init__()
        self.rnn = nn.GRU(
            1, hidden, num_layers=depth, batch_first=True, dropout=dropout if depth > 1 else 0.0
        )
        self.head = nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x.unsqueeze(-1))
        return self.head(out[:, -1])
