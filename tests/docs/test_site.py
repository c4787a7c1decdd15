"""The documentation site builds in strict mode, with its generated pages complete."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MKDOCS = Path(sys.executable).with_name("mkdocs")


def build(root: Path, out: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root), "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run(
        [str(MKDOCS), "build", "--strict", "--site-dir", str(out)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def text_of(page: Path) -> str:
    return page.read_text(encoding="utf-8")


def public_names(path: Path) -> list[str]:
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            return list(ast.literal_eval(node.value))
    raise AssertionError(f"{path} has no __all__")


def test_the_site_builds_in_strict_mode_with_every_generated_page_complete(tmp_path):
    out = tmp_path / "site"
    result = build(ROOT, out)
    assert result.returncode == 0, result.stderr[-3000:]

    spec = text_of(out / "reference" / "spec" / "index.html")
    schema = subprocess.run(
        [str(Path(sys.executable).with_name("paretrain")), "spec-schema"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
    )
    for section, node in json.loads(schema.stdout)["properties"].items():
        assert f"<code>{section}" in spec, f"the spec page lacks {section}"
        for field in node.get("properties", {}):
            assert f"<code>{section}.{field}</code>" in spec, f"the spec page lacks {section}.{field}"

    api = text_of(out / "reference" / "api" / "index.html")
    for name in public_names(ROOT / "paretrain" / "__init__.py"):
        assert name in api, f"the API page lacks paretrain.{name}"

    cli = text_of(out / "reference" / "cli" / "index.html")
    for command in ("init", "plan", "run", "compare", "worker", "sync", "spec-schema"):
        assert f"paretrain {command}" in cli, f"the CLI page lacks {command}"
    assert "Sentinel" not in cli

    bench = text_of(out / "benchmarks" / "index.html")
    for result_file in (ROOT / "benchmarks" / "results").glob("*.json"):
        assert f'id="{result_file.stem}"' in bench, f"the benchmarks page lacks {result_file.name}"
    for figure in (ROOT / "benchmarks" / "results").glob("*.png"):
        assert (out / "benchmarks" / "figures" / figure.name).is_file()


def test_a_broken_link_fails_the_strict_build(tmp_path):
    """The check above can fail: the same site with one link to a missing page does not build."""
    copy = tmp_path / "repo"
    copy.mkdir()
    shutil.copy(ROOT / "mkdocs.yml", copy / "mkdocs.yml")
    shutil.copytree(ROOT / "docs", copy / "docs", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("paretrain", "benchmarks", "examples", "pyproject.toml"):
        (copy / name).symlink_to(ROOT / name)
    page = copy / "docs" / "troubleshooting.md"
    page.write_text(page.read_text() + "\nSee [the missing page](no-such-page.md).\n")

    result = build(copy, tmp_path / "site")

    assert result.returncode != 0
    assert "no-such-page.md" in result.stderr
