"""The ledger: exact sums, continuous ids across reopenings, torn lines survived."""

from __future__ import annotations

import json
import math
import random

import pytest

from paretrain.runtime.money.ledger import ExactSum, Ledger, read_charges, spend_by
from paretrain.runtime.money.report import ledger_report, period_start, project_spend


def test_spend_is_the_exact_sum_of_lines(tmp_path):
    rng = random.Random(0)
    amounts = [rng.uniform(0, 1e-6) for _ in range(5000)]
    with Ledger(tmp_path / "r.jsonl", "r") as led:
        for a in amounts:
            led.charge("compute", a, seconds=0.001, hardware="local/cpu-1")
        assert led.spent == math.fsum(amounts)
    lines = list(read_charges(tmp_path / "r.jsonl"))
    assert math.fsum(c["usd"] for c in lines) == math.fsum(amounts)


def test_reopening_continues_ids_and_spend(tmp_path):
    with Ledger(tmp_path / "r.jsonl", "r") as led:
        led.charge("compute", 0.1)
    with Ledger(tmp_path / "r.jsonl", "r") as led:
        assert led.spent == 0.1
        assert led.charge("checkpoint", 0.2) == "r:1"
    ids = [c["id"] for c in read_charges(tmp_path / "r.jsonl")]
    assert ids == ["r:0", "r:1"] and len(set(ids)) == 2


def test_torn_last_line_is_cut_before_appending(tmp_path):
    path = tmp_path / "r.jsonl"
    with Ledger(path, "r") as led:
        led.charge("compute", 0.5)
    with open(path, "a") as f:
        f.write('{"id":"r:1","usd":0.7')  # a crash mid-write
    with Ledger(path, "r") as led:
        assert led.spent == 0.5
        led.charge("compute", 0.25)
    assert [c["usd"] for c in read_charges(path)] == [0.5, 0.25]


def test_charges_must_be_finite_and_non_negative(tmp_path):
    with Ledger(tmp_path / "r.jsonl", "r") as led:
        for bad in (-1.0, math.nan, math.inf):
            with pytest.raises(ValueError):
                led.charge("compute", bad)
        with pytest.raises(ValueError):
            led.charge("beer", 1.0)


def test_exact_sum_has_no_rounding_error():
    s = ExactSum([1e16, 1.0, -1e16])
    assert s.value == 1.0


def test_report_groups_by_run_stage_kind(tmp_path):
    with Ledger(tmp_path / "a.jsonl", "a") as led:
        led.charge("compute", 0.1, stage="stage0")
        led.charge("compute", 0.2, stage="stage0")
        led.charge("checkpoint", 0.05, stage="stage1")
    with Ledger(tmp_path / "b.jsonl", "b") as led:
        led.charge("profile", 0.4, stage="profile")
    rows, total = ledger_report(tmp_path, "all")
    assert total == pytest.approx(0.75)
    assert [r[:3] for r in rows] == [
        ["a", "stage0", "compute"],
        ["a", "stage1", "checkpoint"],
        ["b", "profile", "profile"],
    ]
    assert project_spend(tmp_path, "month") == pytest.approx(0.75)
    assert spend_by(read_charges(tmp_path / "a.jsonl"), ("kind",))[("compute",)] == pytest.approx(0.3)


def test_period_start_of_month_is_the_first_at_midnight_utc():
    t = 1795899130.0  # 2026-11-28
    assert period_start("month", t) == 1793491200.0  # 2026-11-01T00:00:00Z
    assert period_start("day", t) <= t < period_start("day", t) + 86400
    assert json.dumps(period_start("all")) == "0.0"
