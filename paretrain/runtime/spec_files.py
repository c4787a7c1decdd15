"""Reading a spec: validated against the built-in workloads and the user's workload it names
(imported and checked before anything runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from paretrain.planner.inputs.spec import Spec
from paretrain.planner.inputs.spec_parse import load_spec_yaml, parse_spec_text
from paretrain.runtime.files import read_text
from paretrain.runtime.train.workloads import workloads_for

__all__ = ["read_spec"]


def read_spec(path: str | Path) -> Spec:
    """Read and validate a spec file against the built-in workloads and the user's workload it
    names (imported and checked before anything runs)."""
    import yaml

    text = read_text(path, "spec", "check the path, or run 'paretrain init' to write an example spec")
    try:
        raw = load_spec_yaml(text)
    except yaml.YAMLError:
        raw = None  # parse_spec_text reports the YAML error in its words
    return parse_spec_text(text, str(path), _registry(raw, str(path)))


def _registry(raw: Any, where: str) -> dict[str, Any]:
    return workloads_for(raw.get("workload") if isinstance(raw, dict) else None, where)
