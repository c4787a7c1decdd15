"""The running interpreter's standard-library source as a byte corpus, and byte-window datasets.

Files: every ``*.py`` under ``sysconfig.get_paths()["stdlib"]``, recursively, except under
folders named ``site-packages``/``dist-packages`` (installed third-party code, which differs
between machines with the same Python), ``test``/``tests``/``idle_test`` (CPython's own test
suite: 10x the rest in bytes, much of it generated data and deliberately malformed input) and
``__pycache__``. On CPython 3.11.7 that is 734 files, 12.1 MB. Nothing is downloaded.

Files are read as bytes in sorted order of their relative POSIX path and concatenated as they
are. A file goes to validation when the sha256 of its relative path, read as an integer, is
0 modulo 10 (about 1 file in 10; a file keeps its split on every machine and under any cap).
``max_bytes`` keeps small runs small: whole files in sorted order while the total stays within
the cap, so a capped corpus's train and validation arrays are prefixes of the full ones.

The fingerprint is a sha256 over the selected files' paths and contents: another interpreter
(or a cap) gives another fingerprint. The arrays are cached as ``.npz`` (no pickle) under the
cache folder, keyed by fingerprint and cap; the fingerprint itself needs every file read (about
0.15 s for the 12 MB), so the cache saves the joining and splitting, not the reading.

>>> corpus = load_corpus(max_bytes=100_000)              # doctest: +SKIP
>>> windows = TrainWindows(corpus.train, context=64, seed=0)  # doctest: +SKIP
>>> x, y = windows[0]                                     # int64 [64] each; y is x shifted by one
"""

from __future__ import annotations

import hashlib
import io
import os
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from paretrain.runtime.files import atomic_write_bytes

__all__ = [
    "EXCLUDED_DIRS",
    "Corpus",
    "TrainWindows",
    "ValWindows",
    "corpus_files",
    "is_validation",
    "load_corpus",
    "stdlib_root",
]

EXCLUDED_DIRS = frozenset({"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"})
VAL_MODULUS = 10
_FINGERPRINT_TAG = b"paretrain.stdlib-corpus/1\0"


@dataclass(frozen=True)
class Corpus:
    """Train and validation bytes (uint8 arrays) and where they came from."""

    train: np.ndarray
    val: np.ndarray
    fingerprint: str
    files: int
    val_files: int
    max_bytes: int | None = None

    @property
    def nbytes(self) -> int:
        return int(self.train.size + self.val.size)


def stdlib_root() -> Path:
    """The running interpreter's standard-library folder."""
    return Path(sysconfig.get_paths()["stdlib"])


def corpus_files(root: Path | None = None) -> list[tuple[str, Path]]:
    """(relative POSIX path, path) of every corpus file under ``root``, sorted by relative path."""
    root = Path(root) if root is not None else stdlib_root()
    found: list[tuple[str, Path]] = []
    for folder, dirs, names in os.walk(root):  # does not follow symlinked folders
        dirs[:] = [d for d in dirs if d not in EXCLUDED_DIRS]
        for name in names:
            if name.endswith(".py"):
                path = Path(folder, name)
                found.append((path.relative_to(root).as_posix(), path))
    return sorted(found)


def is_validation(rel_path: str) -> bool:
    """Whether the file at ``rel_path`` belongs to the validation split (about 1 in 10)."""
    return int.from_bytes(hashlib.sha256(rel_path.encode()).digest(), "big") % VAL_MODULUS == 0


def load_corpus(
    max_bytes: int | None = None, cache_dir: Path | None = None, root: Path | None = None
) -> Corpus:
    """Read the corpus (whole files, sorted, within ``max_bytes`` if given) and split it."""
    if max_bytes is not None and max_bytes < 1:
        raise ValueError(f"`max_bytes >= 1` must hold, but got max_bytes={max_bytes}")
    digest = hashlib.sha256(_FINGERPRINT_TAG)
    train_parts: list[bytes] = []
    val_parts: list[bytes] = []
    total = 0
    for rel, path in corpus_files(root):
        data = path.read_bytes()
        if max_bytes is not None and total + len(data) > max_bytes:
            break
        total += len(data)
        digest.update(rel.encode() + b"\0" + len(data).to_bytes(8, "little") + data)
        (val_parts if is_validation(rel) else train_parts).append(data)
    if not train_parts or not val_parts:
        raise ValueError(
            f"the corpus under {root or stdlib_root()} has {len(train_parts)} training "
            f"and {len(val_parts)} validation files within max_bytes={max_bytes}; "
            "both must be non-empty: raise max_bytes"
        )
    fingerprint = digest.hexdigest()
    kept = (fingerprint, len(train_parts) + len(val_parts), len(val_parts), max_bytes)
    cached = _read_cache(cache_dir, fingerprint, max_bytes)
    if cached is not None:
        return Corpus(cached[0], cached[1], *kept)
    # bytearray: writable arrays, which torch.from_numpy takes without a warning
    train = np.frombuffer(bytearray(b"".join(train_parts)), dtype=np.uint8)
    val = np.frombuffer(bytearray(b"".join(val_parts)), dtype=np.uint8)
    _write_cache(cache_dir, fingerprint, max_bytes, train, val)
    return Corpus(train, val, *kept)


def _cache_path(cache_dir: Path, fingerprint: str, max_bytes: int | None) -> Path:
    return Path(cache_dir) / f"stdlib-corpus-{fingerprint[:16]}-{max_bytes or 'all'}.npz"


def _read_cache(
    cache_dir: Path | None, fingerprint: str, max_bytes: int | None
) -> tuple[np.ndarray, np.ndarray] | None:
    if cache_dir is None:
        return None
    path = _cache_path(cache_dir, fingerprint, max_bytes)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            train, val = f["train"], f["val"]
    except (OSError, ValueError, KeyError):
        return None  # a damaged cache file is rebuilt by the caller
    if train.dtype != np.uint8 or val.dtype != np.uint8:
        return None
    return train, val


def _write_cache(
    cache_dir: Path | None, fingerprint: str, max_bytes: int | None, train: np.ndarray, val: np.ndarray
) -> None:
    if cache_dir is None:
        return
    buf = io.BytesIO()
    np.savez(buf, train=train, val=val)
    atomic_write_bytes(_cache_path(cache_dir, fingerprint, max_bytes), buf.getvalue())


def _as_tensor(data: np.ndarray | torch.Tensor, context: int, what: str) -> torch.Tensor:
    if context < 1:
        raise ValueError(f"`context >= 1` must hold, but got context={context}")
    t = data if isinstance(data, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(data))
    if t.dim() != 1 or t.numel() < context + 1:
        raise ValueError(
            f"{what} needs a 1-D byte array of at least context + 1 = {context + 1} "
            f"bytes, but got shape {tuple(t.shape)}; lower the context or raise max_bytes"
        )
    return t


def _mix(seed: int, index: int) -> int:
    """SplitMix64 of (seed, index): a fixed pseudo-random 64-bit integer per item."""
    z = (seed * 0x9E3779B97F4A7C15 + (index + 1) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return z ^ (z >> 31)


class TrainWindows(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Training windows: item ``i`` is (input, target), int64 ``[context]`` each, the target
    being the input shifted by one byte, read at a start position fixed by (``seed``, ``i``).

    Starts are drawn uniformly over the whole array, so every alignment is seen (fixed,
    aligned windows would show the model the same cut points every epoch). ``len`` is one
    pass over the bytes in expectation unless ``length`` is given. Shuffling is the sampler's.
    """

    def __init__(
        self, data: np.ndarray | torch.Tensor, context: int, seed: int = 0, length: int | None = None
    ) -> None:
        self.data = _as_tensor(data, context, "TrainWindows")
        self.context, self.seed = context, seed
        self.length = length if length is not None else (self.data.numel() - 1) // context
        self._starts = self.data.numel() - context  # valid starts: 0 .. numel - context - 1

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        s = _mix(self.seed, index) % self._starts
        chunk = self.data[s : s + self.context + 1].long()
        return chunk[:-1], chunk[1:]


class ValWindows(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Validation windows: fixed, non-overlapping ``context``-byte windows from the start;
    ``limit`` keeps that many of them, evenly spaced over the split (the first and the last
    included), to bound the cost of an evaluation."""

    def __init__(self, data: np.ndarray | torch.Tensor, context: int, limit: int | None = None) -> None:
        self.data = _as_tensor(data, context, "ValWindows")
        self.context = context
        n = (self.data.numel() - 1) // context
        if limit is not None and limit < n:
            if limit < 1:
                raise ValueError(f"`limit >= 1` must hold, but got limit={limit}")
            self.starts = np.unique(np.linspace(0, n - 1, limit).round().astype(np.int64)) * context
        else:
            self.starts = np.arange(n, dtype=np.int64) * context

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        s = int(self.starts[index])
        chunk = self.data[s : s + self.context + 1].long()
        return chunk[:-1], chunk[1:]
