"""The one line a run's fault ends with (``paretrain.runtime.run.runs.fault_message``)."""

from __future__ import annotations

from paretrain.runtime.run.runs import fault_message


def test_a_divergence_says_what_stopping_saved_or_that_the_prediction_was_already_spent():
    early = fault_message("diverged", "the loss was nan at step 3", 0.25, 1.0, 0.75)
    assert "spent $0.25 of $1; stopping saved $0.5 of the candidate's predicted $0.75." in early
    late = fault_message("diverged", "the loss was nan at step 300", 0.75, 1.0, 0.5)
    assert "spent $0.75 of $1; the candidate's predicted $0.5 was already spent." in late
    assert "saved" not in late
