"""The training loop shared by profiling bursts, convergence runs, search trials and plans.

A ``Trainer`` owns one model, its optimizer and a seeded, resumable stream of batches. Its
whole state (model, optimizer, RNGs, data position, batch size) round-trips through
``state_dict``/``load_state_dict`` using tensors and plain values only, so a checkpoint
loads with ``torch.load(weights_only=True)``.

>>> from paretrain.planner.inputs.space import Config                       # doctest: +SKIP
>>> t = Trainer(workload, Config("m", "mlp"), batch_size=32)  # doctest: +SKIP
>>> loss = t.step(); acc = t.evaluate().value               # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from paretrain.planner.inputs.metric import ACCURACY, Metric
from paretrain.planner.inputs.space import Config
from paretrain.runtime.train.batches import BatchStream, eval_batches
from paretrain.runtime.train.dry_check import NamedFault, WorkloadError, metric_values, raised
from paretrain.runtime.train.process_setup import keep_freed_memory, set_threads, warm_up_torch
from paretrain.runtime.train.workloads.api import member

__all__ = [
    "EVAL_CHUNK",
    "Evaluation",
    "Trainer",
    "autocast",
    "estimate_peak_bytes",
    # re-exported from paretrain.runtime.train.process_setup, for the runs that import them here
    "keep_freed_memory",
    "set_threads",
    "warm_up_torch",
]

#: samples an evaluation reads at a time (``Trainer.evaluate``)
EVAL_CHUNK = 512


@dataclass(frozen=True, slots=True)
class Evaluation:
    """Named validation metrics, the target metric's value and how long the evaluation took."""

    metrics: Mapping[str, float]
    seconds: float
    metric: Metric = ACCURACY

    @property
    def value(self) -> float:
        """The target metric's value, in its own units."""
        return float(self.metrics.get(self.metric.name, math.nan))

    @property
    def score(self) -> float:
        """The target metric as a score: higher is better, whatever its direction."""
        return self.metric.score(self.value)

    @property
    def loss(self) -> float:
        return float(self.metrics.get("val_loss", math.nan))


def autocast(device: str, precision: str) -> contextlib.AbstractContextManager[Any]:
    """Mixed precision for ``bf16`` and ``fp16`` (fp16 steps also scale the loss, on CPU as on
    CUDA: ``Trainer.scaler``); ``fp32`` runs as is."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda" if device.startswith("cuda") else "cpu", dtype=dtype)


class Trainer:
    """One model training on one workload, batch by batch."""

    def __init__(
        self,
        workload: Any,
        config: Config,
        *,
        batch_size: int = 32,
        precision: str = "fp32",
        device: str = "cpu",
        seed: int = 0,
        warmup_steps: int = 0,
        metric: Metric | None = None,
        loader_workers: int = 0,
    ) -> None:
        keep_freed_memory()
        self.workload, self.config, self.precision, self.device, self.seed = (
            workload,
            config,
            precision,
            device,
            seed,
        )
        info = workload.info
        self.metric = metric or Metric(info.target, info.direction(info.target) or "maximize")
        self.loader_workers = loader_workers
        self.stream = BatchStream(workload.train_dataset(), seed=seed, device=device, workers=loader_workers)
        val = workload.val_dataset()
        if isinstance(val, TensorDataset):
            val = TensorDataset(*(t.to(device) for t in val.tensors))
        self.val_dataset = val
        self._loss = member(workload, "loss")
        self._evaluate = member(workload, "evaluate")
        torch.manual_seed(seed)
        self.model: nn.Module = workload.build(config).to(device)
        self.optimizer = self._make_optimizer()
        self.scaler = (
            torch.amp.GradScaler("cuda" if device.startswith("cuda") else "cpu")
            if precision == "fp16"
            else None
        )
        self.batch_size = 0
        self.samples_seen = 0
        self.steps = 0
        self._warmup_left = 0
        self._warmup_total = 0
        self._lr_target = config.lr
        self.lr_scale = 1.0  # halved after a divergence (``scale_lr``); kept across batch sizes
        self.set_batch_size(batch_size, warmup_steps=warmup_steps)

    def _make_optimizer(self) -> torch.optim.Optimizer:
        """The workload's own optimizer, else Adam (or SGD with momentum) from the config."""
        made = member(self.workload, "optimizer")(self.model, self.config)
        if made is not None:
            return made
        c = self.config
        if c.optimizer == "sgd":
            return torch.optim.SGD(
                self.model.parameters(), lr=c.lr, momentum=0.9, weight_decay=c.weight_decay
            )
        return torch.optim.Adam(self.model.parameters(), lr=c.lr, weight_decay=c.weight_decay)

    @property
    def train_size(self) -> int:
        """Samples in the training set (0 for an iterable dataset of unknown length)."""
        return self.stream.size

    # -- knobs ---------------------------------------------------------------------------
    def set_batch_size(self, batch_size: int, warmup_steps: int = 0) -> None:
        """Switch batch size; the learning rate follows the config's scaling rule."""
        if batch_size < 1:
            raise ValueError(f"`batch_size >= 1` must hold, but got {batch_size}")
        if self.train_size and batch_size > self.train_size:
            raise ValueError(f"batch size {batch_size} exceeds the {self.train_size} training samples")
        if self.batch_size and batch_size != self.batch_size:
            self._rescale_second_moments(self.batch_size / batch_size)
        self.batch_size = batch_size
        self.stream.invalidate()
        self._lr_target = self.config.lr_at(batch_size) * self.lr_scale
        self._warmup_total = self._warmup_left = warmup_steps
        self._apply_lr()

    def _rescale_second_moments(self, ratio: float) -> None:
        """Scale Adam's second-moment estimates by ``ratio`` = old batch / new batch.

        They average the squared gradient, which below the noise scale is mostly noise, and
        noise falls as 1/B. Left alone after a move to a larger batch they overstate it for
        about 1/(1 - beta2) = 1,000 steps, which shrinks every update by the square root of the
        batch ratio and cancels the square-root learning-rate rule. Measured on the
        fidelity spec's CNN (benchmarks/specs/fidelity.yaml): 64 -> 256 at 72k samples reached
        93% at 296k samples without this and 216k with it; a fixed batch of 256 needs 216k.
        """
        for state in self.optimizer.state.values():
            v = state.get("exp_avg_sq")
            if v is not None:
                v.mul_(ratio)

    def _apply_lr(self) -> None:
        lr = self._lr_target
        if self._warmup_left > 0:
            done = self._warmup_total - self._warmup_left + 1
            lr = self._lr_target * done / (self._warmup_total + 1)
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def scale_lr(self, factor: float) -> None:
        """Multiply the learning rate by ``factor`` from now on (a divergence halves it)."""
        self.lr_scale *= factor
        self._lr_target *= factor
        self._apply_lr()

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    # -- work ----------------------------------------------------------------------------
    def step(self) -> float:
        """One optimizer step on the next batch; returns the training loss (which may be
        non-finite: the caller decides what a divergence means). What the workload's data,
        model or ``loss`` raise comes out as a ``WorkloadError`` naming it."""
        try:
            batch = self._next_batch()
        except (WorkloadError, NamedFault):
            raise  # named already
        except Exception as err:  # a user's dataset: named, never an internal error
            raise self._fault("train_dataset()", "a training batch", err) from err
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        try:
            with autocast(self.device, self.precision):
                loss = self._loss(self.model, batch)
            if self.scaler is not None:  # fp16: scaled gradients, no underflow
                self.scaler.scale(loss).backward()
            else:
                loss.backward()
        except (torch.OutOfMemoryError, WorkloadError, NamedFault):
            raise  # not the workload's fault (the run halves the batch), or named already
        except Exception as err:
            raise self._fault(f"loss(model {self.config.id!r}, a batch)", "the loss", err) from err
        value = self._reduce(loss.detach())
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        if self._warmup_left > 0:
            self._warmup_left -= 1
            self._apply_lr()
        self.samples_seen += self.batch_size
        self.steps += 1
        return value

    def _fault(self, what: str, fix: str, err: BaseException) -> WorkloadError:
        got = raised(err, f" at step {self.steps + 1}")
        return WorkloadError(self.workload.info.name, what, got, f"make {fix} work at this step")

    def _next_batch(self) -> Any:
        return self.stream.next(self.batch_size)

    # Data-parallel hooks (paretrain.runtime.train.parallel, whose replicas read their share of each global
    # batch): the gradients averaged over the workers. One process does the whole batch.
    def _shard(self, idx: torch.Tensor) -> torch.Tensor:
        return idx

    def _reduce(self, loss: torch.Tensor) -> float:
        return float(loss)

    def steps_for(self, samples: int) -> Iterator[float]:
        """Steps until ``samples`` more samples have been seen (at least one step)."""
        goal = self.samples_seen + max(samples, 1)
        while self.samples_seen < goal:
            yield self.step()

    @torch.no_grad()
    def evaluate(self, chunk: int = EVAL_CHUNK, val: Dataset | None = None) -> Evaluation:
        """The workload's metrics on the validation set (or on ``val``, a part of it such as
        ``paretrain.runtime.train.batches.head``), read ``chunk`` samples at a time.

        Small chunks keep each activation buffer to a few MiB. With 4,096-sample chunks (20 MiB
        buffers for the 32-channel CNN) the time of one evaluation depended on the process's
        allocation history: 31-35 ms in some fresh processes, 59-81 ms in others on the same
        machine, which made the plan's evaluation time a coin toss. With 512 it stays at 31-36 ms.
        """
        t0 = time.perf_counter()
        was_training = self.model.training
        self.model.eval()
        try:
            with autocast(self.device, self.precision):
                data = self.val_dataset if val is None else val
                batches = eval_batches(data, self.device, chunk, self.loader_workers)
                try:
                    metrics = self._evaluate(self.model, batches)
                except (WorkloadError, NamedFault):
                    raise  # named already
                except Exception as err:  # a user's evaluate() or validation data: named
                    raise self._fault(f"evaluate(model {self.config.id!r})", "evaluate()", err) from err
        finally:
            self.model.train(was_training)
        values = metric_values(
            metrics, self.workload.info.name, f"evaluate(model {self.config.id!r})", f" at step {self.steps}"
        )
        return Evaluation(values, time.perf_counter() - t0, self.metric)

    def grad_sq_norm(self, batch_size: int) -> float:
        """|g|^2 of the mean gradient over a fresh batch of ``batch_size`` (no step taken)."""
        if self.stream.iterable:
            batch = self.stream.first(batch_size)
        else:
            batch = self.stream.fetch(self.stream.random_indices(batch_size, self.steps + batch_size))
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device, self.precision):
            loss = self._loss(self.model, batch)
        loss.backward()
        total = 0.0
        for p in self.model.parameters():
            if p.grad is not None:
                total += float(p.grad.detach().float().pow(2).sum())
        self.optimizer.zero_grad(set_to_none=True)
        return total

    def example_inputs(self, n: int = 1) -> Any:
        """What the model takes for ``n`` samples (the inference-latency probe)."""
        return member(self.workload, "inputs")(self.stream.first(n))

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    # -- state ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "position": torch.tensor(
                [
                    *self.stream.position(),
                    self.samples_seen,
                    self.steps,
                    self.batch_size,
                    self._warmup_left,
                    self._warmup_total,
                ],
                dtype=torch.int64,
            ),
            "lr_target": torch.tensor([self._lr_target, self.lr_scale], dtype=torch.float64),
            **({"scaler": self.scaler.state_dict()} if self.scaler is not None else {}),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        (
            epoch,
            cursor,
            self.samples_seen,
            self.steps,
            self.batch_size,
            self._warmup_left,
            self._warmup_total,
        ) = (int(v) for v in state["position"].tolist())
        self.stream.restore(epoch, cursor)
        self._lr_target = float(state["lr_target"][0])
        self.lr_scale = float(state["lr_target"][1]) if len(state["lr_target"]) > 1 else 1.0
        self._apply_lr()
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])


def estimate_peak_bytes(trainer: Trainer, batch_size: int) -> int:
    """Peak training memory of one step: parameters, gradients, optimizer state, activations.

    On CUDA this is the allocator's measured peak. On CPU, torch keeps no allocator statistics,
    so the activations of a real forward pass are summed with hooks (kept for backward, so
    counted twice) on top of the exact tensor sizes of weights, gradients and optimizer state.
    """
    if trainer.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(trainer.device)
        saved = trainer.batch_size
        trainer.batch_size = batch_size
        trainer.step()
        trainer.batch_size = saved
        return int(torch.cuda.max_memory_allocated(trainer.device))
    acts = 0

    def hook(_m: nn.Module, _i: Any, out: Any) -> None:
        nonlocal acts
        for t in out if isinstance(out, tuple) else (out,):
            if isinstance(t, torch.Tensor):
                acts += t.numel() * t.element_size()

    batch = trainer.stream.first(batch_size)
    handles = [m.register_forward_hook(hook) for m in trainer.model.modules()]
    try:
        with torch.no_grad(), autocast(trainer.device, trainer.precision):
            trainer.model(member(trainer.workload, "inputs")(batch))
    finally:
        for h in handles:
            h.remove()
    weights = sum(p.numel() * p.element_size() for p in trainer.model.parameters())
    slots = 2 if trainer.config.optimizer == "adam" else 1
    data = sum(t.numel() * t.element_size() for t in _tensors(batch))
    return int(weights * (2 + slots) + 2 * acts + data)


def _tensors(batch: Any) -> list[torch.Tensor]:
    if isinstance(batch, torch.Tensor):
        return [batch]
    if isinstance(batch, (list, tuple)):
        return [t for b in batch for t in _tensors(b)]
    if isinstance(batch, dict):
        return [t for b in batch.values() for t in _tensors(b)]
    return []
