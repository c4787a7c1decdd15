"""Shared fixtures: a small valid spec, written where a test wants it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

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
