"""Shared fixtures: a small valid spec, written where a test wants it, and its profile measured
once per test process."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from filelock import FileLock

from paretrain.runtime.workspace import CACHE_ENV

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("MPLBACKEND", "Agg")


def small_spec(**override: object) -> dict:
    """A spec small enough to profile, plan and run in well under a minute on one core."""
    spec = {
        "name": "mnist1d-test",
        "workload": {"name": "mnist1d", "samples": 3000, "val_fraction": 0.15, "seed": 0},
        "configs": [
            {"id": "mlp-64x2", "family": "mlp", "width": 64, "depth": 2, "lr": 0.003},
            {"id": "cnn-8x2", "family": "cnn", "channels": 8, "depth": 2, "kernel": 5, "lr": 0.003},
        ],
        "target": {"goal": 0.4, "levels": [0.4, 0.5], "max_samples": 40000},
        "budget": {"total_usd": 0.01, "envelopes": {"profile": 0.003, "search": 0.001, "train": 0.006}},
        "deadline_s": 300,
        "hardware": {"allow": ["local/cpu-1", "local/cpu-2"]},
        "planner": {
            "stages": 2,
            "batch_sizes": [32, 128],
            "convergence_batch_sizes": [16, 64, 256],
            # the full measurement: these tests pin what it measures; truncated runs have their own
            "convergence": "full",
            "profile_steps": 10,
        },
        "runtime": {"eval_every_samples": 1000, "checkpoint_every_s": 5},
    }
    for key, value in override.items():
        section, _, field = key.partition("__")
        if field:
            spec[section][field] = value  # type: ignore[index]  (a section is a mapping here)
        else:
            spec[section] = value
    return spec


@pytest.fixture(scope="session", autouse=True)
def shared_data_cache(tmp_path_factory, worker_id: str) -> Path:
    """The session's processes share one folder of generated data (``PARETRAIN_CACHE_DIR``), as
    the projects on one machine may: a dataset is made once per session, not once per test
    folder (MNIST-1D's 3,000 examples take seconds of CPU to make). The tests about the cache
    itself give their own folder."""
    base = tmp_path_factory.getbasetemp()
    shared = (base if worker_id == "master" else base.parent) / "data-cache"
    shared.mkdir(parents=True, exist_ok=True)
    os.environ[CACHE_ENV] = str(shared)
    return shared


@pytest.fixture
def write_spec(tmp_path: Path):
    def write(data: dict | str, name: str = "spec.yaml") -> Path:
        p = tmp_path / name
        p.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
        return p

    return write


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server for the session (``benchmarks._postgres``: initdb and pg_ctl on a
    free loopback port, in a temporary folder); ``postgres.create_database(name)`` gives a URL.
    Never skipped: without the server binaries the test fails saying how to install them."""
    from benchmarks._postgres import PostgresServer, PostgresUnavailable

    try:
        server = PostgresServer()
        server.start()
    except PostgresUnavailable as err:
        pytest.fail(str(err), pytrace=False)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def small_profiles(tmp_path_factory, worker_id: str) -> Path:
    """The profiles folder of ``small_spec()``, measured once per test session by the real CLI
    (``paretrain profile``; under pytest-xdist the workers share it, the first one measures it
    under a file lock). A test that plans ``small_spec()`` but is not about measuring it starts
    from a copy (``profiled``): its plan reuses the profile, as a user's second plan does. The
    ``paretrain profile``'s output is kept beside it, in ``profile.out``."""
    base = tmp_path_factory.getbasetemp()
    shared = base if worker_id == "master" else base.parent  # the session's folder, above the workers'
    cwd = shared / "small-profile"
    with FileLock(str(shared / "small-profile.lock")):
        profiles = cwd / ".paretrain" / "profiles"
        if not profiles.is_dir():
            _measure_small_profile(cwd)
        return profiles


def _measure_small_profile(cwd: Path) -> None:
    cwd.mkdir(parents=True, exist_ok=True)
    (cwd / "spec.yaml").write_text(yaml.safe_dump(small_spec()))
    r = subprocess.run(
        [sys.executable, "-m", "paretrain.cli", "profile", "spec.yaml"],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    (cwd / "profile.out").write_text(r.stdout)


@pytest.fixture
def profiled(small_profiles: Path, tmp_path: Path) -> Path:
    """``tmp_path`` holding ``small_spec()`` as ``spec.yaml`` and a copy of its profile in its
    workspace (``.paretrain/profiles``)."""
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(small_spec()))
    shutil.copytree(small_profiles, tmp_path / ".paretrain" / "profiles")
    return tmp_path


def as_from_a_terminal() -> None:
    """``preexec_fn`` for a child a test sends SIGINT: SIGINT at its default, as a command typed
    in a terminal has it. A suite started in the background by a non-interactive shell
    (``make test &``) has SIGINT ignored, every child inherits that, and paretrain keeps a signal
    its parent chose to ignore ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
