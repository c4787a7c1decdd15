"""The plan file across its versions: a typed spec parsed once, schema 4 written, schemas 3 and 2
read."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from paretrain.planner.errors import InputError, SpecError
from paretrain.planner.inputs.spec import Spec, spec_to_dict
from paretrain.planner.plan.plan_file import PLAN_SCHEMA, plan_from_json, plan_to_json
from tests.conftest import small_spec
from tests.planner.test_plan import plan_text

#: a plan file written by paretrain before schema 3 (``predicted.accuracy``), from small_spec()
V2 = Path(__file__).parent / "data" / "plan_v2.json"
#: a plan file written by paretrain before schema 4 (no candidate ``start``), from small_spec()
V3 = Path(__file__).parent / "data" / "plan_v3.json"


def test_the_plans_spec_is_a_spec_parsed_once_and_written_as_its_mapping():
    text = plan_text(small_spec())
    plan = plan_from_json(text, "plan.json")
    assert isinstance(plan.spec, Spec)
    assert plan.spec.path == "plan.json:spec"
    assert plan.spec.budget.train_usd == pytest.approx(0.006)
    assert plan.metric.name == "val_accuracy" and plan.metric.maximize
    assert json.loads(text)["spec"] == spec_to_dict(plan.spec)
    assert json.loads(text)["spec_digest"] == plan.spec.digest


def test_a_changed_spec_changes_the_fingerprint_and_reads_back():
    plan = plan_from_json(plan_text(small_spec()), "plan.json")
    spec = replace(plan.spec, runtime=replace(plan.spec.runtime, checkpoint_every_s=7.0))
    changed = replace(plan, spec=spec)
    assert changed.fingerprint != plan.fingerprint
    again = plan_from_json(plan_to_json(changed), "plan.json")
    assert again.spec.runtime.checkpoint_every_s == 7.0
    assert again.fingerprint == changed.fingerprint


def test_a_bad_spec_in_a_plan_file_names_its_field():
    d = json.loads(plan_text(small_spec()))
    d["spec"]["budget"]["total_usd"] = -1
    with pytest.raises(SpecError, match=r"plan\.json:spec.*budget\.total_usd"):
        plan_from_json(json.dumps(d), "plan.json")


def test_a_schema_2_plan_file_still_reads_its_levels_and_spec():
    old = json.loads(V2.read_text())
    assert old["schema"] == "paretrain.plan/2"
    plan = plan_from_json(V2.read_text(), str(V2))
    assert [c.id for c in plan.candidates] == [c["id"] for c in old["pareto"]]
    assert [c.level for c in plan.candidates] == [c["predicted"]["accuracy"] for c in old["pareto"]]
    assert [c.cost_usd for c in plan.candidates] == [c["predicted"]["cost_usd"] for c in old["pareto"]]
    assert isinstance(plan.spec, Spec) and plan.spec.name == old["spec"]["name"]
    assert plan.spec.planner.batch_sizes == tuple(old["spec"]["planner"]["batch_sizes"])
    assert plan.candidate("knee").id == old["chosen"]


def test_a_schema_3_plan_file_reads_as_runs_from_scratch_and_is_refused_when_edited():
    old = json.loads(V3.read_text())
    assert old["schema"] == "paretrain.plan/3" and all("start" not in c for c in old["pareto"])
    plan = plan_from_json(V3.read_text(), str(V3))
    assert [c.id for c in plan.candidates] == [c["id"] for c in old["pareto"]]
    assert all(c.start is None and c.reused_samples == 0 for c in plan.candidates)
    assert json.loads(plan_to_json(plan))["schema"] == PLAN_SCHEMA == "paretrain.plan/4"
    with pytest.raises(InputError, match="fingerprint"):
        plan_from_json(V3.read_text().replace('"chosen": "', '"chosen": "x', 1), "old.json")


def test_a_schema_2_plan_file_is_written_again_as_schema_4():
    plan = plan_from_json(V2.read_text(), str(V2))
    text = plan_to_json(plan)
    d = json.loads(text)
    assert d["schema"] == PLAN_SCHEMA
    assert [c["predicted"]["level"] for c in d["pareto"]] == [c.level for c in plan.candidates]
    again = plan_from_json(text, "plan3.json")
    assert again.candidates == plan.candidates and again.spec == replace(plan.spec, path="plan3.json:spec")


def test_an_edited_schema_2_plan_file_is_refused():
    edited = V2.read_text().replace('"chosen": "', '"chosen": "x', 1)
    with pytest.raises(InputError, match="fingerprint"):
        plan_from_json(edited, "old.json")


def test_a_schema_2_plan_without_its_level_says_what_is_missing():
    d = json.loads(V2.read_text())
    del d["pareto"][0]["predicted"]["accuracy"]
    with pytest.raises(InputError, match=r"missing or malformed.*accuracy"):
        plan_from_json(json.dumps(d), "old.json")


def test_a_plan_whose_stage_has_no_positive_b_noise_is_refused_before_a_run_divides_by_it():
    """An older paretrain wrote B_noise 0 where a truncated profile's noise trend collapsed; its
    run died on a division by zero. Such a plan is bad input: one line, naming the stage."""
    plan = plan_from_json(V2.read_text(), str(V2))
    cand = plan.candidates[0]
    broken = replace(cand, stages=(replace(cand.stages[0], b_noise=0.0), *cand.stages[1:]))
    text = plan_to_json(replace(plan, candidates=(broken, *plan.candidates[1:])))
    with pytest.raises(
        InputError, match=rf"pareto\[{cand.id}\]\.stages\[0\]\.b_noise.*got 0\.0.*paretrain plan"
    ):
        plan_from_json(text, "plan.json")


@pytest.mark.parametrize(
    ("stage", "field", "got"),
    [
        ({"hardware": "local/gpu-9"}, "hardware", "'local/gpu-9'"),
        ({"batch_size": -4}, "batch_size", "-4"),
        ({"samples": "many"}, "samples", "'many'"),
        ({"steps": 2.5}, "steps", "2.5"),
        ({"lr": -0.001}, "lr", "-0.001"),
        ({"workers": True}, "workers", "True"),
        ({"precision": "fp8"}, "precision", "'fp8'"),
        ({"index": 3}, "index", "3"),
    ],
    ids=["hardware", "batch", "samples", "steps", "lr", "workers", "precision", "index"],
)
def test_a_stage_a_run_could_not_use_is_refused_even_with_its_fingerprint_recomputed(stage, field, got):
    """A fingerprint is a checksum: an edited plan written back through ``plan_to_json`` carries
    a matching one. Its fields are checked all the same: one line naming the field, the rule and
    the value, not an internal error half-way into a run."""
    plan = plan_from_json(V3.read_text(), str(V3))
    cand = plan.candidates[0]
    broken = replace(cand, stages=(replace(cand.stages[0], **stage), *cand.stages[1:]))
    text = plan_to_json(replace(plan, candidates=(broken, *plan.candidates[1:])))
    with pytest.raises(InputError) as info:
        plan_from_json(text, "plan.json")
    line = str(info.value)
    assert f"plan.json: field 'pareto[{cand.id}].stages[0].{field}' must be " in line, line
    assert f"; got {got}. To fix: write it again with 'paretrain plan" in line, line


@pytest.mark.parametrize("which", ["chosen", "cheapest", "fastest"])
def test_a_plan_whose_named_candidate_is_not_in_it_is_refused(which):
    plan = plan_from_json(V3.read_text(), str(V3))
    text = plan_to_json(replace(plan, **{which: "p99"}))
    with pytest.raises(
        InputError, match=rf"field '{which}' must be one of the candidates' ids \(.*\); got 'p99'"
    ):
        plan_from_json(text, "plan.json")


def test_an_edited_plan_is_refused_without_being_told_the_fingerprint_that_would_pass():
    plan = plan_from_json(plan_text(small_spec()), "plan.json")
    cand = plan.candidates[0]
    edited = replace(cand, stages=(replace(cand.stages[0], batch_size=8), *cand.stages[1:]))
    d = json.loads(plan_to_json(replace(plan, candidates=(edited, *plan.candidates[1:]))))
    passing, d["fingerprint"] = d["fingerprint"], plan.fingerprint  # edited, fingerprint left as was
    with pytest.raises(InputError) as info:
        plan_from_json(json.dumps(d), "plan.json")
    line = str(info.value)
    assert "field 'fingerprint' must match the plan's content" in line and "edited or damaged" in line
    assert passing not in line
