"""The profile envelope's account across attempts (``paretrain.runtime.money.profile_account``):
what the attempts since the last finished measurement of a profile spent."""

from __future__ import annotations

import pytest

from paretrain.runtime.money.ledger import Ledger
from paretrain.runtime.money.profile_account import mark_written, open_spend


def charge(path, *amounts):
    with Ledger(path, "profile-k") as ledger:
        for usd in amounts:
            ledger.charge("profile", usd, stage="profile")


def test_no_ledger_has_nothing_open(tmp_path):
    assert open_spend(tmp_path / "profile-k.jsonl", profile_exists=False) == 0.0


def test_unfinished_attempts_add_up_until_a_profile_is_written(tmp_path):
    path = tmp_path / "profile-k.jsonl"
    charge(path, 0.25, 0.125)  # a first attempt, stopped
    charge(path, 0.0625)  # a second, stopped
    assert open_spend(path, profile_exists=False) == 0.4375
    mark_written(path, "profile-k")
    assert open_spend(path, profile_exists=True) == 0.0


@pytest.mark.parametrize("profile_exists", [True, False])
def test_a_remeasurement_after_a_written_profile_counts_only_its_own_attempts(tmp_path, profile_exists):
    path = tmp_path / "profile-k.jsonl"
    charge(path, 0.5)
    mark_written(path, "profile-k")
    charge(path, 0.125)  # --reprofile, stopped (or its profile file deleted since)
    assert open_spend(path, profile_exists=profile_exists) == 0.125


def test_a_ledger_from_before_the_account_was_kept_is_closed_by_its_profile_file(tmp_path):
    path = tmp_path / "profile-k.jsonl"
    charge(path, 0.5)  # no profile_written line: written by an older paretrain
    assert open_spend(path, profile_exists=True) == 0.0
    assert open_spend(path, profile_exists=False) == 0.5
