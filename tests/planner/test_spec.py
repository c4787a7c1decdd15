"""Spec validation: every field checked, each bad input named with field, rule, value, fix."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import yaml

from paretrain.planner.errors import InputError, SpecError
from paretrain.planner.inputs.spec import spec_to_dict
from paretrain.planner.inputs.spec_parse import parse_spec, parse_spec_text, spec_json_schema
from paretrain.runtime.spec_files import read_spec
from paretrain.runtime.train.workloads import WORKLOADS
from tests.conftest import ROOT, small_spec


def parse(data: dict):
    return parse_spec(data, "spec.yaml", WORKLOADS)


def test_example_spec_loads_into_frozen_dataclasses():
    spec = read_spec(ROOT / "examples" / "mnist1d.yaml")
    assert spec.name == "mnist1d-demo"
    assert [c.id for c in spec.configs] == ["gru-128"]
    assert spec.budget.train_usd == pytest.approx(0.013)
    assert spec.target.levels[0] == spec.target.goal
    with pytest.raises(AttributeError):
        spec.budget.total_usd = 1.0  # type: ignore[misc]  (the write a frozen spec must refuse)


def test_example_in_package_and_examples_folder_are_the_same_file():
    assert (ROOT / "examples" / "mnist1d.yaml").read_text() == (
        ROOT / "paretrain" / "examples" / "mnist1d.yaml"
    ).read_text()


def test_defaults_fill_missing_sections():
    spec = parse(small_spec())
    assert spec.planner.solver == "highs"
    assert spec.runtime.keep_checkpoints == 3
    assert spec.hardware.cpu_vcpu_usd_per_h == pytest.approx(0.0425)


def test_digest_ignores_comments_and_layout():
    a = parse_spec_text("# c\n" + yaml.safe_dump(small_spec()), "a", WORKLOADS)
    b = parse_spec_text(yaml.safe_dump(small_spec(), default_flow_style=True), "b", WORKLOADS)
    assert a.digest == b.digest
    c = parse(small_spec(deadline_s=301))
    assert c.digest != a.digest


@pytest.mark.parametrize(
    "mutate, field, rule",
    [
        (lambda s: s.update(colour="red"), "colour", "is not a known key"),
        (lambda s: s["budget"].update(total_usd=-1), "budget.total_usd", "> 0"),
        (lambda s: s["budget"].update(total_usd=0), "budget.total_usd", "> 0"),
        (lambda s: s["budget"].update(total_usd=math.nan), "budget.total_usd", "finite"),
        (lambda s: s["budget"].update(total_usd="ten"), "budget.total_usd", "must be a number"),
        (lambda s: s["hardware"].update(allow=[]), "hardware.allow", "must not be empty"),
        (lambda s: s["workload"].update(name="cifar100"), "workload.name", "is not a known workload"),
        (lambda s: s.update(deadline_s=0), "deadline_s", "> 0"),
        (lambda s: s["target"].update(goal=1.5), "target.goal", "(0, 1]"),
        (lambda s: s["planner"].update(solver="gurobi"), "planner.solver", "one of"),
        (lambda s: s["planner"].update(batch_sizes=[32, "big"]), "planner.batch_sizes[1]", "integer"),
        (lambda s: s["configs"][0].update(width=5000), "configs[0].width", "in [16, 1024]"),
        (lambda s: s["configs"][0].update(kernel=3), "configs[0].kernel", "not a parameter of family mlp"),
        (lambda s: s["configs"][1].update(family="transformer"), "configs[1].family", "not a family"),
        (lambda s: s["configs"].append(dict(s["configs"][0])), "configs[2].id", "unique"),
        (lambda s: s["budget"].update(envelopes={"train": 1.0}), "budget.envelopes", "sum to at most"),
        (lambda s: s["hardware"].update(allow=["cpu"]), "hardware.allow[0]", "provider/name"),
        (lambda s: s.pop("target"), "target", "is required"),
        (lambda s: s.update(configs=[]), "configs", "must not be empty"),
        (
            lambda s: s["planner"].update(convergence_batch_sizes=[16, 64]),
            "planner.convergence_batch_sizes",
            "at least 3",
        ),
    ],
)
def test_bad_field_names_field_rule_value_and_fix(mutate, field, rule):
    data = small_spec()
    mutate(data)
    with pytest.raises(SpecError) as info:
        parse(data)
    err = info.value
    assert err.field == field
    assert rule in err.rule
    text = str(err)
    assert text.startswith("spec.yaml: field ")
    assert "got" in text and "To fix:" in text
    assert "\n" not in text
    assert "correctly" not in text  # a fix says what to do, not "set it correctly"


def test_a_rule_without_its_own_fix_says_what_value_it_wants():
    data = small_spec()
    data["planner"]["batch_sizes"] = [0]
    with pytest.raises(SpecError) as info:
        parse(data)
    assert info.value.fix.startswith("set 'planner.batch_sizes[0]' to a value that is >= 1")


def test_bad_yaml_names_line_and_column():
    with pytest.raises(InputError, match=r"not valid YAML at line 3, column 4"):
        parse_spec_text("name: x\nbudget: {a: 1\n  b: [}\n", "s.yaml", WORKLOADS)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (
            "budget: {total_usd: 0.01}\nname: x\nbudget:\n  total_usd: 5\n",
            r"line 3, column 1: duplicate key 'budget' \(first at line 1\)",
        ),
        (
            "budget: {total_usd: 1, total_usd: 5}\n",
            r"line 1, column 24: duplicate key 'total_usd' \(first at line 1\)",
        ),
    ],
    ids=["section", "field"],
)
def test_a_repeated_key_is_refused_not_silently_replaced(text, where):
    """Plain YAML keeps the last of two equal keys: a second budget block would replace the first."""
    with pytest.raises(InputError, match=rf"s.yaml: the spec is not valid YAML at {where}. To fix: keep one"):
        parse_spec_text(text, "s.yaml", WORKLOADS)


def test_a_merge_key_is_not_a_repeated_key():
    """``<<: *anchor`` merges a mapping; a key written beside it overrides the merged one."""
    text = (
        "name: x\nworkload: {name: mnist1d}\ntarget: {goal: 0.8, max_samples: 1000}\n"
        "budget: {total_usd: 1}\ndeadline_s: 60\n"
        "configs:\n  - &base {id: a, family: mlp, lr: 0.02}\n  - {<<: *base, id: b}\n"
    )
    spec = parse_spec_text(text, "s.yaml", WORKLOADS)
    assert [(c.id, c.lr) for c in spec.configs] == [("a", 0.02), ("b", 0.02)]


def test_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no such spec file"):
        read_spec(tmp_path / "nope.yaml")


def test_empty_file_is_rejected():
    with pytest.raises(SpecError, match="top level"):
        parse_spec_text("", "s.yaml", WORKLOADS)


def test_python_workload_reference_must_name_module_and_factory():
    with pytest.raises(SpecError, match=r"python:pkg\.module:factory"):
        parse(small_spec(workload={"name": "python:nofactory"}))
    spec = parse(
        small_spec(
            workload={"name": "python:mypkg.work:make"},
            configs=[{"id": "a", "family": "anything", "width": 1}],
        )
    )
    assert spec.workload.name == "python:mypkg.work:make"


def test_json_schema_lists_every_section_and_forbids_unknown_keys():
    schema = spec_json_schema()
    for key in (
        "workload",
        "configs",
        "target",
        "budget",
        "deadline_s",
        "hardware",
        "planner",
        "runtime",
        "tracking",
        "search",
        "profiles",
        "convergence",
    ):
        assert key in schema["properties"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["budget"]["properties"]["total_usd"]["exclusiveMinimum"] == 0
    assert set(schema["required"]) >= {"name", "target", "budget", "deadline_s"}


def _round_trip_cases() -> list[dict]:
    return [
        small_spec(),
        small_spec(budget={"total_usd": 12345.678, "envelopes": {"search": 0.0}}),
        small_spec(
            convergence={"mlp-64x2": {"e_min": 50, "b_noise": 1000, "accuracy": 0.9}},
            runtime={"events": [{"at_s": 1, "kind": "price", "factor": 2}], "prefer": "time"},
            hardware={"allow": ["local/cpu-1", "aws/*"], "catalog": "builtin", "spot": True},
            planner={"stages": 2, "batch_sizes": [128, 32, 32], "precisions": ["fp32", "bf16"]},
            search={"trials": 2, "space": {"mlp": {"width": [16, 32]}}},
            tracking={"uri": "sqlite:///m.db", "experiment": "e"},
            profiles=["p.json"],
        ),
        small_spec(
            workload={"name": "python:mypkg.work:make", "args": {"n": [1, 2]}},
            configs=[{"id": "a", "family": "anything", "width": 1}],
            target={
                "goal": 2.5,
                "levels": [2.0],
                "max_samples": 1000,
                "metric": "val_bpb",
                "direction": "minimize",
            },
        ),
    ]


@pytest.mark.parametrize("data", _round_trip_cases())
def test_spec_to_dict_parses_back_into_the_same_spec_and_digest(data):
    spec = parse(data)
    mapping = spec_to_dict(spec)
    assert json.loads(json.dumps(mapping)) == mapping  # plain JSON, as a plan file holds it
    again = parse_spec(mapping, "plan.json:spec")  # without the registry, as a plan file is read
    assert again == replace(spec, path="plan.json:spec")
    assert again.digest == spec.digest and spec_to_dict(again) == mapping


def test_spec_to_dict_writes_every_default_and_resolved_envelope():
    mapping = spec_to_dict(parse(small_spec(budget={"total_usd": 1.0})))
    assert mapping["budget"]["envelopes"] == {"profile": 0.2, "search": 0.2, "train": 0.6}
    assert mapping["planner"]["solver"] == "highs" and mapping["runtime"]["events"] == []
    assert mapping["target"]["levels"] == [0.4, 0.5] and mapping["target"]["metric"] == "val_accuracy"
    assert mapping["configs"][0] == parse(small_spec()).configs[0].to_dict()


def test_the_digest_follows_a_changed_section():
    spec = parse(small_spec())
    changed = replace(spec, planner=replace(spec.planner, stages=3))
    assert changed.digest != spec.digest
    assert spec_to_dict(changed)["planner"]["stages"] == 3


def test_a_convergence_hint_names_its_level_for_any_metric_and_reads_the_old_accuracy_key():
    new = parse(small_spec(convergence={"mlp-64x2": {"e_min": 50, "b_noise": 1000, "level": 2.5}}))
    old = parse(small_spec(convergence={"mlp-64x2": {"e_min": 50, "b_noise": 1000, "accuracy": 0.9}}))
    assert new.convergence["mlp-64x2"].level == 2.5  # a loss or bits per byte, not only an accuracy
    assert old.convergence["mlp-64x2"].level == 0.9
    assert "accuracy" not in spec_to_dict(old)["convergence"]["mlp-64x2"]
    with pytest.raises(SpecError, match=r"convergence\.mlp-64x2\.level"):
        parse(small_spec(convergence={"mlp-64x2": {"e_min": 50, "b_noise": 1000}}))
