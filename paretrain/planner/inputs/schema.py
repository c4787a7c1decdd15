"""Declarative field rules: one table validates input files and prints their JSON Schema.

A ``Field`` says what one key may hold. ``check`` walks a parsed YAML/JSON value against a
tree of fields and returns plain Python values with defaults filled in, or raises
``SpecError`` naming the file, the dotted field path, the rule, the value and a fix.
``to_json_schema`` renders the same tree as JSON Schema (draft 2020-12).

>>> rules = {"total_usd": Field("number", minimum=0)}
>>> check({"total_usd": 3}, Field("section", fields=rules), "spec.yaml", "budget")
{'total_usd': 3.0}
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from paretrain.planner.errors import SpecError

__all__ = ["REQUIRED", "Field", "check", "to_json_schema"]


class _Required:
    def __repr__(self) -> str:  # pragma: no cover - shown in docs only
        return "REQUIRED"


REQUIRED: Any = _Required()

_KINDS = ("str", "int", "number", "bool", "list", "section", "map", "any")
_JSON_TYPE = {
    "str": "string",
    "int": "integer",
    "number": "number",
    "bool": "boolean",
    "list": "array",
    "section": "object",
    "map": "object",
}


@dataclass(frozen=True)
class Field:
    """The rule for one key: its kind, bounds, choices, default and help text."""

    kind: str
    default: Any = REQUIRED
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    choices: tuple[Any, ...] | None = None
    items: Field | None = None
    fields: Mapping[str, Field] | None = None
    nonempty: bool = False
    nullable: bool = False
    help: str = ""
    fix: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"`kind` must be one of {_KINDS}, but got {self.kind!r}")


def _fail(where: str, path: str, rule: str, value: Any, spec: Field, fix: str = "") -> SpecError:
    return SpecError(where, path, rule, value, fix or spec.fix or _fix_from(path, rule, spec.help))


def _fix_from(path: str, rule: str, help_text: str) -> str:
    """The fix a rule implies, with what the field is for: "set 'planner.batch_sizes[0]' to a
    value that is >= 1 (the batch sizes the program may choose)"."""
    wanted = rule.replace("must not be", "is not", 1).replace("must be", "is", 1)
    return f"set '{path}' to a value that {wanted}" + (f" ({help_text})" if help_text else "")


def check(value: Any, spec: Field, where: str, path: str) -> Any:
    """Validate ``value`` against ``spec``; return it normalized, or raise ``SpecError``."""
    if value is None:
        if spec.nullable:
            return None
        if spec.default is not REQUIRED and spec.default is None:
            return None
        raise _fail(where, path, f"must be a {_JSON_TYPE.get(spec.kind, spec.kind)}, not empty", value, spec)
    kind = spec.kind
    if kind == "bool":
        if not isinstance(value, bool):
            raise _fail(where, path, "must be true or false", value, spec)
        return value
    if kind in ("int", "number"):
        return _check_number(value, spec, where, path)
    if kind == "str":
        if not isinstance(value, str):
            raise _fail(where, path, "must be a string", value, spec)
        if spec.nonempty and not value.strip():
            raise _fail(where, path, "must not be empty", value, spec)
        if spec.choices is not None and value not in spec.choices:
            raise _fail(where, path, f"must be one of {', '.join(map(str, spec.choices))}", value, spec)
        return value
    if kind == "list":
        if not isinstance(value, list):
            raise _fail(where, path, "must be a list", value, spec)
        if spec.nonempty and not value:
            raise _fail(where, path, "must not be empty", value, spec)
        assert spec.items is not None
        return [check(v, spec.items, where, f"{path}[{i}]") for i, v in enumerate(value)]
    if kind == "section":
        return _check_section(value, spec, where, path)
    if kind == "map":
        if not isinstance(value, dict):
            raise _fail(where, path, "must be a mapping", value, spec)
        assert spec.items is not None
        return {str(k): check(v, spec.items, where, f"{path}.{k}") for k, v in value.items()}
    return value


def _check_number(value: Any, spec: Field, where: str, path: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(where, path, f"must be {'an integer' if spec.kind == 'int' else 'a number'}", value, spec)
    if spec.kind == "int" and not (isinstance(value, int) or float(value).is_integer()):
        raise _fail(where, path, "must be an integer", value, spec)
    if not math.isfinite(float(value)):
        raise _fail(where, path, "must be a finite number", value, spec)
    if spec.minimum is not None:
        if spec.exclusive_minimum and not value > spec.minimum:
            raise _fail(where, path, f"must be > {spec.minimum:g}", value, spec)
        if not spec.exclusive_minimum and not value >= spec.minimum:
            raise _fail(where, path, f"must be >= {spec.minimum:g}", value, spec)
    if spec.maximum is not None and not value <= spec.maximum:
        raise _fail(where, path, f"must be <= {spec.maximum:g}", value, spec)
    if spec.choices is not None and value not in spec.choices:
        raise _fail(where, path, f"must be one of {', '.join(map(str, spec.choices))}", value, spec)
    return int(value) if spec.kind == "int" else float(value)


def _check_section(value: Any, spec: Field, where: str, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(where, path or "(top level)", "must be a mapping of keys to values", value, spec)
    fields = spec.fields or {}
    out: dict[str, Any] = {}
    for key in value:
        if key not in fields:
            dotted = f"{path}.{key}" if path else str(key)
            raise SpecError(
                where, dotted, "is not a known key", key, f"remove it or use one of: {', '.join(fields)}"
            )
    for key, sub in fields.items():
        dotted = f"{path}.{key}" if path else key
        if key in value:
            out[key] = check(value[key], sub, where, dotted)
        elif sub.default is REQUIRED:
            raise _fail(
                where, dotted, "is required", None, sub, sub.fix or f"add '{dotted}' {sub.help}".rstrip()
            )
        elif sub.kind == "section" and isinstance(sub.default, dict):
            out[key] = check(sub.default, sub, where, dotted)
        else:
            out[key] = sub.default
    return out


def to_json_schema(spec: Field, title: str = "") -> dict[str, Any]:
    """Render a field tree as a JSON Schema document."""
    node = _schema_node(spec)
    if title:
        node = {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": title, **node}
    return node


def _schema_node(spec: Field) -> dict[str, Any]:
    node: dict[str, Any] = {}
    if spec.kind in _JSON_TYPE:
        node["type"] = [_JSON_TYPE[spec.kind], "null"] if spec.nullable else _JSON_TYPE[spec.kind]
    if spec.help:
        node["description"] = spec.help
    if spec.minimum is not None:
        node["exclusiveMinimum" if spec.exclusive_minimum else "minimum"] = spec.minimum
    if spec.maximum is not None:
        node["maximum"] = spec.maximum
    if spec.choices is not None:
        node["enum"] = list(spec.choices)
    if spec.default is not REQUIRED and not isinstance(spec.default, dict):
        node["default"] = spec.default
    if spec.kind == "list" and spec.items is not None:
        node["items"] = _schema_node(spec.items)
        if spec.nonempty:
            node["minItems"] = 1
    if spec.kind == "map" and spec.items is not None:
        node["additionalProperties"] = _schema_node(spec.items)
    if spec.kind == "section":
        fields = spec.fields or {}
        node["properties"] = {k: _schema_node(v) for k, v in fields.items()}
        node["additionalProperties"] = False
        required = [k for k, v in fields.items() if v.default is REQUIRED]
        if required:
            node["required"] = required
    node.update(spec.extra)
    return node
