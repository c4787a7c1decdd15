"""The house's rules, checked on the source: the import contracts and the size of modules and
functions (the architecture page of the docs, ``docs/architecture.md``).

The import contracts live in ``pyproject.toml`` (``[tool.importlinter]``) and are checked by
import-linter, which reads every import statement without running it (imports inside functions
and under ``if TYPE_CHECKING:`` included):

- the face (``paretrain.cli`` and friends) over the runtime over the planner;
- inside the planner: the plan and the search over the program over measurements over inputs;
- inside the runtime: a run and the pipeline over the trials over training over money and files;
- the planner imports no torch and no mlflow, directly or through any chain;
- no import cycle between sibling modules or packages.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


def test_the_import_contracts_are_kept():
    out = _lint_imports(ROOT)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]


def test_the_contracts_catch_a_planner_module_that_imports_torch(tmp_path):
    """The check itself can fail: a copy of the tree whose planner imports torch breaks it."""
    copy = tmp_path / "tree"
    copy.mkdir()
    (copy / "pyproject.toml").write_text(
        (ROOT / "pyproject.toml").read_text(encoding="utf-8"), encoding="utf-8"
    )
    subprocess.run(["cp", "-r", str(ROOT / "paretrain"), str(copy / "paretrain")], check=True)
    bad = copy / "paretrain" / "planner" / "errors.py"
    bad.write_text(
        bad.read_text(encoding="utf-8")
        + "\n\ndef _f():\n    import torch  # noqa: F401 (the import the contract must catch)\n",
        encoding="utf-8",
    )
    out = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=copy,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={"PYTHONPATH": str(copy), "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode != 0
    assert "BROKEN" in out.stdout and "torch" in out.stdout


# -- size: a module does one thing; a function fits on a screen --------------------------------


def _sizes(root: Path) -> tuple[list[str], list[str]]:
    modules, functions = [], []
    for path in sorted((root / "paretrain").rglob("*.py")):
        src = path.read_text(encoding="utf-8")
        rel = path.relative_to(root)
        if src.count("\n") > MAX_MODULE_LINES:
            modules.append(f"{rel}: {src.count(chr(10))} lines")
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = (node.end_lineno or node.lineno) - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    functions.append(f"{rel}:{node.lineno} {node.name}: {n} lines")
    return modules, functions


def test_no_module_over_400_lines():
    modules, _ = _sizes(ROOT)
    assert not modules, f"modules over {MAX_MODULE_LINES} lines (split them by concern): {modules}"


def test_no_function_over_60_lines():
    _, functions = _sizes(ROOT)
    assert not functions, f"functions over {MAX_FUNCTION_LINES} lines (split them): {functions}"


def test_the_size_check_sees_a_long_function(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    (tmp_path / "paretrain").mkdir()
    (tmp_path / "paretrain" / "m.py").write_text(textwrap.dedent("def f():\n") + body + "\n")
    assert _sizes(tmp_path)[1] == [f"paretrain/m.py:1 f: {MAX_FUNCTION_LINES + 1} lines"]


@pytest.mark.parametrize("package", ["planner", "runtime"])
def test_every_package_says_what_it_is_for(package):
    missing = [
        str(p.relative_to(ROOT))
        for p in sorted((ROOT / "paretrain" / package).rglob("__init__.py"))
        if not (ast.get_docstring(ast.parse(p.read_text(encoding="utf-8"))) or "").strip()
    ]
    assert not missing, f"packages with no docstring saying what they are for: {missing}"
