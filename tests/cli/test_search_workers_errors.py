"""Bad input to ``paretrain search --workers``: exit 2, one line, nothing spent or written."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from benchmarks._postgres import _free_port
from paretrain.cli import cli
from tests.conftest import small_spec


def files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def search(tmp_path: Path, monkeypatch, *args: str):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(small_spec(search={"trials": 2})))
    before = files(tmp_path)
    result = CliRunner().invoke(cli, ["search", "spec.yaml", *args])
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("paretrain: ") and "To fix" in lines[0], result.stderr
    assert "Traceback" not in result.output
    assert files(tmp_path) == before  # no ledger, no study, no MLflow store
    return lines[0]


@pytest.mark.parametrize("workers", ["0", "-3"])
def test_workers_below_one_is_refused(tmp_path, monkeypatch, workers):
    assert f"--workers must be >= 1; got {workers}" in search(tmp_path, monkeypatch, "--workers", workers)


def test_an_unreachable_postgres_server_is_refused_before_any_worker_starts(tmp_path, monkeypatch):
    url = f"postgresql://paretrain:secret@127.0.0.1:{_free_port()}/study"  # nothing listens there
    line = search(tmp_path, monkeypatch, "--storage", url, "--workers", "2")
    assert "--storage: cannot connect to postgresql://paretrain:***@127.0.0.1" in line
    assert "secret" not in line


def test_a_postgres_url_without_its_driver_says_which_extra_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if paretrain[postgres] were not installed
    line = search(tmp_path, monkeypatch, "--storage", "postgresql://u@127.0.0.1:5432/study", "--workers", "2")
    assert "needs a database driver that is not installed" in line
    assert "pip install 'paretrain[postgres]'" in line


def test_a_storage_that_is_no_url_is_refused(tmp_path, monkeypatch):
    line = search(tmp_path, monkeypatch, "--storage", "postgres on the other machine", "--workers", "2")
    assert "is not a storage URL" in line
