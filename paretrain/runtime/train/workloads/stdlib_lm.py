"""The byte-level language-model workload: a small GPT on this Python's standard-library source.

Pieces, each usable on its own: the corpus and its window datasets (``stdlib_corpus``), the
model and its optimizer and schedule (``gpt``), and here the loss of a batch (``lm_loss``),
the evaluation (``evaluate``: ``val_loss`` in nats per byte and ``val_bpb``, bits per byte,
the target, minimized) and ``StdlibLM``, which binds them to the workload's declaration
(``STDLIB_LM_INFO``) and also offers the current ``Workload`` shape

Defaults, from ``benchmarks/lm_throughput.py`` on a 2-core CPU (one AdamW step, kilobytes of
text per second at 1 / 4 / 16 / 32 / 64 sequences per batch; load average 0.7 when it started;
``benchmarks/results/lm_throughput.json``):

    model (width x layers, context)  params  2 threads                    1 thread
    64 x 2, 64                       121k    26 / 64 / 104 / 115 / 126    32 / 61 / 75 / 82 / 84
    64 x 2, 128                      125k    40 / 75 / 103 / 113 / 115    44 / 62 / 73 / 76 / 75
    128 x 2, 64                      438k    16 / 31 / 43 / 48 / 49       15 / 23 / 29 / 29 / 30
    128 x 4, 128                     842k    11 / 19 / 23 / 24 / 24        9 / 13 / 14 / 14 / 14

The default model is 64 wide, 2 layers, 2 heads, context 64 (``STDLIB_LM_INFO``'s defaults),
and the windows are 64 bytes, so a batch of B windows is B sequences. It is the model whose
throughput grows the most and the longest with the batch: 4.8x from 1 to 64 sequences on two
threads (2.7x on one), against 2.9x (1.7x) for context 128 and 2.1x (1.5x) for the 842k model,
which is flat beyond 16. That growth is what lets a schedule that grows the batch during
training pay on a CPU. Batch range: 1 to 32 sequences, where each doubling still adds at least
9% (16 -> 32: +11% on two threads, +9% on one; 32 -> 64: +10% and +3%). Longer contexts are
left out of the search space (context 16, 32 or 64) because they stop growing earlier. Making
the batches costs 0.3 ms per 64 windows, about 1% of a step. Roughly 1,500 steps of 16
windows (1.5 MB of text, 42 s on one thread) take the default model from 7.8 to 2.5 bits per
byte at learning rate 3e-3.

The learning rate is constant (AdamW at the config's ``lr``, no schedule that depends on the
run's length; ``gpt.warmup_cosine`` is there for a user who wants one). So a truncated profile
run (``planner.convergence: truncated``) is the beginning of the real run, step for step, and
the samples its learning curve predicts hold for the run's own schedule; a run may start from
its checkpoint. A workload whose schedule decays over the planned samples would make a truncated
run train faster early than the run does; such a workload should plan with
``planner.convergence: full``.

>>> wl = StdlibLM(max_bytes=200_000)                                   # doctest: +SKIP
>>> model = wl.build(Config("g", "gpt", (("layers", 2), ("width", 64))))  # doctest: +SKIP
>>> loader = torch.utils.data.DataLoader(wl.val_dataset(), batch_size=64)  # doctest: +SKIP
>>> wl.evaluate(model, loader)["val_bpb"]                              # doctest: +SKIP
8.0...
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from paretrain.planner.inputs.space import Config
from paretrain.runtime.train.workloads.gpt import GPT, GPTConfig, adamw
from paretrain.runtime.train.workloads.info import STDLIB_LM_INFO, STDLIB_LM_SEQUENCE
from paretrain.runtime.train.workloads.stdlib_corpus import Corpus, TrainWindows, ValWindows, load_corpus

__all__ = [
    "TARGET_DIRECTION",
    "TARGET_METRIC",
    "StdlibLM",
    "bits_per_byte",
    "build_model",
    "evaluate",
    "gpt_config",
    "lm_loss",
]

TARGET_METRIC = "val_bpb"
TARGET_DIRECTION = "minimize"
# 256 windows of 128 bytes: 32 KiB of validation text, spread over the whole split; about
# 0.1-0.3 s per evaluation for the default model on one CPU thread.
VAL_WINDOWS = 256


def bits_per_byte(nats_per_byte: float) -> float:
    """Cross-entropy in nats per byte -> bits per byte (ln 256 nats = 8 bits: a uniform guess)."""
    return nats_per_byte / math.log(2)


def gpt_config(config: Config) -> GPTConfig:
    """The architecture a ``gpt`` config names (missing parameters take the declared defaults)."""
    if config.family != "gpt":
        raise ValueError(f"the stdlib_lm workload has one family, gpt, but got {config.family!r}")
    family = STDLIB_LM_INFO.family("gpt")
    p = {q.name: config.param(q.name, q.default) for q in family.params}
    return GPTConfig(
        layers=int(p["layers"]),
        width=int(p["width"]),
        heads=int(p["heads"]),
        context=int(p["context"]),
        dropout=float(p["dropout"]),
        tied=bool(p["tied"]),
    )


def build_model(config: Config) -> GPT:
    """A freshly initialized ``GPT`` for ``config`` (seed torch's generator first for repeats)."""
    return GPT(gpt_config(config))


def lm_loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Mean cross-entropy of the next byte, in nats per byte, over a batch of (input, target)."""
    x, y = batch
    return F.cross_entropy(model(x), y)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: str | torch.device | None = None,
) -> dict[str, float]:
    """``val_loss`` (nats per byte) and ``val_bpb`` (bits per byte) over every byte ``loader`` gives."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for x, y in loader:
            if device is not None:
                x, y = x.to(device), y.to(device)
            total += float(F.cross_entropy(model(x).float(), y, reduction="sum"))
            count += y.numel()
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("the evaluation loader gave no bytes; check the validation dataset")
    return {"val_loss": total / count, "val_bpb": bits_per_byte(total / count)}


class StdlibLM:
    """The workload: corpus, datasets of ``sequence``-byte windows, ``gpt`` models, metrics.

    ``max_bytes`` caps the corpus (whole files in sorted order); ``seed`` fixes the training
    windows; ``val_windows`` bounds an evaluation (``None``: every validation window).
    """

    info = STDLIB_LM_INFO
    target_metric = TARGET_METRIC
    target_direction = TARGET_DIRECTION

    def __init__(
        self,
        sequence: int = STDLIB_LM_SEQUENCE,
        max_bytes: int | None = None,
        seed: int = 0,
        val_windows: int | None = VAL_WINDOWS,
        cache_dir: Path | None = None,
    ) -> None:
        self.sequence, self.max_bytes, self.seed = sequence, max_bytes, seed
        self.val_windows, self.cache_dir = val_windows, cache_dir
        self._corpus: Corpus | None = None

    def corpus(self) -> Corpus:
        if self._corpus is None:
            self._corpus = load_corpus(self.max_bytes, self.cache_dir)
        return self._corpus

    def fingerprint(self) -> str:
        return self.corpus().fingerprint

    def source(self) -> str:
        c = self.corpus()
        return (
            f"stdlib source of this Python ({c.files} files, {c.nbytes} bytes, corpus {c.fingerprint[:16]})"
        )

    def train_dataset(self) -> TrainWindows:
        return TrainWindows(self.corpus().train, self.sequence, seed=self.seed)

    def val_dataset(self) -> ValWindows:
        return ValWindows(self.corpus().val, self.sequence, limit=self.val_windows)

    def build(self, config: Config) -> GPT:
        return build_model(config)

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return lm_loss(model, batch)

    def evaluate(
        self,
        model: nn.Module,
        loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
        device: str | torch.device | None = None,
    ) -> dict[str, float]:
        return evaluate(model, loader, device)

    def inputs(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return batch[0]

    def optimizer(self, model: nn.Module, config: Config) -> torch.optim.Optimizer:
        return adamw(model, config.lr, weight_decay=config.weight_decay)
