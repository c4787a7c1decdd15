"""A tiny user workload file for the trial-fault tests, and a search spec that names it.

``make_workload(mode=...)`` picks the fault: ``nan`` (the loss turns NaN at the sixth step once
width > 32),
``nan_metric`` (val_accuracy NaN for width > 32), ``build`` (build raises for width > 32),
``build_all`` (build always raises), ``loader`` (one training sample raises), ``evaluate``
(evaluate raises), ``slow`` and ``stall`` (every step sleeps 0.05 s or 2 s, for the signal tests), ``ok``.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.conftest import small_spec

STUDY = "faults"

SOURCE = """
import math
import time

import torch
from torch import nn
from paretrain.workload import Family, Param, TensorDataset, Workload, WorkloadInfo


class Bad(torch.utils.data.Dataset):
    def __init__(self, base):
        self.base = base

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        if i == 7:
            raise KeyError(f"sample {i} is missing")
        return self.base[i]


class W(Workload):
    info = WorkloadInfo(
        name="tiny",
        families=(Family("mlp", (Param("width", "int", 4, 64, default=8),)),),
        lr=Param("lr", "float", 1e-3, 1e-1, log=True, default=1e-2),
        metrics=(("val_loss", "minimize"), ("val_accuracy", "maximize")),
        target="val_accuracy",
    )

    def __init__(self, mode):
        self.mode = mode

    def _data(self, n, seed):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(n, 6, generator=g)
        return TensorDataset(x, (x[:, 0] > 0).long())

    def train_dataset(self):
        data = self._data(64, 0)
        return Bad(data) if self.mode == "loader" else data

    def val_dataset(self):
        return self._data(32, 1)

    def build(self, config):
        width = config.param("width")
        if self.mode == "build_all" or (self.mode == "build" and width > 32):
            raise ValueError(f"width {width} does not fit")
        model = nn.Sequential(nn.Linear(6, width), nn.ReLU(), nn.Linear(width, 2))
        model.width, model.steps = width, 0
        return model

    def loss(self, model, batch):
        if self.mode in ("slow", "stall"):
            time.sleep(0.05 if self.mode == "slow" else 2.0)
        x, y = batch
        loss = nn.functional.cross_entropy(model(x), y)
        model.steps += 1
        if self.mode == "nan" and model.width > 32 and model.steps > 5:
            return loss * math.nan
        return loss

    def evaluate(self, model, batches):
        if self.mode == "evaluate":
            raise RuntimeError("the validation set is gone")
        out = super().evaluate(model, batches)
        if self.mode == "nan_metric" and model.width > 32:
            out["val_accuracy"] = math.nan
        return out


def make_workload(mode="ok"):
    return W(mode)
"""


def write_search(folder: Path, mode: str, *, trials: int = 4, trial_samples: int = 256) -> Path:
    """The workload file and ``spec.yaml`` of a search over widths 4..64 in ``folder``."""
    (folder / "tiny_workload.py").write_text(SOURCE)
    data = small_spec(
        name=STUDY,
        workload={"name": f"file:{folder / 'tiny_workload.py'}:make_workload", "args": {"mode": mode}},
        configs=[],
        search={
            "trials": trials,
            "trial_samples": trial_samples,
            "seed": 3,
            "front": 2,
            "storage": f"sqlite:///{folder / 'study.db'}",
            "space": {"families": ["mlp"], "mlp": {"width": [4, 64]}},
        },
        budget={"total_usd": 0.01, "envelopes": {"profile": 0.003, "search": 0.003, "train": 0.003}},
        target={"goal": 0.6, "levels": [0.6], "max_samples": 512},
        runtime={"eval_every_samples": 64},
    )
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
