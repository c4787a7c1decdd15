"""Atomic writes (``paretrain.runtime.files``): whole files, with the mode ``open`` gives."""

from __future__ import annotations

import os
import stat

from paretrain.runtime.files import FILE_MODE, atomic_write_text


def test_an_atomic_write_leaves_the_whole_file_with_the_mode_open_gives(tmp_path):
    path = tmp_path / "plan.json"
    atomic_write_text(path, "{}\n")
    with open(tmp_path / "beside.txt", "w") as f:  # what a plain open gives here
        f.write("x")
    assert path.read_text() == "{}\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == FILE_MODE
    assert stat.S_IMODE(os.stat(tmp_path / "beside.txt").st_mode) == FILE_MODE
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_private_write_is_the_owners_alone(tmp_path):
    path = tmp_path / "plan.json"
    atomic_write_text(path, "{}\n", private=True)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_a_uri_with_a_password_makes_a_file_private():
    from paretrain.runtime.files import has_password

    assert has_password(None, "postgresql://paretrain:s3cret@db.example:5432/optuna")
    assert not has_password("sqlite:///mlflow.db", "postgresql://paretrain@db.example/optuna", None)
    assert not has_password("http://[::1", "")  # not a URI: nothing to hide, no error


def test_strict_json_writes_a_non_finite_number_as_null():
    import json

    from paretrain.runtime.files import strict_json

    text = strict_json({"val_mse": float("inf"), "loss": [1.0, float("nan")], "ok": 2.5})
    assert "Infinity" not in text and "NaN" not in text
    assert json.loads(text) == {"val_mse": None, "loss": [1.0, None], "ok": 2.5}
