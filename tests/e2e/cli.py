"""What the end-to-end tests share: the command line run as a user runs it, and a ledger's total."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

from paretrain.runtime.money.ledger import read_charges
from tests.conftest import ROOT

__all__ = ["ledger_total", "paretrain"]


def paretrain(cwd: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """``paretrain ARGS`` in ``cwd``, in a fresh process, with MLflow at its default store there."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(
        [sys.executable, "-m", "paretrain.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def ledger_total(cwd: Path, prefix: str) -> float:
    """The exact sum of the ledgers under ``cwd`` whose names start with ``prefix``."""
    files = sorted((cwd / ".paretrain" / "ledger").glob(f"{prefix}*.jsonl"))
    assert files, f"no ledger {prefix}* in {cwd}"
    return math.fsum(c["usd"] for f in files for c in read_charges(f))
