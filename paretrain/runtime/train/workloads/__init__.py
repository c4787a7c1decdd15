"""Real training workloads: built-in ones by name, a user's by module or file.

``WORKLOADS`` maps each built-in name to its ``WorkloadInfo`` (plain data, no torch import),
so a spec naming a built-in is validated without loading torch. ``load_workload`` builds the
real one; ``user_workload_info`` imports a user's factory and checks what it returns
(``paretrain.runtime.train.workloads.api``), so that a spec naming it is validated before anything runs.

>>> from paretrain.runtime.train.workloads import WORKLOADS
>>> sorted(WORKLOADS)
['mnist1d', 'stdlib_lm']
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from paretrain.planner.errors import SpecError
from paretrain.runtime.train.workloads.info import MNIST1D_INFO, STDLIB_LM_INFO

if TYPE_CHECKING:
    from paretrain.planner.inputs.space import WorkloadInfo
    from paretrain.planner.inputs.spec import WorkloadSpec

__all__ = [
    "WORKLOADS",
    "WorkloadExit",
    "load_workload",
    "prepare_data",
    "user_factory",
    "user_workload_info",
    "workload_source_digest",
    "workloads_for",
]

WORKLOADS = {"mnist1d": MNIST1D_INFO, "stdlib_lm": STDLIB_LM_INFO}
_BUILT: dict[str, Any] = {}  # a user's workload, built once per process by its spec name and args


def _fail(where: str, field: str, rule: str, value: Any, fix: str) -> SpecError:
    return SpecError(where, field, rule, value, fix)


def user_factory(name: str, where: str = "spec") -> Callable[..., Any]:
    """The factory ``python:pkg.module:function`` or ``file:/path.py:function`` names."""
    kind, _, rest = name.partition(":")
    target, _, factory = rest.rpartition(":")
    field = f"workload.{'python' if kind == 'python' else 'file'}"
    if kind == "file":
        path = Path(target)
        if not path.is_file():
            raise _fail(
                where,
                field,
                "must be an existing Python file",
                target,
                "check the path (relative paths are taken from the spec's folder)",
            )
        module_name = f"paretrain_user_{abs(hash(str(path)))}"
        # as `python file.py` runs it: the file's own folder is importable (`from model import Net`)
        folder = str(path.resolve().parent)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        spec = importlib.util.spec_from_file_location(module_name, path)
        try:
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            spec.loader.exec_module(module)
        except (Exception, SystemExit) as err:  # a user's code: a sys.exit() too
            raise _fail(
                where, field, "must import", target, f"importing it raised {type(err).__name__}: {err}"
            ) from None
    else:
        try:
            module = importlib.import_module(target)
        except (Exception, SystemExit) as err:  # a user's code: a sys.exit() too
            raise _fail(
                where,
                field,
                "must name an importable module",
                rest,
                f"make '{target}' importable from here (PYTHONPATH); importing it raised "
                f"{type(err).__name__}: {err}",
            ) from None
    fn = getattr(module, factory, None)
    if not callable(fn):
        raise _fail(
            where,
            "workload.factory" if kind == "file" else field,
            f"must name a function of {target}",
            factory,
            f"define {factory}(**args) returning your workload there, or correct the name",
        )
    return fn


def _build_user(name: str, args: Mapping[str, Any], where: str) -> Any:
    from paretrain.runtime.train.workloads.api import check_workload

    key = f"{name}|{sorted(args.items())!r}"
    if key in _BUILT:
        return _BUILT[key]
    fn = user_factory(name, where)
    try:
        obj = fn(**dict(args))
    except (Exception, SystemExit) as err:
        raise _fail(
            where,
            "workload.args",
            f"must be accepted by the factory {name}",
            dict(args),
            f"calling it raised {type(err).__name__}: {err}",
        ) from None
    problems = check_workload(obj, where)
    if problems:
        raise _fail(
            where,
            "workload",
            "must return a workload (see the docs: how-to, Your own workload)",
            type(obj).__name__,
            f"the object {'; '.join(problems)}",
        )
    _BUILT[key] = obj = _exits_raise(obj)
    return obj


class WorkloadExit(RuntimeError):
    """A member of a user's workload called ``sys.exit()``: a fault of the workload like any
    exception (exit 2, the run's last checkpoint kept), not the end of paretrain's process."""


#: the members of a user's workload whose ``sys.exit()`` becomes a ``WorkloadExit``
_MEMBERS = ("train_dataset", "val_dataset", "build", "loss", "evaluate", "inputs", "optimizer", "fingerprint")


def _exits_raise(obj: Any) -> Any:
    """``obj`` with each of its ``_MEMBERS`` wrapped so that a ``SystemExit`` it raises comes out
    as a ``WorkloadExit`` carrying the user's traceback (so the one-line fault names their line).
    Without that, a ``sys.exit(0)`` in ``loss()`` would end ``paretrain run`` with exit 0, its
    run unsettled. A workload whose attributes cannot be set (``__slots__``, a frozen dataclass)
    is left as it is."""
    for name in _MEMBERS:
        fn = getattr(obj, name, None)
        if not callable(fn):
            continue

        def call(*args: Any, _fn: Callable[..., Any] = fn, **kwargs: Any) -> Any:
            try:
                return _fn(*args, **kwargs)
            except SystemExit as err:
                raise WorkloadExit(f"sys.exit({err.code!r}) was called").with_traceback(
                    err.__traceback__
                ) from None

        try:
            setattr(obj, name, call)
        except (AttributeError, TypeError):
            return obj
    return obj


def _module_file(name: str) -> Path | None:
    """The file of the module a user's workload ``name`` imports its factory from."""
    kind, _, rest = name.partition(":")
    target = rest.rpartition(":")[0]
    if kind == "file":
        return Path(target)
    try:
        found = importlib.util.find_spec(target)
    except (ImportError, ValueError):
        return None
    return Path(found.origin) if found is not None and found.origin else None


def workload_source_digest(name: str) -> str:
    """A digest of a user's workload code, part of its profile's key: the module that holds its
    factory and every other ``.py`` file in that module's folder (the helpers it imports from
    beside it, ``from model import Net``), by name and content. Editing any of them measures the
    profile anew; data the workload reads from elsewhere is not covered (``--reprofile``).
    Built-in workloads: ``""`` (their code is part of the measuring code's digest)."""
    import hashlib

    if not name.startswith(("python:", "file:")):
        return ""
    origin = _module_file(name)
    if origin is None or not origin.is_file():
        return ""
    h = hashlib.sha256()
    for f in sorted({origin, *origin.parent.glob("*.py")}, key=lambda q: q.name):
        try:
            h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
        except OSError:
            continue
    return h.hexdigest()[:16]


def user_workload_info(name: str, args: Mapping[str, Any], where: str = "spec") -> WorkloadInfo:
    """Import a user's factory, call it and check its workload; its declaration."""
    return _build_user(name, args, where).info


def workloads_for(raw_workload: Mapping[str, Any] | None, where: str) -> dict[str, WorkloadInfo]:
    """The registry a spec is validated against: the built-ins, and the user's workload it
    names (imported and checked here, before anything is measured or charged)."""
    from paretrain.planner.inputs.spec_workload import workload_section

    registry = dict(WORKLOADS)
    if isinstance(raw_workload, Mapping):
        try:
            w = workload_section(
                {"name": None, "python": None, "file": None, "factory": "make_workload", **raw_workload},
                where,
            )
        except SpecError:
            return registry  # the spec's own validation says what is wrong, in its words
        args = w.get("args") or {}
        if not isinstance(args, Mapping):
            return registry  # the spec's own validation names the field and what it must be
        if w["name"].startswith(("python:", "file:")):
            registry[w["name"]] = user_workload_info(w["name"], args, where)
    return registry


def prepare_data(workload: Any) -> Any:
    """Build the workload's datasets now (generated, or read from the cache folder), and return
    it. Called before the profile and a search worker start charging: preparing data is the
    workload's setup, which a run does uncharged too, not a measurement of the hardware. (MNIST-1D's
    30,000 examples take about 10 s to generate on one core; they are then cached, so the run
    that follows reads them in milliseconds.)"""
    workload.train_dataset()
    workload.val_dataset()
    return workload


def load_workload(spec: WorkloadSpec, cache_dir: Path | None = None) -> Any:
    """Build the workload a spec names (its data generated or read from the cache)."""
    args = dict(spec.args)
    if spec.name == "mnist1d":
        from paretrain.runtime.train.workloads.mnist1d import Mnist1D

        return Mnist1D(
            samples=spec.samples, val_fraction=spec.val_fraction, seed=spec.seed, cache_dir=cache_dir, **args
        )
    if spec.name == "stdlib_lm":
        from paretrain.runtime.train.workloads.stdlib_lm import StdlibLM

        return StdlibLM(seed=spec.seed, cache_dir=cache_dir, **args)
    if spec.name.startswith(("python:", "file:")):
        return _build_user(spec.name, args, "spec")
    raise SpecError(
        "spec",
        "workload.name",
        "is not a known workload",
        spec.name,
        f"use one of: {', '.join(sorted(WORKLOADS))}, or workload.python / workload.file",
    )
