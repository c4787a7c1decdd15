"""A new run's id is its own: runs of one candidate started in the same second, by one process or
several, never share an id, a run folder or a ledger (``run_setup.claim_run_id``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from paretrain.runtime.run.setup import claim_run_id
from tests.conftest import ROOT

BASE = "run-7195d22e-p01-20261208T025458"


def test_a_second_run_in_the_same_second_gets_the_next_id(tmp_path: Path):
    state = tmp_path / ".paretrain"
    assert claim_run_id(state, BASE) == BASE
    assert claim_run_id(state, BASE) == f"{BASE}-2"
    assert claim_run_id(state, BASE) == f"{BASE}-3"
    assert sorted(p.name for p in (state / "runs").iterdir()) == [BASE, f"{BASE}-2", f"{BASE}-3"]


def test_an_id_whose_ledger_exists_is_not_reused(tmp_path: Path):
    state = tmp_path / ".paretrain"
    (state / "ledger").mkdir(parents=True)
    (state / "ledger" / f"{BASE}.jsonl").write_text("")  # its run folder was removed by hand
    assert claim_run_id(state, BASE) == f"{BASE}-2"


CLAIM = "import sys; from pathlib import Path; from paretrain.runtime.run.setup import claim_run_id; print(claim_run_id(Path(sys.argv[1]), sys.argv[2]))"


def test_processes_claiming_one_id_at_once_each_get_their_own(tmp_path: Path):
    state = tmp_path / ".paretrain"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIM, str(state), BASE], stdout=subprocess.PIPE, text=True, env=env
        )
        for _ in range(4)
    ]
    ids = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sorted(ids) == sorted([BASE, f"{BASE}-2", f"{BASE}-3", f"{BASE}-4"])
