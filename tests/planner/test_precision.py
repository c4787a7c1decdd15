"""Precision as a real choice: fp32, bf16 and fp16 are profiled only on the local devices that
train in them, a precision a device does not support is not planned for it, and the plan's
notes name each (device, precision) left out."""

from __future__ import annotations

import json
from typing import ClassVar

import pytest

from paretrain.planner.errors import SpecError
from paretrain.planner.inputs.catalog import local_offers
from paretrain.planner.inputs.spec_parse import parse_spec
from paretrain.planner.measure.lab import LocalDevice
from paretrain.planner.measure.profile import build_profile, profile_key
from paretrain.planner.measure.profile_file import profile_from_json, profile_to_json
from paretrain.planner.plan.make import make_plan
from paretrain.planner.plan.plan_file import plan_from_json, plan_to_json
from paretrain.planner.program.build import build_problem
from paretrain.planner.program.milp import pareto_front
from paretrain.runtime.train.workloads import WORKLOADS
from tests.conftest import small_spec
from tests.planner.synthetic_lab import SyntheticLab

ALL = ["fp32", "bf16", "fp16"]


class _MixedLab(SyntheticLab):
    """cpu-1 trains in fp32 only, cpu-2 in all three; fp16 steps are faster, bf16 ones faster
    still, so that a planner that may use them does."""

    SPEEDUP: ClassVar[dict[str, float]] = {"fp32": 1.0, "fp16": 1.5, "bf16": 2.0}

    def devices(self):
        return [
            LocalDevice("local/cpu-1", "cpu", 1, 1, 16.0, precisions=("fp32",)),
            LocalDevice("local/cpu-2", "cpu", 2, 2, 16.0, precisions=("fp32", "bf16", "fp16")),
        ]

    def measure_steps(self, config, device, precision, batch_sizes, steps):
        prof = super().measure_steps(config, device, precision, batch_sizes, steps)
        self.calls[-1] += f" {precision}"
        f = self.SPEEDUP[precision]
        samples = tuple(
            type(s)(s.batch_size, s.workers, s.step_s / f, s.samples_per_s * f, s.peak_mem_bytes)
            for s in prof.samples
        )
        return type(prof)(
            prof.hardware,
            prof.config_id,
            prof.precision,
            samples,
            eval_s=prof.eval_s,
            source=prof.source,
            measured_on=prof.measured_on,
            param_count=prof.param_count,
            ckpt_s=prof.ckpt_s,
        )


def _spec(precisions=ALL):
    data = small_spec(planner__precisions=list(precisions))
    return data, parse_spec(data, "spec.yaml", WORKLOADS)


def _profile(spec, lab):
    configs = list(spec.configs)
    key = profile_key(spec, lab.fingerprint(), configs)
    return build_profile(spec, lab, configs, key=key), key


def test_fp16_is_a_valid_precision_and_an_unknown_one_names_the_field():
    _, spec = _spec(["fp16", "fp32", "fp16"])
    assert spec.planner.precisions == ("fp16", "fp32")
    with pytest.raises(SpecError) as info:
        _spec(["fp32", "fp8"])
    assert info.value.field == "planner.precisions[1]" and "fp16" in str(info.value)


def test_each_precision_is_measured_only_on_the_devices_that_train_in_it():
    _, spec = _spec()
    lab = _MixedLab()
    profile, _ = _profile(spec, lab)
    measured = {(s.hardware, s.precision) for s in profile.steps}
    assert measured == {
        ("local/cpu-1", "fp32"),
        ("local/cpu-2", "fp32"),
        ("local/cpu-2", "bf16"),
        ("local/cpu-2", "fp16"),
    }
    assert not [c for c in lab.calls if c.startswith("steps") and "cpu-1" in c and not c.endswith("fp32")]
    assert profile.unsupported == (("local/cpu-1", "bf16"), ("local/cpu-1", "fp16"))


def test_the_profile_file_keeps_what_was_left_out_and_old_files_still_read():
    _, spec = _spec()
    profile, _ = _profile(spec, _MixedLab())
    again = profile_from_json(profile_to_json(profile), "p.json")
    assert again.unsupported == profile.unsupported
    old = json.loads(profile_to_json(profile))
    del old["unsupported"]  # a profile written before the field existed
    assert profile_from_json(json.dumps(old), "p.json").unsupported == ()


def test_an_unsupported_precision_is_not_planned_and_each_one_gets_a_note():
    _data, spec = _spec()
    lab = _MixedLab()
    profile, key = _profile(spec, lab)
    offers = local_offers(lab.devices(), spec.hardware)
    configs = list(spec.configs)
    problem, ctx = build_problem(spec, offers, profile, configs, prune=False)
    planned = {(o.hardware, o.precision) for o in problem.options}
    assert planned == {
        ("local/cpu-1", "fp32"),
        ("local/cpu-2", "fp32"),
        ("local/cpu-2", "bf16"),
        ("local/cpu-2", "fp16"),
    }
    left_out = [n for n in ctx.notes if "not supported by this device" in n]
    assert left_out == [
        "local/cpu-1: precision bf16 is not supported by this device (torch cannot train "
        "in bf16 there); not planned for it",
        "local/cpu-1: precision fp16 is not supported by this device (torch cannot train "
        "in fp16 there); not planned for it",
    ]
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
    plan = plan_from_json(plan_to_json(plan), "plan.json")
    assert [n for n in plan.notes if "not supported" in n] == left_out
    stages = [(st.hardware, st.precision) for c in plan.candidates for st in c.stages]
    assert stages and all(s in planned for s in stages)
    # the faster precisions are real choices: the front uses them where they pay
    assert {q for _, q in stages} & {"bf16", "fp16"}


def test_precisions_the_spec_does_not_ask_for_give_no_note():
    _, spec = _spec(["fp32"])
    lab = _MixedLab()
    profile, _ = _profile(spec, lab)
    assert profile.unsupported == ()
    _, ctx = build_problem(spec, local_offers(lab.devices(), spec.hardware), profile, list(spec.configs))
    assert not [n for n in ctx.notes if "not supported" in n]


def test_a_device_that_trains_in_everything_gets_every_precision_planned():
    _, spec = _spec()
    lab = SyntheticLab()
    lab.devices = lambda: [
        LocalDevice(d.id, d.kind, d.threads, d.vcpus, d.memory_gib, precisions=tuple(ALL))
        for d in SyntheticLab().devices()
    ]
    profile, _ = _profile(spec, lab)
    assert profile.unsupported == ()
    problem, ctx = build_problem(
        spec, local_offers(lab.devices(), spec.hardware), profile, list(spec.configs), prune=False
    )
    assert {o.precision for o in problem.options} == set(ALL)
    assert not [n for n in ctx.notes if "not supported" in n]
