"""Seeded, resumable batches from a workload's datasets.

Map-style datasets are read through a permutation of the whole set per epoch, seeded by the
run's seed and the epoch, in full batches (the ragged tail of an epoch is dropped, so every step
sees a full batch); the position (epoch, cursor) is part of a checkpoint, so a resume takes
exactly the batches the run would have taken. A ``TensorDataset`` is indexed directly on the
training device (no loader: this is how the built-in MNIST-1D trains, fastest); any other
map-style dataset goes through a ``DataLoader`` (``runtime.loader_workers`` worker processes,
pinned memory on a GPU) fed by the same index batches. An ``IterableDataset`` is read in its
own order, restarted at its end; a resume skips the items already read in the epoch.
Fetching a batch happens inside the timed step, so the profile measures the loader too and an
input-bound run is predicted as one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Subset, TensorDataset
from torch.utils.data._utils.collate import default_collate

__all__ = ["BatchStream", "drawn", "eval_batches", "head", "to_device"]


def to_device(batch: Any, device: str) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch


#: A place in the stream: (epoch, samples into it).
Position = tuple[int, int]


def _length(dataset: Dataset) -> int:
    """The samples in a map-style dataset, which must say (``__len__``)."""
    if not isinstance(dataset, Sized):
        raise ValueError(
            f"the training dataset ({type(dataset).__name__}) has no __len__. To fix: define "
            "__len__ on it, or make it an IterableDataset"
        )
    return len(dataset)


class _Tagged(Dataset):
    """Items of ``inner`` fetched by (tag, index) keys, so a batch carries the stream position
    it was cut at through a DataLoader's workers."""

    def __init__(self, inner: Dataset, size: int) -> None:
        self.inner, self.size = inner, size

    def __getitem__(self, key: tuple[Position, int]) -> tuple[Position, Any]:
        return key[0], self.inner[key[1]]

    def __len__(self) -> int:
        return self.size


def _collate_tagged(items: list[tuple[Position, Any]]) -> tuple[Position, Any]:
    return items[0][0], default_collate([it for _, it in items])


def _permutation(size: int, seed: int, epoch: int) -> torch.Tensor:
    """The order of epoch ``epoch``: a permutation of ``size`` indices seeded by (seed, epoch)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(size, generator=g)


class _Sampler:
    """Index batches of ``b`` from position (epoch, cursor) on, each index tagged with the
    position after its batch (the DataLoader path of ``BatchStream``)."""

    def __init__(self, size: int, seed: int, b: int, epoch: int, cursor: int) -> None:
        self.size, self.seed, self.b, self.epoch, self.cursor = size, seed, b, epoch, cursor

    def __iter__(self) -> Iterator[list[tuple[Position, int]]]:
        epoch, cursor, b = self.epoch, self.cursor, self.b
        perm = _permutation(self.size, self.seed, epoch)
        while True:
            if cursor + b > self.size:
                epoch, cursor = epoch + 1, 0
                perm = _permutation(self.size, self.seed, epoch)
            idx = perm[cursor : cursor + b].tolist()
            cursor += b
            yield [((epoch, cursor), i) for i in idx]


class BatchStream:
    """Batches of a training dataset, in a seeded order that survives a resume exactly."""

    def __init__(self, dataset: Dataset, *, seed: int, device: str, workers: int = 0) -> None:
        self.dataset, self.seed, self.device, self.workers = dataset, seed, device, workers
        self.iterable = isinstance(dataset, IterableDataset)
        self.tensors = (
            tuple(t.to(device) for t in dataset.tensors) if isinstance(dataset, TensorDataset) else None
        )
        self.size = 0 if self.iterable else _length(dataset)
        if not self.iterable and self.size < 1:
            raise ValueError("the training dataset is empty")
        self.epoch = self.cursor = 0
        self.perm = self._permutation(0)
        self._iter: Iterator[Any] | None = None
        self._loader: Iterator[tuple[Position, Any]] | None = None
        self._loader_batch = 0

    # -- order ---------------------------------------------------------------------------------
    def _permutation(self, epoch: int) -> torch.Tensor:
        if self.iterable:
            return torch.empty(0, dtype=torch.int64)
        return _permutation(self.size, self.seed, epoch)

    def next_indices(self, b: int) -> torch.Tensor:
        if self.cursor + b > self.size:  # drop the ragged tail: every step sees a full batch
            self.epoch += 1
            self.cursor = 0
            self.perm = self._permutation(self.epoch)
        idx = self.perm[self.cursor : self.cursor + b]
        self.cursor += b
        return idx

    def random_indices(self, b: int, salt: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 7919 + salt)
        return torch.randint(0, max(self.size, 1), (b,), generator=g)

    # -- batches -------------------------------------------------------------------------------
    def fetch(self, idx: torch.Tensor) -> Any:
        """The batch of these dataset indices, on the device."""
        if self.tensors is not None:
            i = idx.to(self.tensors[0].device)
            return tuple(t[i] for t in self.tensors)
        return to_device(default_collate([self.dataset[int(i)] for i in idx.tolist()]), self.device)

    def next(self, b: int, shard: Any = None) -> Any:
        """The next batch of ``b`` samples (``shard`` picks this process's part of the indices)."""
        if self.iterable:
            return self._next_iterable(b)
        if self.workers > 0 and self.tensors is None and shard is None:
            return self._next_loaded(b)
        idx = self.next_indices(b)
        return self.fetch(shard(idx) if shard is not None else idx)

    def _next_iterable(self, b: int) -> Any:
        items: list[Any] = []
        restarts = 0
        while len(items) < b:
            if self._iter is None:
                self._iter = iter(self.dataset)
            try:
                items.append(next(self._iter))
                self.cursor += 1
                restarts = 0
            except StopIteration:
                self._iter, self.epoch, self.cursor = None, self.epoch + 1, 0
                restarts += 1
                if restarts > 1:
                    raise ValueError("the training dataset gives no items") from None
        return to_device(default_collate(items), self.device)

    def _next_loaded(self, b: int) -> Any:
        if self._loader is None or self._loader_batch != b:
            self._loader = iter(self._make_loader(b))
            self._loader_batch = b
        (self.epoch, self.cursor), batch = next(self._loader)
        return to_device(batch, self.device)

    def _make_loader(self, b: int) -> DataLoader:
        # The sampler holds plain values, not the stream: a stream -> loader -> sampler ->
        # stream cycle left the loader to the cycle collector, which runs queues' finalizers
        # before the loader's own, so its workers never got the stop sentinel and each was
        # waited for 5 s (10 s per dropped stream with two workers).
        sampler = _Sampler(self.size, self.seed, b, self.epoch, self.cursor)
        return DataLoader(
            _Tagged(self.dataset, self.size),
            batch_sampler=sampler,
            num_workers=self.workers,
            collate_fn=_collate_tagged,
            pin_memory=self.device.startswith("cuda"),
            persistent_workers=False,
        )

    def first(self, n: int) -> Any:
        """The first ``n`` samples of the dataset (for memory and latency probes)."""
        if self.tensors is not None:
            return tuple(t[:n] for t in self.tensors)
        if self.iterable:
            it = iter(self.dataset)
            return to_device(default_collate([next(it) for _ in range(n)]), self.device)
        return self.fetch(torch.arange(min(n, self.size)))

    # -- state ---------------------------------------------------------------------------------
    def position(self) -> tuple[int, int]:
        return self.epoch, self.cursor

    def restore(self, epoch: int, cursor: int) -> None:
        self.epoch, self.cursor = epoch, cursor
        self.perm = self._permutation(epoch)
        self._loader = None
        if self.iterable:  # read the epoch again up to where it was
            self._iter = iter(self.dataset)
            for _ in range(cursor):
                next(self._iter)

    def invalidate(self) -> None:
        """The batch size changed: a loader's prefetched batches are for the old one."""
        self._loader = None

    @property
    def restarts_on_switch(self) -> bool:
        """Whether the first batch after a switch of batch size starts a ``DataLoader`` again (its
        worker processes included): tensors indexed on the device and an iterable dataset's
        iterator go on as they were."""
        return self.workers > 0 and self.tensors is None and not self.iterable


def eval_batches(dataset: Dataset, device: str, chunk: int, workers: int = 0) -> Iterator[Any]:
    """The validation set in order, ``chunk`` samples at a time, on the device."""
    if isinstance(dataset, TensorDataset):
        n = len(dataset)
        tensors = tuple(t.to(device) for t in dataset.tensors)
        for i in range(0, n, chunk):
            yield tuple(t[i : i + chunk] for t in tensors)
        return
    loader = DataLoader(
        dataset, batch_size=chunk, shuffle=False, num_workers=workers, pin_memory=device.startswith("cuda")
    )
    for batch in loader:
        yield to_device(batch, device)


def head(dataset: Dataset, n: int | None) -> tuple[Dataset, float]:
    """The first ``n`` examples of ``dataset`` and the share of the whole set they are; the
    whole set (share 1) when ``n`` is None or not smaller, or when the set has no length (an
    ``IterableDataset``). What times an evaluation reads a head and scales by its share."""
    if n is None or isinstance(dataset, IterableDataset) or not isinstance(dataset, Sized):
        return dataset, 1.0
    total = len(dataset)
    if n >= total:
        return dataset, 1.0
    if isinstance(dataset, TensorDataset):
        return TensorDataset(*(t[:n] for t in dataset.tensors)), n / total
    return Subset(dataset, range(n)), n / total


def drawn(dataset: Dataset, n: int, seed: int) -> tuple[Dataset, int]:
    """``n`` examples of ``dataset`` drawn at random without replacement, kept in the set's own
    order, and how many there are; the whole set when ``n`` is not smaller or the set has no
    length (an ``IterableDataset``). The draw is fixed by ``seed``: a larger ``n`` keeps every
    example of a smaller one (they are the heads of one permutation), so a run's evaluations on
    draws of different sizes measure nested parts of one set. A draw, not the head: a
    validation set's first examples can be one file's or one class's (a language model's first
    windows are one source file)."""
    if isinstance(dataset, IterableDataset) or not isinstance(dataset, Sized):
        return dataset, -1
    total = len(dataset)
    if n >= total:
        return dataset, total
    order = torch.randperm(total, generator=torch.Generator().manual_seed(seed))
    index = torch.sort(order[:n]).values
    if isinstance(dataset, TensorDataset):
        return TensorDataset(*(t[index.to(t.device)] for t in dataset.tensors)), n
    return Subset(dataset, index.tolist()), n
