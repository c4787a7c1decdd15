"""The dry check: a user's workload tried on a tiny batch before any money is spent.

For each configuration a plan may train, in this order, each step naming what failed:

1. the training and validation datasets are non-empty (``train_dataset``, ``val_dataset``), and
   the training set holds a batch of the smallest of ``planner.batch_sizes``;
2. ``build(config)`` returns a model with parameters to train;
3. one forward and backward pass on ``BATCH`` training samples gives a finite scalar ``loss``;
4. ``inputs`` gives what the model takes (the inference-latency probe);
5. ``evaluate`` on ``VAL_SAMPLES`` validation samples returns every metric the workload declares,
   each a finite number.

It runs on the CPU in this process, with torch's random state restored afterwards, and is not
charged: it costs a second or two, far below any charge's rounding, and it is what makes a broken
workload cost nothing. A failure is a ``WorkloadError`` (exit 2), one line:
``workload <name>: <member>(<config>) <what came back>. To fix: ...``.
"""

from __future__ import annotations

import math
import sysconfig
import traceback
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset, Subset

from paretrain.planner.errors import UserError
from paretrain.planner.inputs.space import Config
from paretrain.runtime.train.workloads.api import member

__all__ = [
    "BATCH",
    "VAL_SAMPLES",
    "NamedFault",
    "WorkloadError",
    "as_number",
    "dry_check",
    "metric_values",
    "raised",
]

BATCH = 4
VAL_SAMPLES = 16


class NamedFault(Exception):
    """A fault already named by a caller that watches the workload's members (a search trial):
    the trainer passes it on as it is rather than name it again."""


class WorkloadError(UserError):
    """A member of a user's workload failed or returned something paretrain cannot use."""

    def __init__(self, workload: str, what: str, got: str, fix: str) -> None:
        self.workload, self.what, self.got, self.fix = workload, what, got, fix
        super().__init__(f"workload {workload}: {what} {got}. To fix: {fix}")


#: code that is not the user's: a fault is placed at the innermost frame outside these
_NOT_USERS = (Path(torch.__file__).resolve().parent, Path(__file__).resolve().parents[2])
#: nor, where the traceback has a frame outside them too, the standard library's and the
#: installed packages' (a json.loads or a PIL call that raised is placed at the user's call)
_LIBRARIES = tuple(
    Path(p).resolve() for p in {sysconfig.get_path(k) for k in ("stdlib", "purelib", "platlib")} if p
)


def raised(err: BaseException, when: str = "") -> str:
    """``raised TYPE: message WHEN (at FILE:LINE, in FUNCTION)``, the message cut to 200 characters
    (``when``: `` at step N``, say):
    where is the innermost frame of the traceback outside torch and paretrain, the user's line
    that raised or called what raised. An ``evaluate()`` that failed in the model's forward is
    placed at the forward, not only named as ``evaluate``."""
    text = f"raised {type(err).__name__}: {err}".replace("\n", " ")
    text = (text if len(text) <= 200 else text[:197] + "...") + when
    frames = [(Path(f.filename).resolve(), f) for f in reversed(traceback.extract_tb(err.__traceback__))]
    for skip in (_NOT_USERS + _LIBRARIES, _NOT_USERS):
        for path, frame in frames:
            if not any(root in path.parents for root in skip):
                return f"{text} (at {path.name}:{frame.lineno}, in {frame.name})"
    return text


def as_number(value: Any) -> float | None:
    """A metric's value as a float (a Python or NumPy number, a one-element tensor); None when it
    is not a number: a string (``"0.1"`` too: a metric is computed, not formatted), None, a
    tensor of several elements."""
    if value is None or isinstance(value, (str, bytes)):
        return None
    if isinstance(value, torch.Tensor) and value.numel() != 1:
        return None
    try:
        return float(value)
    except (TypeError, ValueError, RuntimeError):
        return None


def metric_values(out: Any, workload: str, what: str, at: str = "") -> dict[str, float]:
    """What ``evaluate()`` returned, as named floats, at every evaluation of a run or a profile
    as at the dry check; anything else is the workload's fault (a ``WorkloadError`` naming what
    came back, ``at``: `` at step N``). A value may be NaN: what that means is the caller's to
    say (a divergence, for the target metric)."""
    if not isinstance(out, Mapping):
        raise WorkloadError(
            workload, what, f"returned {type(out).__name__}, not a dict{at}", "return {metric name: number}"
        )
    values: dict[str, float] = {}
    for k, v in out.items():
        x = as_number(v)
        if x is None:
            shown = repr(v) if len(repr(v)) <= 60 else repr(v)[:57] + "..."
            raise WorkloadError(
                workload, what, f"returned {k}={shown}, not a number{at}", f"make {k} a number"
            )
        values[str(k)] = x
    return values


def _first(dataset: Any, n: int) -> list[Any]:
    if isinstance(dataset, IterableDataset):
        out = []
        for item in dataset:
            out.append(item)
            if len(out) >= n:
                break
        return out
    return [dataset[i] for i in range(min(n, len(dataset)))]


def _size(dataset: Any) -> int | None:
    try:
        return len(dataset)
    except TypeError:  # an IterableDataset without a length: read one item instead
        return None


def _batch(dataset: Any, n: int) -> Any:
    items = _first(dataset, n)
    return torch.utils.data.default_collate(items) if items else None


def _datasets(workload: Any, name: str) -> tuple[Any, Any]:
    sets = []
    for member_name in ("train_dataset", "val_dataset"):
        try:
            ds = getattr(workload, member_name)()
        except Exception as err:  # a user's code: anything it raises is named, never internal
            raise WorkloadError(
                name, f"{member_name}()", raised(err), f"make {member_name}() return a torch Dataset"
            ) from err
        size = _size(ds)
        empty = size == 0 if size is not None else not _first(ds, 1)
        if empty:
            raise WorkloadError(
                name, f"{member_name}()", "returned an empty dataset", "give it at least one sample"
            )
        sets.append(ds)
    return sets[0], sets[1]


def _check_config(
    workload: Any, name: str, cfg: Config, train: Any, val: Any, metrics: Sequence[str]
) -> None:
    what = f"build({cfg.id!r})"
    try:
        model = workload.build(cfg)
    except Exception as err:
        raise WorkloadError(
            name, what, raised(err), f"make build() accept config {cfg.id}, or drop it from the spec"
        ) from err
    if not isinstance(model, torch.nn.Module):
        raise WorkloadError(
            name, what, f"returned {type(model).__name__}, not a torch.nn.Module", "return an nn.Module"
        )
    if not any(p.requires_grad for p in model.parameters()):
        raise WorkloadError(
            name, what, "returned a model with no trainable parameters", "give the model parameters to train"
        )
    batch = _batch(train, BATCH)
    what = f"loss(model {cfg.id!r}, a batch of {BATCH})"
    try:
        loss = member(workload, "loss")(model, batch)
        if isinstance(loss, torch.Tensor) and loss.numel() == 1 and loss.requires_grad:
            loss.backward()
    except Exception as err:
        raise WorkloadError(
            name, what, raised(err), "make loss() return a scalar tensor for a training batch"
        ) from err
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        got = (
            f"a tensor of shape {tuple(loss.shape)}"
            if isinstance(loss, torch.Tensor)
            else type(loss).__name__
        )
        raise WorkloadError(
            name, what, f"returned {got}, not a scalar", "return the batch's mean loss as a scalar tensor"
        )
    if not math.isfinite(float(loss.detach())):
        raise WorkloadError(
            name, what, f"returned {float(loss.detach())}", "make the loss finite at the start of training"
        )
    try:
        member(workload, "inputs")(batch)
    except Exception as err:
        raise WorkloadError(
            name, f"inputs(a batch of {BATCH})", raised(err), "make inputs() return what the model takes"
        ) from err
    _check_evaluate(workload, name, cfg, model, val, metrics)


def _check_evaluate(
    workload: Any, name: str, cfg: Config, model: Any, val: Any, metrics: Sequence[str]
) -> None:
    what = f"evaluate(model {cfg.id!r}, {VAL_SAMPLES} validation samples)"
    small = val if isinstance(val, IterableDataset) else Subset(val, range(min(VAL_SAMPLES, len(val))))
    batches: Iterable[Any] = DataLoader(small, batch_size=VAL_SAMPLES)
    if isinstance(val, IterableDataset):
        batches = [_batch(val, VAL_SAMPLES)]
    try:
        model.eval()
        with torch.no_grad():
            out = member(workload, "evaluate")(model, batches)
    except Exception as err:
        raise WorkloadError(
            name, what, raised(err), "make evaluate(), and the model it runs, return a dict of named numbers"
        ) from err
    if not isinstance(out, dict):
        raise WorkloadError(
            name, what, f"returned {type(out).__name__}, not a dict", "return {metric name: number}"
        )
    missing = [m for m in metrics if m not in out]
    if missing:
        raise WorkloadError(
            name,
            what,
            f"returned {sorted(out)}, without {missing}",
            "return every metric the workload's info declares and the spec's target.metric",
        )
    for m in metrics:
        value = as_number(out[m])
        if value is None or not math.isfinite(value):
            raise WorkloadError(name, what, f"returned {m}={out[m]!r}", f"make {m} a finite number")


def dry_check(
    workload: Any,
    name: str,
    configs: Sequence[Config],
    target: str | None = None,
    batch_sizes: Sequence[int] = (),
) -> None:
    """Try ``workload`` on every config on a tiny batch; raise ``WorkloadError`` at the first fault.
    ``name`` is how the spec names the workload (a file and factory, a module, a built-in);
    ``target`` is the spec's target metric, which ``evaluate`` must return too; the training set
    must hold the smallest of ``batch_sizes`` (``planner.batch_sizes``), a step's batch."""
    state = torch.get_rng_state()
    try:
        train, val = _datasets(workload, name)
        size = _size(train)
        if batch_sizes and size is not None and size < min(batch_sizes):
            raise WorkloadError(
                name,
                "train_dataset()",
                f"returned {size} samples, fewer than the smallest batch size {min(batch_sizes)} "
                "(planner.batch_sizes)",
                f"give it at least {min(batch_sizes)} samples, or use smaller planner.batch_sizes",
            )
        metrics = [m for m, _direction in workload.info.metrics]
        if target is not None and target not in metrics:
            metrics.append(target)
        for cfg in configs:
            _check_config(workload, name, cfg, train, val, metrics)
    finally:
        torch.set_rng_state(state)
