"""A small byte-level causal transformer (GPT-2 layout) and its optimizer and LR schedule.

Bytes (256 symbols) are embedded, learned positions added, then ``layers`` pre-norm blocks of
causal self-attention (``F.scaled_dot_product_attention(is_causal=True)``) and a 4x GELU MLP,
a final LayerNorm and a head onto the 256 bytes, tied to the embedding by default.

The logits come out as ``[batch, 256, time]``: torch's K-dimensional cross-entropy layout, so the
loss of a batch is ``F.cross_entropy(model(x), y)`` exactly as for a classifier (and ``argmax(1)``
is the predicted next byte).

A sequence longer than the model's ``context`` is cut into ``context``-long pieces that are
read independently (its length must then be a multiple of ``context``): one stream of training
windows serves every context length in the search space.

>>> import torch
>>> model = GPT(GPTConfig(layers=2, width=64, heads=2, context=32))
>>> model(torch.zeros(3, 64, dtype=torch.long)).shape
torch.Size([3, 256, 64])
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["GPT", "VOCAB", "GPTConfig", "adamw", "warmup_cosine", "warmup_cosine_schedule"]

VOCAB = 256


@dataclass(frozen=True, slots=True)
class GPTConfig:
    """The architecture of one ``GPT``."""

    layers: int = 2
    width: int = 64
    heads: int = 2
    context: int = 64
    dropout: float = 0.0
    tied: bool = True

    def __post_init__(self) -> None:
        for name in ("layers", "width", "heads", "context"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"`{name} >= 1` must hold, but got {name}={getattr(self, name)}")
        if self.width % self.heads:
            raise ValueError(
                f"`width % heads == 0` must hold, but got (width={self.width}, "
                f"heads={self.heads}); pick heads dividing the width"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"`0 <= dropout < 1` must hold, but got dropout={self.dropout}")


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.heads, self.dropout = cfg.heads, cfg.dropout
        self.qkv = nn.Linear(cfg.width, 3 * cfg.width)
        self.proj = nn.Linear(cfg.width, cfg.width)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = (
            z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in self.qkv(x).split(c, dim=2)
        )
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True
        )
        return self.drop(self.proj(y.transpose(1, 2).reshape(b, t, c)))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.width)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.width)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.width, 4 * cfg.width),
            nn.GELU(),
            nn.Linear(4 * cfg.width, cfg.width),
            nn.Dropout(cfg.dropout),
        )

    def residual_projections(self) -> tuple[nn.Linear, nn.Linear]:
        """The layers that write into the residual stream: attention's and the MLP's output."""
        out = self.mlp[2]
        if not isinstance(out, nn.Linear):
            raise TypeError(f"the MLP's third layer is the output Linear, not {type(out).__name__}")
        return self.attn.proj, out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """Byte-level causal transformer: ``[batch, time]`` bytes -> ``[batch, 256, time]`` logits."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tok = nn.Embedding(VOCAB, cfg.width)
        self.pos = nn.Embedding(cfg.context, cfg.width)
        self.drop = nn.Dropout(cfg.dropout)
        blocks = [Block(cfg) for _ in range(cfg.layers)]
        self.blocks = nn.ModuleList(blocks)
        self.ln_f = nn.LayerNorm(cfg.width)
        self.head = nn.Linear(cfg.width, VOCAB, bias=False)
        self.apply(self._init)
        # GPT-2: residual projections scaled so the residual stream's variance does not grow
        # with depth.
        for block in blocks:
            for proj in block.residual_projections():
                nn.init.normal_(proj.weight, std=0.02 / math.sqrt(2 * cfg.layers))
        if cfg.tied:
            self.head.weight = self.tok.weight

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    @property
    def context(self) -> int:
        return self.cfg.context

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        b, t = idx.shape
        c = self.cfg.context
        if t > c:
            if t % c:
                raise ValueError(
                    f"a sequence longer than the context must be a multiple of it, "
                    f"but got length {t} for context {c}"
                )
            return (
                self.forward(idx.reshape(b * t // c, c))
                .view(b, t // c, VOCAB, c)
                .permute(0, 2, 1, 3)
                .reshape(b, VOCAB, t)
            )
        x = self.drop(self.tok(idx.long()) + self.pos.weight[:t])
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x)).transpose(1, 2)


def adamw(
    model: nn.Module, lr: float, weight_decay: float = 0.0, betas: tuple[float, float] = (0.9, 0.95)
) -> torch.optim.AdamW:
    """AdamW decaying only matrices (weights, embeddings), never biases or LayerNorm gains."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    rest = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}],
        lr=lr,
        betas=betas,
    )


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, floor: float = 0.1) -> float:
    """The LR multiplier at ``step``: linear from 1/(warmup+1) up to 1 over ``warmup_steps``,
    then cosine down to ``floor`` at ``total_steps`` (and ``floor`` after it).

    >>> [round(warmup_cosine(s, 10, 2), 3) for s in (0, 1, 2, 6, 10, 20)]
    [0.333, 0.667, 1.0, 0.55, 0.1, 0.1]
    """
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_cosine_schedule(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int, floor: float = 0.1
) -> torch.optim.lr_scheduler.LambdaLR:
    """``warmup_cosine`` as a scheduler: call ``.step()`` after each ``optimizer.step()``."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: warmup_cosine(s, total_steps, warmup_steps, floor)
    )
