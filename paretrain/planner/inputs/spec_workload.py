"""The spec's workload section: a built-in by name, or a user's workload by module or file.

>>> workload_section({"python": "my_pkg.train:make", "factory": "make_workload"}, "s.yaml")["name"]
'python:my_pkg.train:make'
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from paretrain.planner.errors import SpecError
from paretrain.planner.inputs.space import WorkloadInfo

__all__ = ["check_workload_name", "workload_section"]


def workload_section(w: dict[str, Any], where: str) -> dict[str, Any]:
    """Exactly one of ``name``, ``python`` and ``file``; the canonical ``name`` of a user's
    workload (``python:pkg.module:factory`` or ``file:/abs/path.py:factory``), with ``file``
    made absolute against the spec's folder so that a plan made from it runs from anywhere."""
    name = w.get("name") or ""
    user_name = name.startswith(("python:", "file:"))  # a canonical name, e.g. from a plan file
    given = [k for k in ("python", "file") if w.get(k)] + (["name"] if name and not user_name else [])
    if len(given) > 1 or (not given and not user_name):
        raise SpecError(
            where,
            "workload",
            "must name exactly one of name, python or file",
            given or "none",
            "use 'workload: {name: mnist1d}', 'workload: {python: "
            "my_pkg.train:make_workload}' or 'workload: {file: ./my_workload.py}'",
        )
    w = dict(w)
    if w.get("python"):
        if not re.match(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$", w["python"]):
            raise SpecError(
                where,
                "workload.python",
                "must look like pkg.module:factory",
                w["python"],
                "name an importable module and a factory function in it",
            )
        w["name"] = f"python:{w['python']}"
    elif w.get("file"):
        if not re.match(r"^[A-Za-z_]\w*$", w["factory"]):
            raise SpecError(
                where,
                "workload.factory",
                "must be a Python function name",
                w["factory"],
                "name the function in the file that returns your workload",
            )
        if not os.path.isabs(w["file"]):
            base = os.path.dirname(os.path.abspath(where)) if os.path.exists(where) else os.getcwd()
            w["file"] = os.path.normpath(os.path.join(base, os.path.expanduser(w["file"])))
        w["name"] = f"file:{w['file']}:{w['factory']}"
    elif name.startswith("python:"):
        w["python"] = w["name"][len("python:") :]
    return w


def check_workload_name(name: str, where: str, workloads: Mapping[str, WorkloadInfo] | None) -> None:
    if name.startswith("file:"):
        return
    if name.startswith("python:"):
        if not re.match(r"^python:[A-Za-z_][\w.]*:[A-Za-z_]\w*$", name):
            raise SpecError(
                where,
                "workload.name",
                "must look like python:pkg.module:factory",
                name,
                "name an importable module and a factory function in it",
            )
        return
    if workloads is not None and name not in workloads:
        raise SpecError(
            where,
            "workload.name",
            "is not a known workload",
            name,
            f"use one of: {', '.join(sorted(workloads))}, or python:pkg.module:factory",
        )
