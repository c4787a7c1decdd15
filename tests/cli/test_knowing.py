"""What knowing cost against a run, two ways: the profile's whole spend over the run's, and, for
a run that starts from the profile's checkpoint, net of the training it reused."""

from __future__ import annotations

import math

import pytest

from paretrain.output import knowing, knowing_line
from paretrain.planner.program.reuse import StartFrom


def _start(trained_usd: float) -> StartFrom:
    return StartFrom(
        "k.checkpoints/a.pt", "0" * 64, 4096, 3000.0, "a", 64, "fp32", "local/cpu-1", 0, trained_usd
    )


def test_a_run_from_scratch_is_charged_the_whole_profile():
    k = knowing(0.003, 0.001, None)
    assert k["share"] == k["knowing_share"] == 3.0
    assert k["reused_usd"] == 0 and knowing_line(k, 0, "the run's") == ""


def test_the_reused_training_moves_from_knowing_to_the_run():
    k = knowing(0.003, 0.001, _start(0.002))
    assert k["share"] == 3.0  # the whole profile over the run: still shown
    assert math.isclose(k["knowing_usd"], 0.001) and math.isclose(k["training_usd"], 0.003)
    assert math.isclose(k["knowing_share"], 1 / 3)
    line = knowing_line(k, 4096, "the run's")
    assert "$0.002000 trained the run's first 4096 samples" in line and "= 33% of the run's whole" in line


def test_a_start_never_counts_for_more_than_the_profile_spent():
    k = knowing(0.001, 0.001, _start(0.005))
    assert k["reused_usd"] == 0.001 and k["knowing_usd"] == 0.0


def test_plans_written_before_the_figure_read_as_nothing_reused():
    d = _start(0.002).to_dict()
    assert StartFrom.from_dict(d).trained_usd == 0.002
    del d["trained_usd"]
    assert StartFrom.from_dict(d).trained_usd == 0.0


def test_a_tiny_dollar_figure_is_never_shown_as_zero():
    from paretrain.console import usd

    assert usd(0.000376) == "0.000376" and usd(1.5) == "1.500000"  # the tables' six decimals
    assert usd(2.1e-07) == "2.1e-07" and float(usd(3.456e-09)) == pytest.approx(3.46e-09, rel=1e-9)
    assert usd(0.0) == "0.000000"
