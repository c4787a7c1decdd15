"""From a synthetic Lab to a plan file: deterministic bytes, fingerprint, candidate choice."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from paretrain.planner.errors import InputError
from paretrain.planner.inputs.catalog import local_offers
from paretrain.planner.inputs.spec_parse import parse_spec
from paretrain.planner.measure.profile import build_profile, profile_key
from paretrain.planner.measure.profile_file import profile_from_json, profile_to_json
from paretrain.planner.plan.make import make_plan
from paretrain.planner.plan.plan_file import plan_from_json, plan_to_json
from paretrain.planner.program.build import build_problem
from paretrain.planner.program.milp import pareto_front
from paretrain.runtime.train.workloads import WORKLOADS
from tests.conftest import small_spec
from tests.planner.synthetic_lab import SyntheticLab


class _CurvedLab(SyntheticLab):
    """Convergence runs that also report their learning curve."""

    def measure_convergence(self, config, batch_size, levels, max_samples, eval_every, device=None):
        run = super().measure_convergence(config, batch_size, levels, max_samples, eval_every)
        return replace(run, curve=((1000, 0.25), (2000, 0.5)))


def plan_text(spec_data: dict, lab: SyntheticLab | None = None) -> str:
    spec = parse_spec(spec_data, "spec.yaml", WORKLOADS)
    lab = lab or SyntheticLab(e_min={"mlp-64x2": 30000, "cnn-8x2": 12000})
    configs = list(spec.configs)
    key = profile_key(spec, lab.fingerprint(), configs)
    profile = build_profile(spec, lab, configs, key=key)
    # the profile survives its own file format
    profile = profile_from_json(profile_to_json(profile), "p.json")
    offers = local_offers(lab.devices(), spec.hardware)
    problem, ctx = build_problem(spec, offers, profile, configs)
    front = pareto_front(problem)
    plan = make_plan(
        spec=spec,
        profile_key=key,
        problem=problem,
        ctx=ctx,
        front=front,
        configs=configs,
        offers=offers,
        solver="highs",
    )
    return plan_to_json(plan)


def test_same_spec_and_profile_give_byte_identical_plans():
    assert plan_text(small_spec()) == plan_text(small_spec())


def test_plan_has_no_timestamps_and_a_schema():
    d = json.loads(plan_text(small_spec()))
    assert d["schema"] == "paretrain.plan/4"
    assert all(set(c["predicted"]) >= {"cost_usd", "wall_s", "level"} for c in d["pareto"])
    assert not any("accuracy" in c["predicted"] for c in d["pareto"])
    text = json.dumps(d)
    assert "measured_at" not in text and "2026-" not in text.replace(d["offers"][0]["as_of"], "")


def test_plan_round_trips_and_detects_edits():
    text = plan_text(small_spec())
    plan = plan_from_json(text, "plan.json")
    assert plan_to_json(plan) == text
    edited = text.replace('"chosen": "', '"chosen": "x', 1)
    with pytest.raises(InputError, match="fingerprint"):
        plan_from_json(edited, "plan.json")
    with pytest.raises(InputError, match="not a plan file"):
        plan_from_json("{", "plan.json")


def test_a_plan_file_of_the_old_schema_is_refused_in_one_line():
    d = json.loads(plan_text(small_spec()))
    d["schema"] = "paretrain.plan/1"
    with pytest.raises(InputError) as info:
        plan_from_json(json.dumps(d), "old.json")
    msg = str(info.value)
    assert "\n" not in msg and "old.json" in msg and "paretrain.plan/4" in msg and "paretrain plan" in msg


def test_plan_models_are_typed_with_lookups():
    data = small_spec(
        planner={
            "convergence": "full",
            "stages": 2,
            "batch_sizes": [32, 128],
            "convergence_batch_sizes": [16, 64, 256],
            "profile_steps": 10,
            "max_workers": 2,
        }
    )
    plan = plan_from_json(
        plan_text(data, _CurvedLab(e_min={"mlp-64x2": 30000, "cnn-8x2": 12000})), "plan.json"
    )
    cand = plan.candidate("knee")
    for st in cand.stages:
        rec = plan.step_model(st.hardware, cand.config_id, st.precision, st.workers)
        assert rec.model().predict(st.batch_size, st.workers) == pytest.approx(st.step_s, rel=1e-5)
        assert rec.instances == st.instances and rec.storage_bytes > 0
    # every worker count is kept, not only the ones a candidate uses
    assert {r.workers for r in plan.step_models(cand.config_id)} == {1, 2}
    conv = plan.convergence(cand.config_id, cand.level)
    assert conv.e_min > 0 and conv.max_batch >= max(s.batch_size * s.workers for s in cand.stages)
    noise = plan.stage_noise(cand.config_id, cand.level)
    K = len(cand.stages)
    assert [round(noise.at(conv.e_min * (k + 0.5) / K), 3) for k in range(K)] == [
        s.b_noise for s in cand.stages
    ]
    assert plan.curves(cand.config_id) == {b: [(1000, 0.25), (2000, 0.5)] for b in (16, 64, 256)}
    with pytest.raises(KeyError):
        plan.step_model("nowhere", cand.config_id, "fp32", 1)


def test_candidate_selection_by_name_and_id():
    plan = plan_from_json(plan_text(small_spec()), "plan.json")
    cheapest, fastest = plan.candidate("cheapest"), plan.candidate("fastest")
    assert cheapest.cost_usd == min(c.cost_usd for c in plan.candidates)
    assert fastest.wall_s == min(c.wall_s for c in plan.candidates)
    assert plan.candidate("knee").id == plan.chosen
    top = max(c.level for c in plan.candidates)
    accurate = plan.candidate("accurate")
    assert accurate.level == top
    assert accurate.cost_usd == min(c.cost_usd for c in plan.candidates if c.level == top)
    assert plan.candidate(plan.candidates[0].id) is plan.candidates[0]
    with pytest.raises(InputError, match="not in the plan"):
        plan.candidate("p99")


def test_candidates_meet_the_goal_budget_and_deadline():
    data = small_spec()
    plan = plan_from_json(plan_text(data), "plan.json")
    for c in plan.candidates:
        assert c.level >= data["target"]["goal"]
        assert c.cost_usd <= data["budget"]["envelopes"]["train"]
        assert c.wall_s <= data["deadline_s"]
        assert sum(s.cost_usd for s in c.stages) == pytest.approx(c.cost_usd, rel=1e-6)
        assert all(s.samples % s.batch_size == 0 for s in c.stages)


def test_example_like_spec_gives_at_least_five_candidates():
    data = small_spec(
        target={"goal": 0.7, "levels": [0.7, 0.8, 0.9], "max_samples": 10**6},
        planner={"convergence": "full", "stages": 3, "batch_sizes": [16, 32, 64, 128, 256]},
    )
    plan = plan_from_json(plan_text(data), "plan.json")
    assert len(plan.candidates) >= 5


def test_unreached_levels_are_noted_not_planned():
    lab = SyntheticLab(best={"mlp-64x2": 0.45, "cnn-8x2": 0.95})
    plan = plan_from_json(plan_text(small_spec(), lab), "plan.json")
    assert all(not (c.config_id == "mlp-64x2" and c.level > 0.45) for c in plan.candidates)
    assert any("mlp-64x2: val_accuracy 0.5" in n for n in plan.notes)


def test_min_workers_makes_every_stage_data_parallel_and_must_not_pass_max_workers():
    from paretrain.planner.errors import SpecError

    data = small_spec(planner={**small_spec()["planner"], "max_workers": 2, "min_workers": 2})
    data["hardware"] = {"allow": ["local/cpu-1"]}
    plan = plan_from_json(plan_text(data), "plan.json")
    assert plan.candidates and all(s.workers == 2 for c in plan.candidates for s in c.stages)
    with pytest.raises(SpecError, match=r"planner\.min_workers"):
        parse_spec(
            small_spec(planner={**small_spec()["planner"], "max_workers": 2, "min_workers": 4}),
            "spec.yaml",
            WORKLOADS,
        )
