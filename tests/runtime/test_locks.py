"""One writer of money at a time: a ledger's lock, the wait for a profile another process
measures, and what a second writer is told (``paretrain.runtime.locks``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from paretrain.runtime.locks import Busy, held, holder
from paretrain.runtime.money.ledger import Ledger
from tests.conftest import ROOT

HAS_PROC_LOCKS = Path("/proc/locks").exists()


def test_a_second_writer_of_a_ledger_is_refused_before_it_reads_it(tmp_path: Path):
    path = tmp_path / "run-x.jsonl"
    first = Ledger(path, "run-x")
    first.charge("compute", 0.25, seconds=1.0, stage="train", hardware="local/cpu-1")
    first.sync()
    before = path.read_bytes()
    with pytest.raises(Busy) as err:
        Ledger(path, "run-x")
    msg = str(err.value)
    assert str(path) in msg and "To fix" in msg and "\n" not in msg
    assert path.read_bytes() == before  # nothing read, cut or written
    first.close()
    with Ledger(path, "run-x") as again:  # the writer closed it: the next one goes on from it
        assert again.spent == 0.25


HOLD = textwrap.dedent(
    """
    import sys
    from paretrain.runtime.money.ledger import Ledger
    led = Ledger(sys.argv[1], "run-x")
    led.charge("compute", 0.5, seconds=1.0, stage="train", hardware="local/cpu-1")
    led.sync()
    print("holding", flush=True)
    sys.stdin.read()
    """
)


def test_a_ledger_another_process_writes_is_refused_until_it_dies_even_by_kill_9(tmp_path: Path):
    path = tmp_path / "run-x.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "holding"
        with pytest.raises(Busy) as err:
            Ledger(path, "run-x")
        if HAS_PROC_LOCKS:
            assert holder(path) == proc.pid
            assert f"process {proc.pid}" in str(err.value) and f"kill -TERM {proc.pid}" in str(err.value)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    with Ledger(path, "run-x") as led:  # the kernel dropped the dead process's lock
        assert led.spent == 0.5
    assert holder(path) is None


def test_a_waiter_is_told_once_and_goes_on_when_the_holder_lets_go(tmp_path: Path):
    lock = tmp_path / "p.lock"
    told: list[str] = []
    asked = threading.Event()
    got: list[bool] = []

    def wait(msg: str) -> None:
        told.append(msg)
        asked.set()

    def waiter() -> None:
        with held(lock, "this profile", wait=wait) as waited:
            got.append(waited)

    with held(lock, "this profile") as waited_first:
        assert waited_first is False
        t = threading.Thread(target=waiter)
        t.start()
        assert asked.wait(timeout=60), "the waiter never said it waits"
        assert not got  # it holds nothing while the first holder does
    t.join(timeout=60)
    assert got == [True]
    assert len(told) == 1 and "waiting for" in told[0] and "this profile" in told[0]


def test_a_signal_while_waiting_ends_the_wait_without_the_lock(tmp_path: Path):
    lock = tmp_path / "p.lock"

    class Stopped(Exception):
        pass

    def check() -> None:
        raise Stopped

    with (
        held(lock, "this profile"),
        pytest.raises(Stopped),
        held(lock, "this profile", wait=lambda msg: None, check=check),
    ):
        pytest.fail("the lock was taken while another holder had it")
    with held(lock, "this profile") as waited:  # nothing left held by the stopped waiter
        assert waited is False


def test_a_lock_without_a_wait_is_refused_at_once_in_one_line(tmp_path: Path):
    lock = tmp_path / "locks" / "resume.lock"
    with (
        held(lock, "--resume of candidate c"),
        pytest.raises(Busy) as err,
        held(lock, "--resume of candidate c", fix="two resumes would each spend"),
    ):
        pass
    msg = str(err.value)
    assert msg.startswith(str(lock)) and "--resume of candidate c" in msg and "two resumes" in msg
    assert "\n" not in msg
