"""Which changes measure a profile anew: a user workload's code does, the folder it lies in
does not."""

from __future__ import annotations

import shutil

from paretrain.runtime.profiling import key_of
from paretrain.runtime.spec_files import read_spec
from paretrain.runtime.train.workloads import workload_source_digest
from tests.conftest import ROOT

EXAMPLE = ROOT / "examples" / "custom_workload"


def copy_example(dest):
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns("__pycache__"))
    return read_spec(dest / "digits.yaml")


def key(spec):
    return key_of(spec, spec.configs)


def test_a_copy_of_the_project_in_another_folder_has_the_same_key(tmp_path):
    here, there = copy_example(tmp_path / "a"), copy_example(tmp_path / "b" / "deeper")
    assert here.workload.name != there.workload.name  # two absolute paths
    assert key(here) == key(there)


def test_editing_the_workload_file_changes_the_key(tmp_path):
    spec = copy_example(tmp_path / "a")
    before = key(spec)
    f = tmp_path / "a" / "digits_workload.py"
    f.write_text(f.read_text() + "\n# hidden width changed\n")
    assert key(read_spec(tmp_path / "a" / "digits.yaml")) != before


def test_editing_a_helper_module_beside_it_changes_the_key(tmp_path):
    spec = copy_example(tmp_path / "a")
    helper = tmp_path / "a" / "model.py"
    helper.write_text("WIDTH = 32\n")
    before = key(spec)
    helper.write_text("WIDTH = 64\n")
    after = key(spec)
    assert after != before
    (tmp_path / "a" / "notes.txt").write_text("not code")  # only Python files count
    assert key(spec) == after


def test_a_built_in_workload_has_no_source_digest_of_its_own():
    assert workload_source_digest("mnist1d") == ""
    assert workload_source_digest("python:json:loads") != ""  # a module's file is found too
