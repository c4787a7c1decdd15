"""MkDocs hook: pages whose content comes from the project itself, rendered at build time.

- ``<!-- generated: spec-schema -->`` becomes one table per spec section, from the JSON Schema
  that ``paretrain spec-schema`` prints (the command is run in-process through click, so the
  page follows the command line, wherever the schema is defined inside paretrain);
- ``<!-- generated: benchmarks -->`` becomes one section per ``benchmarks/results/*.json``: what
  the benchmark measures (the first paragraph of its script's docstring), how to run it, its
  scalar results and one table per list of records; the PNG figures found there are copied
  into the site and shown.

A marker left unreplaced, or a schema that cannot be read, fails the build.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import tomllib
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
FIGURES = "benchmarks/figures"  # where the results' PNGs go in the site
SPEC_MARKER = "<!-- generated: spec-schema -->"
API_MARKER = "<!-- generated: api -->"
CONTRACTS_MARKER = "<!-- generated: import-contracts -->"
BENCH_MARKER = "<!-- generated: benchmarks -->"

#: results files that no script of the same name writes
WRITTEN_BY = {"plan_fidelity_short_runs": "plan_fidelity"}
NOTES = {
    "plan_fidelity": (
        "Measured on 2026-11-30 with the full measurement (`planner.convergence: full`, then the "
        "default); the truncated profile's coverage and P50 errors are in `cost_of_knowing.json`."
    ),
    "plan_fidelity_short_runs": (
        "An earlier fidelity measurement on the benchmark spec, with runs of a few seconds: "
        "kept for comparison with `plan_fidelity.json`."
    ),
}
MAX_ROWS = 60  # longer lists are cut, with a line saying how many rows were left out
MAX_CELL = 80  # characters of a nested value shown in a cell


def on_files(files: Files, config: Any) -> Files:
    for png in sorted(RESULTS.glob("*.png")):
        files.append(File.generated(config, f"{FIGURES}/{png.name}", abs_src_path=str(png)))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    if SPEC_MARKER in markdown:
        markdown = markdown.replace(SPEC_MARKER, spec_tables(spec_schema()))
    if API_MARKER in markdown:
        markdown = markdown.replace(API_MARKER, api_sections())
    if CONTRACTS_MARKER in markdown:
        markdown = markdown.replace(CONTRACTS_MARKER, import_contracts())
    if BENCH_MARKER in markdown:
        markdown = markdown.replace(BENCH_MARKER, benchmark_sections(page.file.src_uri))
    if "<!-- generated:" in markdown:
        raise PluginError(f"{page.file.src_uri}: an unknown '<!-- generated: ... -->' marker")
    return markdown


def on_page_content(html: str, page: Any, config: Any, files: Files) -> str:
    # mkdocs-click prints click 8.3's "no default" sentinel in the option tables' default column
    return html.replace("<td><code>Sentinel.UNSET</code></td>", "<td></td>")


# -- the spec -----------------------------------------------------------------------------------


def spec_schema() -> dict[str, Any]:
    """What ``paretrain spec-schema`` prints, parsed."""
    from click.testing import CliRunner

    from paretrain.cli import cli

    result = CliRunner().invoke(cli, ["spec-schema"])
    if result.exit_code != 0:
        raise PluginError(f"'paretrain spec-schema' exited {result.exit_code}: {result.output[-500:]}")
    return json.loads(result.stdout)


def _type(node: dict[str, Any]) -> str:
    kinds = node.get("type", "any")
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    names = []
    for kind in kinds:
        if kind == "array" and isinstance(node.get("items"), dict):
            names.append(f"list of {_type(node['items'])}")
        elif (
            kind == "object"
            and isinstance(node.get("additionalProperties"), dict)
            and not node.get("properties")
        ):
            names.append("mapping")
        else:
            names.append(kind)
    return " or ".join(names)


def _value(value: Any) -> str:
    text = json.dumps(value)
    return f"`{text}`"


def _rule(node: dict[str, Any], required: bool) -> str:
    parts = []
    if node.get("description"):
        parts.append(_escape(node["description"]))
    if required:
        parts.append("**required**")
    if "enum" in node:
        parts.append("one of " + ", ".join(_value(v) for v in node["enum"]))
    bounds = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "minItems": "items >="}
    for key, sign in bounds.items():
        if key in node:
            parts.append(f"{sign} {node[key]}")
    return "; ".join(parts) or ""


def _escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _rows(prefix: str, node: dict[str, Any]) -> list[str]:
    """Table rows for the fields of an object node, nested objects flattened as a.b."""
    rows = []
    required = set(node.get("required", []))
    for name, field in node.get("properties", {}).items():
        path = f"{prefix}{name}"
        default = _value(field["default"]) if "default" in field else ""
        rows.append(f"| `{path}` | {_escape(_type(field))} | {default} | {_rule(field, name in required)} |")
        if field.get("properties"):
            rows.extend(_rows(f"{path}.", field))
        items = field.get("items")
        if isinstance(items, dict) and items.get("properties"):
            rows.extend(_rows(f"{path}[].", items))
        values = field.get("additionalProperties")
        if isinstance(values, dict) and values.get("properties"):
            rows.extend(_rows(f"{path}.ID.", values))
    return rows


HEADER = "| field | type | default | rule |\n|---|---|---|---|"


def spec_tables(schema: dict[str, Any]) -> str:
    if schema.get("type") != "object" or not schema.get("properties"):
        raise PluginError("'paretrain spec-schema' printed no object schema with properties")
    top: dict[str, Any] = {"properties": {}, "required": schema.get("required", [])}
    sections: list[str] = []
    for name, node in schema["properties"].items():
        if node.get("properties"):
            required = " (required)" if name in schema.get("required", []) else ""
            lines = [f"### `{name}`{required}", ""]
            if node.get("description"):
                lines += [node["description"][0].upper() + node["description"][1:] + ".", ""]
            lines += [HEADER, *_rows(f"{name}.", node), ""]
            sections.append("\n".join(lines))
        else:
            top["properties"][name] = node
    lines = ["### Top level", "", HEADER, *_rows("", top), ""]
    return "\n".join(lines) + "\n" + "\n".join(sections)


# -- the import contracts ---------------------------------------------------------------------


def import_contracts() -> str:
    """The import-linter contracts of pyproject.toml, one list per contract."""
    with (ROOT / "pyproject.toml").open("rb") as f:
        contracts = tomllib.load(f).get("tool", {}).get("importlinter", {}).get("contracts", [])
    if not contracts:
        raise PluginError("pyproject.toml has no [[tool.importlinter.contracts]]")
    out: list[str] = []
    for c in contracts:
        out += [f"**{c['name']}** ({c['type']})", ""]
        if c["type"] == "layers":
            for container in c.get("containers", []) or [""]:
                prefix = f"{container}." if container else ""
                out.append(f"- in `{container}`, top to bottom:" if container else "- top to bottom:")
                for layer in c["layers"]:
                    parts = [p.strip() for p in layer.split("|")]
                    out.append("    - " + " | ".join(f"`{prefix}{p}`" for p in parts))
        elif c["type"] == "forbidden":
            out.append(
                "- "
                + ", ".join(f"`{m}`" for m in c["source_modules"])
                + " may not import "
                + ", ".join(f"`{m}`" for m in c["forbidden_modules"])
            )
        elif c["type"] == "acyclic_siblings":
            out.append("- under " + ", ".join(f"`{m}`" for m in c.get("ancestors", [])) + ": no cycles")
        else:
            out.append("- " + ", ".join(f"{k}: `{v}`" for k, v in c.items() if k not in ("name", "type")))
        out.append("")
    return "\n".join(out)


# -- the Python API ---------------------------------------------------------------------------


def _public_names(module: str) -> list[str]:
    """A public module's ``__all__``, read from its source (nothing is imported)."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise PluginError(f"cannot find the public module {module}")
    for node in ast.parse(Path(spec.origin).read_text()).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            return list(ast.literal_eval(node.value))
    raise PluginError(f"{module} has no __all__")


def _directive(path: str) -> str:
    return f"::: {path}\n    options:\n      heading_level: 3\n"


def api_sections() -> str:
    """mkdocstrings directives for every public name: ``paretrain.__all__`` and
    ``paretrain.workload.__all__``, by their public paths only."""
    import paretrain

    top = _public_names("paretrain")
    workload = _public_names("paretrain.workload")
    ours = [n for n in workload if n in top]
    foreign = [n for n in workload if n not in top]
    rest = [n for n in top if n not in workload]
    errors = [
        n
        for n in rest
        if isinstance(getattr(paretrain, n), type) and issubclass(getattr(paretrain, n), BaseException)
    ]
    records = [n for n in rest if n not in errors]
    out = [
        "## The workload API",
        "",
        "`paretrain.workload` holds what your training code needs; the same names are importable from "
        "`paretrain` itself.",
        "",
        "::: paretrain.workload\n    options:\n      members: false\n      show_root_heading: false\n",
    ]
    if foreign:
        out += [
            "It also re-exports torch's "
            + ", ".join(f"`{n}`" for n in foreign)
            + " (`torch.utils.data`), so a workload imports everything from one place.",
            "",
        ]
    out += [_directive(f"paretrain.workload.{n}") for n in ours]
    out += ["## Files as records", "", "The files paretrain reads and writes, as typed records.", ""]
    out += [_directive(f"paretrain.{n}") for n in records]
    out += [
        "## Errors",
        "",
        "`UserError` (bad input) ends a command with exit 2, `StopError` (nothing ran, or a run "
        "stopped) with exit 3.",
        "",
    ]
    out += [_directive(f"paretrain.{n}") for n in errors]
    return "\n".join(out)


# -- the benchmarks -----------------------------------------------------------------------------


def _docstring_paragraph(script: Path) -> tuple[str, str]:
    """The first paragraph of a script's docstring, and its indented usage line if any."""
    doc = ast.get_docstring(ast.parse(script.read_text())) or ""
    first = doc.split("\n\n")[0]
    usage = ""
    for block in doc.split("\n\n"):
        if block.startswith("    ") and ".py" in block:
            usage = "\n".join(line[4:] for line in block.splitlines())
    return _rst(" ".join(first.split())), usage


def _rst(text: str) -> str:
    return re.sub(r"``([^`]+)``", r"`\1`", text)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        text = f"{value:.4g}"
    elif isinstance(value, (dict, list)):
        text = json.dumps(value, separators=(",", ":"))
        if len(text) > MAX_CELL:
            text = text[: MAX_CELL - 3] + "..."
        text = f"`{text}`"
    elif value is None:
        text = "-"
    else:
        text = str(value)
    return _escape(text)


def _records(data: Any, path: str = "") -> list[tuple[str, list[dict[str, Any]]]]:
    """Every list of records (dicts) in data, with its path."""
    found = []
    if isinstance(data, list) and data and all(isinstance(x, dict) for x in data):
        found.append((path, data))
    elif isinstance(data, dict):
        for key, value in data.items():
            found += _records(value, f"{path}.{key}" if path else key)
    return found


def _scalars(data: dict[str, Any], path: str = "") -> list[tuple[str, Any]]:
    """Leaf values of nested dicts (lists of records are tables of their own)."""
    out: list[tuple[str, Any]] = []
    for key, value in data.items():
        name = f"{path}.{key}" if path else key
        if isinstance(value, dict):
            out += _scalars(value, name)
        elif isinstance(value, list) and value and all(isinstance(x, dict) for x in value):
            continue
        else:
            out.append((name, value))
    return out


def _table(records: list[dict[str, Any]]) -> list[str]:
    columns: list[str] = []
    for record in records:
        columns += [k for k in record if k not in columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for record in records[:MAX_ROWS]:
        lines.append("| " + " | ".join(_cell(record.get(c)) for c in columns) + " |")
    if len(records) > MAX_ROWS:
        lines += ["", f"({len(records) - MAX_ROWS} more rows in the file.)"]
    return lines


def benchmark_sections(page_uri: str) -> str:
    results = sorted(RESULTS.glob("*.json"))
    if not results:
        raise PluginError(f"no benchmark results in {RESULTS}")
    depth = page_uri.count("/")
    up = "../" * depth
    out: list[str] = []
    for path in results:
        name = path.stem
        script = ROOT / "benchmarks" / f"{WRITTEN_BY.get(name, name)}.py"
        data = json.loads(path.read_text())
        out += [f"## {name}", ""]
        if name in NOTES:
            out += [NOTES[name], ""]
        if script.exists():
            what, usage = _docstring_paragraph(script)
            out += [what, ""]
            out += [f"Written by `benchmarks/{script.name}` to `benchmarks/results/{path.name}`:", ""]
            out += ["```", usage or f".venv/bin/python benchmarks/{script.name}", "```", ""]
        else:
            out += [f"File `benchmarks/results/{path.name}`; no script of that name writes it today.", ""]
        scalars = _scalars(data) if isinstance(data, dict) else []
        if scalars:
            out += ["| result | value |", "|---|---|"]
            out += [f"| `{key}` | {_cell(value)} |" for key, value in scalars]
            out.append("")
        for where, records in _records(data):
            out += [f"**`{where}`** ({len(records)} rows)", "", *_table(records), ""]
    pngs = sorted(RESULTS.glob("*.png"))
    if pngs:
        out += ["## Figures", ""]
        for png in pngs:
            out += [f"![{png.stem}]({up}{FIGURES}/{png.name})", "", f"`benchmarks/results/{png.name}`", ""]
    return "\n".join(out)
