"""Where a project's files go: the data cache is the project's own unless PARETRAIN_CACHE_DIR
names one folder for every project on the machine."""

from __future__ import annotations

import pytest
import torch

from paretrain.planner.errors import InputError
from paretrain.runtime.train.workloads.mnist1d import Mnist1D
from paretrain.runtime.workspace import CACHE_ENV, Workspace


def test_the_cache_is_the_projects_own_without_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv(CACHE_ENV, raising=False)
    assert Workspace(tmp_path).cache == tmp_path / ".paretrain" / "cache"


def test_two_projects_share_the_data_the_first_one_made(tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    monkeypatch.setenv(CACHE_ENV, str(shared))
    a, b = Workspace(tmp_path / "a"), Workspace(tmp_path / "b")
    assert a.cache == b.cache == shared
    first = Mnist1D(samples=300, val_fraction=0.2, seed=4, cache_dir=a.cache).data()
    (made,) = shared.glob("mnist1d-300-4.npz")
    stamp = made.stat().st_mtime_ns
    second = Mnist1D(samples=300, val_fraction=0.2, seed=4, cache_dir=b.cache).data()
    assert torch.equal(first.x_train, second.x_train) and first.digest == second.digest
    assert made.stat().st_mtime_ns == stamp  # read, not made again
    assert not (tmp_path / "a" / ".paretrain").exists() and not (tmp_path / "b" / ".paretrain").exists()


def test_a_cache_folder_is_checked_without_being_made(tmp_path, monkeypatch):
    ws = Workspace(tmp_path / "project")
    monkeypatch.delenv(CACHE_ENV, raising=False)
    ws.check_cache()  # the project's own: nothing to check
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "not" / "yet" / "made"))
    ws.check_cache()  # may be made under a writable folder
    assert not (tmp_path / "not").exists()
    (tmp_path / "a-file").write_text("")
    for bad in (tmp_path / "a-file", tmp_path / "a-file" / "below"):
        monkeypatch.setenv(CACHE_ENV, str(bad))
        with pytest.raises(InputError, match=f"{CACHE_ENV} must name a folder"):
            ws.check_cache()
