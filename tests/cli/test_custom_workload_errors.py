"""A user's workload is imported and checked before anything is spent: a spec naming a file that
is missing, does not import, lacks the factory, or whose factory returns no workload exits 2
with one line and writes nothing; the shipped example passes the same check."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from paretrain.cli import cli
from paretrain.runtime.spec_files import read_spec
from paretrain.runtime.train.workloads import user_factory
from paretrain.workload import check_workload
from tests.conftest import ROOT, small_spec

EXAMPLE = ROOT / "examples" / "custom_workload"

NOT_A_WORKLOAD = '''
from paretrain.workload import WorkloadInfo, Family, Param

class HalfDone:
    """Declares itself but gives no data and no model."""
    info = WorkloadInfo(name="half", families=(Family("mlp", (Param("width", "int", 8, 64),)),))

def make_workload(**args):
    return HalfDone()
'''


def files(folder: Path) -> set[str]:
    """What is in ``folder``, less the bytecode Python itself caches when it imports a file."""
    return {
        str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    }


def one_error_line(result) -> str:
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def user_spec(folder: Path, workload: dict, source: str | None) -> None:
    if source is not None:
        (folder / "my_workload.py").write_text(source)
    data = small_spec(workload=workload, configs=[{"id": "mlp-8", "family": "mlp", "width": 8}])
    (folder / "spec.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.mark.parametrize("command", ["plan", "profile"])
def test_factory_returning_no_workload_exits_2_naming_what_is_missing_and_writes_nothing(
    command, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    user_spec(tmp_path, {"file": "./my_workload.py", "factory": "make_workload"}, NOT_A_WORKLOAD)
    before = files(tmp_path)
    result = CliRunner().invoke(cli, [command, "spec.yaml", "-o", "out.json"])
    assert result.exit_code == 2, result.output
    line = one_error_line(result)
    assert "field 'workload' must return a workload" in line
    assert "got 'HalfDone'" in line
    assert "has no 'train_dataset'; has no 'val_dataset'; has no 'build'" in line
    assert "Traceback" not in result.output
    assert files(tmp_path) == before


def test_spec_naming_a_missing_file_exits_2_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    user_spec(tmp_path, {"file": "./nowhere.py", "factory": "make_workload"}, None)
    result = CliRunner().invoke(cli, ["plan", "spec.yaml", "-o", "plan.json"])
    assert result.exit_code == 2, result.output
    line = one_error_line(result)
    assert "field 'workload.file' must be an existing Python file" in line
    assert "nowhere.py" in line
    assert files(tmp_path) == {"spec.yaml"}


@pytest.mark.parametrize(
    "source, factory, expected",
    [
        (
            "raise ImportError('no module named torchvision')\n",
            "make_workload",
            "field 'workload.file' must import",
        ),
        (
            "def something_else():\n    return None\n",
            "make_workload",
            "field 'workload.factory' must name a function of",
        ),
        (
            "def make_workload(seed=0):\n    return None\n",
            "make_workload",
            "field 'workload.args' must be accepted by the factory",
        ),  # args has a key it does not take
    ],
)
def test_file_that_does_not_import_or_lacks_its_factory_exits_2(
    source, factory, expected, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    user_spec(tmp_path, {"file": "./my_workload.py", "factory": factory, "args": {"width": 3}}, source)
    before = files(tmp_path)
    result = CliRunner().invoke(cli, ["plan", "spec.yaml", "-o", "plan.json"])
    assert result.exit_code == 2, result.output
    assert expected in one_error_line(result)
    assert not (tmp_path / "plan.json").exists() and not (tmp_path / ".paretrain").exists()
    assert not (tmp_path / "mlflow.db").exists()
    assert files(tmp_path) == before


@pytest.mark.parametrize(
    "source",
    [
        "def make_workload(**args):\n    return None\n",
        "import sys\nsys.exit(0)\n",  # at import: the workload's fault, not the end of paretrain
    ],
    ids=["args-a-list", "exits-at-import"],
)
def test_a_bad_args_section_or_a_file_that_exits_on_import_exits_2(source, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = [1, 2] if "args" in source else {}
    user_spec(tmp_path, {"file": "./my_workload.py", "factory": "make_workload", "args": args}, source)
    before = files(tmp_path)
    result = CliRunner().invoke(cli, ["plan", "spec.yaml", "-o", "plan.json"])
    assert result.exit_code == 2, result.output
    line = one_error_line(result)
    expected = "field 'workload.args' must be a mapping" if args else "field 'workload.file' must import"
    assert expected in line, line
    assert files(tmp_path) == before


def test_example_factory_returns_a_workload_that_passes_the_check():
    make = user_factory(f"file:{EXAMPLE / 'digits_workload.py'}:make_workload")
    workload = make(seed=0, val_fraction=0.2)
    assert check_workload(workload, "digits_workload.py") == []
    assert workload.info.family_names == ("mlp", "cnn")
    assert workload.info.target == "val_accuracy"
    assert len(workload.train_dataset()) + len(workload.val_dataset()) == 1797


def test_example_spec_validates_with_its_workload_file_made_absolute():
    spec = read_spec(EXAMPLE / "digits.yaml")
    assert spec.workload.name == f"file:{EXAMPLE / 'digits_workload.py'}:make_workload"
    assert dict(spec.workload.args) == {"seed": 0, "val_fraction": 0.2}
    assert spec.target.metric == "val_accuracy"
