"""The search envelope in a shared storage (paretrain.runtime.trials.stored_envelope): however 8 processes
interleave, the reservations never pass the envelope; a settle gives the rest back; a dead
worker's reservation lapses after its lease, counted as spent in full, and its trial is lost.
Each storage the search supports: sqlite, a journal's file, and a real PostgreSQL server."""

from __future__ import annotations

import math
import multiprocessing
import os
import signal
import time
import uuid

import pytest

from paretrain.runtime.trials.stored_envelope import open_envelope

BUDGET = 1.0
PROCESSES = 8
ASKS = 10  # per process, each for 0.03-0.05: demand ~3.2x the envelope


@pytest.fixture(params=["sqlite", "journal", "postgresql"])
def storage(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'optuna.db'}"
    if request.param == "journal":
        return f"journal:{tmp_path / 'study.log'}"
    return request.getfixturevalue("postgres").create_database(f"envelope_{uuid.uuid4().hex[:8]}")


def _slowed(envelope, pause_s: float):
    """Widen the race: every transaction sleeps between reading the rows and writing them."""
    inner = envelope.book.transact

    def transact(study, change):
        return inner(study, lambda now, rows: (time.sleep(pause_s), change(now, rows))[1])

    envelope.book.transact = transact
    return envelope


def _racer(storage: str, worker: int, start, out, unlocked: bool = False) -> None:
    """Reserve ASKS times (settling every third trial at half what it held, which frees money
    for the others), all processes released at once; send back what was granted and spent."""
    if unlocked:  # the control: the same race with the file lock taken away
        import fcntl

        fcntl.flock = lambda *_: None
    envelope = _slowed(open_envelope(storage, "race", BUDGET, lease_s=60), 0.004)
    start.wait()
    granted, spent = {}, {}
    for k in range(ASKS):
        trial = worker * 1000 + k
        got = envelope.reserve(trial, 0.03 + 0.01 * (k % 3))
        if got > 0:
            granted[trial] = got
        if got > 0 and k % 3 == 0:
            spent[trial] = got / 2
            envelope.settle(trial, got / 2)
    envelope.close()
    out.put((granted, spent))


def _race(storage: str, unlocked: bool = False) -> tuple[dict[int, float], dict[int, float]]:
    ctx = multiprocessing.get_context("fork")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_racer, args=(storage, w, start, out, unlocked)) for w in range(PROCESSES)]
    for p in procs:
        p.start()
    start.set()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    granted = {t: g for r in results for t, g in r[0].items()}
    spent = {t: s for r in results for t, s in r[1].items()}
    return granted, spent


def test_eight_processes_racing_never_reserve_more_than_the_envelope(storage):
    open_envelope(
        storage, "race", BUDGET
    ).close()  # tables made before the race, as a worker's first call does
    granted, spent = _race(storage)
    state = open_envelope(storage, "race", BUDGET).state()
    still_held = math.fsum(g for t, g in granted.items() if t not in spent)
    settled = math.fsum(spent.values())
    # every grant is in the book (no lost update) and the book never passes the envelope
    assert state.held_usd == pytest.approx(still_held, abs=1e-12)
    assert state.spent_usd == pytest.approx(settled, abs=1e-12)
    assert state.spent_usd + state.held_usd <= BUDGET + 1e-12
    # demand was 3x the envelope: it was filled, and the settled halves were granted again
    assert state.spent_usd + state.held_usd == pytest.approx(BUDGET, abs=1e-9)
    assert math.fsum(granted.values()) > BUDGET


def test_the_race_passes_the_envelope_when_the_lock_is_taken_away(tmp_path):
    """The check above can fail: the same race on a journal's file without its lock over-reserves."""
    storage = f"journal:{tmp_path / 'study.log'}"
    granted, spent = _race(storage, unlocked=True)
    still_held = math.fsum(g for t, g in granted.items() if t not in spent)
    assert still_held + math.fsum(spent.values()) > BUDGET


def test_a_settle_gives_back_what_the_trial_did_not_spend(storage):
    env = open_envelope(storage, "settle", BUDGET, lease_s=60)
    try:
        assert env.reserve(0, 0.6) == pytest.approx(0.6)
        assert env.reserve(1, 0.6) == pytest.approx(0.4)  # only what is free
        assert env.reserve(2, 0.1) == 0.0
        assert env.reserve(0, 0.1) == 0.0  # a trial asking for more gets none either
        env.settle(0, 0.25)
        assert env.reserve(2, 0.5) == pytest.approx(0.35)
        state = env.state()
        assert (state.spent_usd, state.held_usd, state.lost) == (pytest.approx(0.25), pytest.approx(0.75), ())
        env.settle(1, None)  # spend unknown (the trial raised): counted as all it held
        assert env.state().spent_usd == pytest.approx(0.65)
    finally:
        env.close()


def test_a_renewed_lease_keeps_its_reservation(storage):
    env = open_envelope(storage, "renew", BUDGET, lease_s=1.0)
    try:
        env.reserve(7, 0.5)
        time.sleep(2.0)  # two leases; renewed every quarter of one
        assert env.state().lost == ()
        assert env.reserve(7, 0.1) == pytest.approx(0.1)
    finally:
        env.close()


def _holder(storage: str, ready) -> None:
    env = open_envelope(storage, "killed", BUDGET, lease_s=1.0)
    env.reserve(3, 0.4)
    ready.set()
    time.sleep(600)


def test_a_killed_workers_reservation_lapses_after_its_lease_counted_as_spent(storage):
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    worker = ctx.Process(target=_holder, args=(storage, ready))
    worker.start()
    assert ready.wait(60)
    other = open_envelope(storage, "killed", BUDGET, lease_s=1.0)
    try:
        assert other.state().held_usd == pytest.approx(0.4)
        os.kill(worker.pid, signal.SIGKILL)
        worker.join()
        time.sleep(1.5)
        state = other.state()
        assert state.lost == (3,) and state.held_usd == 0.0
        assert state.spent_usd == pytest.approx(0.4)  # it may have spent all it held
        assert other.reserve(4, 1.0) == pytest.approx(0.6)  # the rest of the envelope goes on
        other.settle(3, 0.1)  # were its worker alive after all, its ledger's figure replaces the full count
        assert other.state().spent_usd == pytest.approx(0.1)
    finally:
        other.close()
