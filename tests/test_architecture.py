"""The import contract of DESIGN.md section 2, checked on the import graph that grimp builds.

- planner/ imports no torch, mlflow or runtime, directly or through any chain of project modules;
- runtime/ imports no paretrain, directly or through any chain;
- no import cycle among the modules of planner, runtime and paretrain.

grimp reads every import statement in the source without running it: module-level imports,
imports inside functions (a lazy ``import torch`` in a planner function breaks the contract as
much as a top-level one), and imports under ``if TYPE_CHECKING:``, which grimp reports by default
(``exclude_type_checking_imports=False``). So a cycle kept only for type hints fails here too:
move the shared types into a module both sides import (as ``planner.measurements`` does for the
Lab's records).
"""

from __future__ import annotations

import grimp
import pytest

PACKAGES = ("planner", "runtime", "paretrain")


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    # cache_dir=None: build from the source every time and write no cache into the tree
    return grimp.build_graph(*PACKAGES, include_external_packages=True, cache_dir=None)


def _chains(graph: grimp.ImportGraph, importer: str, imported: str) -> list[str]:
    if imported not in graph.modules:  # an external package nobody imports is not in the graph
        return []
    chains = graph.find_shortest_chains(importer=importer, imported=imported, as_packages=True)
    return [" -> ".join(c) for c in sorted(chains)]


@pytest.mark.parametrize("forbidden", ["torch", "mlflow", "runtime"])
def test_planner_imports_no_torch_mlflow_or_runtime(graph, forbidden):
    chains = _chains(graph, "planner", forbidden)
    assert not chains, f"planner must not import {forbidden}; import chains:\n" + "\n".join(chains)


def test_runtime_imports_no_paretrain(graph):
    chains = _chains(graph, "runtime", "paretrain")
    assert not chains, "runtime must not import paretrain; import chains:\n" + "\n".join(chains)


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    ours = sorted(m for m in graph.modules if m.split(".")[0] in PACKAGES)
    edges = {m: sorted(i for i in graph.find_modules_directly_imported_by(m) if i.split(".")[0] in PACKAGES)
             for m in ours}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for root in ours:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            v, i = work.pop()
            if i == 0:
                index[v] = low[v] = len(index)
                stack.append(v)
                on_stack.add(v)
            if i < len(edges[v]):
                work.append((v, i + 1))
                w = edges[v][i]
                if w not in index:
                    work.append((w, 0))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    components.append(sorted(comp))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[v])
    return sorted(components)


def _describe(graph: grimp.ImportGraph, cycle: list[str]) -> str:
    members = set(cycle)
    lines = []
    for m in cycle:
        for imported in sorted(graph.find_modules_directly_imported_by(m) & members):
            for d in graph.get_import_details(importer=m, imported=imported):
                lines.append(f"  {m}:{d['line_number']}: {d['line_contents']}")
    return "\n".join(lines)


def test_no_import_cycles(graph):
    cycles = _cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(
        " <-> ".join(c) + "\n" + _describe(graph, c) for c in cycles)


def test_cycle_finder_sees_a_two_module_cycle():
    """The check itself can fail: a graph with a <-> b has one cycle, a -> c has none."""
    g = grimp.ImportGraph()
    for m in ("planner.a", "planner.b", "planner.c"):
        g.add_module(m)
    g.add_import(importer="planner.a", imported="planner.b")
    g.add_import(importer="planner.b", imported="planner.a")
    g.add_import(importer="planner.a", imported="planner.c")
    assert _cycles(g) == [["planner.a", "planner.b"]]


# -- size: a module does one thing; a function fits on a screen --------------------------------

_ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60  # in runtime/ and paretrain/


def _sizes() -> tuple[list[str], list[str]]:
    import ast

    modules, functions = [], []
    for package in ("planner", "runtime", "paretrain"):
        for path in sorted((_ROOT / package).rglob("*.py")):
            src = path.read_text(encoding="utf-8")
            rel = path.relative_to(_ROOT)
            if src.count("\n") > MAX_MODULE_LINES:
                modules.append(f"{rel}: {src.count(chr(10))} lines")
            if package == "planner":
                continue
            for node in ast.walk(ast.parse(src)):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    n = node.end_lineno - node.lineno + 1
                    if n > MAX_FUNCTION_LINES:
                        functions.append(f"{rel}:{node.lineno} {node.name}: {n} lines")
    return modules, functions


def test_no_module_over_400_lines():
    modules, _ = _sizes()
    assert not modules, f"modules over {MAX_MODULE_LINES} lines (split them): {modules}"


def test_no_function_over_60_lines_in_runtime_or_the_command_line():
    _, functions = _sizes()
    assert not functions, f"functions over {MAX_FUNCTION_LINES} lines (split them): {functions}"
