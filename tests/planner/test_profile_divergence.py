"""A config whose convergence run diverged while profiling (``ConvergenceRun.diverged``) is marked
failed: the program has no choice for it and the plan's notes say why; with none left for that
reason the plan is infeasible for divergence, not for its target. The mark survives the profile
file."""

from __future__ import annotations

from dataclasses import replace

import pytest

from paretrain.planner.errors import InfeasiblePlan
from paretrain.planner.inputs.catalog import local_offers
from paretrain.planner.inputs.spec_parse import parse_spec
from paretrain.planner.measure.profile import build_profile
from paretrain.planner.measure.profile_file import profile_from_json, profile_to_json
from paretrain.planner.program.build import build_problem
from paretrain.runtime.train.workloads import WORKLOADS
from tests.conftest import small_spec
from tests.planner.synthetic_lab import SyntheticLab

WHY = "the training loss was nan at step 37"


def _profiled(diverging: set[str]):
    spec = parse_spec(small_spec(), "s", WORKLOADS)
    lab = SyntheticLab()
    profile = build_profile(spec, lab, list(spec.configs))
    runs = tuple(
        replace(r, diverged=WHY) if r.config_id in diverging and r.batch_size == 64 else r
        for r in profile.convergence
    )
    return spec, replace(profile, convergence=runs)


def _offers(spec):
    return local_offers(SyntheticLab().devices(), spec.hardware)


def test_a_diverged_config_has_no_choice_and_a_note():
    spec, profile = _profiled({"cnn-8x2"})
    problem, ctx = build_problem(spec, _offers(spec), profile, list(spec.configs))
    assert {c.config_id for c in problem.choices} == {"mlp-64x2"}
    [note] = [n for n in ctx.notes if n.startswith("cnn-8x2:")]
    assert (
        note
        == f"cnn-8x2: diverged while profiling ({WHY} of its run at batch 64); marked failed, not planned"
    )


def test_with_every_config_diverged_the_plan_is_infeasible_for_divergence():
    spec, profile = _profiled({"cnn-8x2", "mlp-64x2"})
    with pytest.raises(InfeasiblePlan, match="every one diverged while profiling") as err:
        build_problem(spec, _offers(spec), profile, list(spec.configs))
    assert err.value.binding == "divergence" and f"mlp-64x2: {WHY}" in str(err.value)


def test_without_divergence_both_configs_are_planned():
    spec, profile = _profiled(set())
    problem, _ = build_problem(spec, _offers(spec), profile, list(spec.configs))
    assert {c.config_id for c in problem.choices} == {"mlp-64x2", "cnn-8x2"}


def test_the_mark_survives_the_profile_file():
    _, profile = _profiled({"cnn-8x2"})
    again = profile_from_json(profile_to_json(profile), "p.json")
    assert again.diverged() == {"cnn-8x2": f"{WHY} of its run at batch 64"}
