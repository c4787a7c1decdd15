"""The deadline's timer: it cuts the user's code once the moment passes, only while that code
runs, and again if the code swallowed the first cut."""

from __future__ import annotations

import signal
import time

import pytest

from paretrain.runtime.train.deadline import Deadline, Overran


def test_code_still_running_at_the_deadline_is_cut_there():
    with Deadline() as d:
        d.set(time.perf_counter() + 0.05, "an evaluation")
        d.armed = True
        t0 = time.perf_counter()
        with pytest.raises(Overran, match="an evaluation"):
            time.sleep(5)
        assert time.perf_counter() - t0 < 4.0  # cut, not the 5 s sleep (a busy machine delays it)
        d.clear()


def test_nothing_is_cut_while_the_timer_is_not_armed():
    with Deadline() as d:
        d.set(time.perf_counter() + 0.01)
        d.armed = False  # paretrain's own bookkeeping: never cut
        time.sleep(0.1)
        d.clear()


def test_a_bare_except_that_swallows_the_cut_is_cut_again():
    with Deadline() as d:
        d.set(time.perf_counter() + 0.02)
        d.armed = True
        swallowed = 0
        with pytest.raises(Overran):
            for _ in range(100):
                try:
                    time.sleep(1)
                except BaseException:  # a workload that swallows everything
                    swallowed += 1
                    if swallowed > 1:
                        raise
        d.clear()
    assert swallowed == 2


def test_leaving_restores_the_handler_it_found():
    before = signal.getsignal(signal.SIGALRM)
    with Deadline():
        assert signal.getsignal(signal.SIGALRM) is not before
    assert signal.getsignal(signal.SIGALRM) is before
