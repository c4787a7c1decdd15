"""Plans for runtime tests: built in-process from the synthetic Lab, with catalog offers that
the runtime emulates (real math on this CPU, virtual clock and prices of the offer)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from paretrain.planner.inputs.catalog import builtin_catalog_text, local_offers, parse_catalog
from paretrain.planner.inputs.spec import spec_to_dict
from paretrain.planner.inputs.spec_parse import parse_spec
from paretrain.planner.measure.profile import build_profile
from paretrain.planner.plan.make import make_plan
from paretrain.planner.plan.plan import Plan
from paretrain.planner.program.build import build_problem
from paretrain.planner.program.milp import pareto_front
from paretrain.runtime.train.workloads import WORKLOADS
from tests.conftest import small_spec
from tests.planner.synthetic_lab import SyntheticLab

EMULATED = ["aws/g4dn.xlarge", "aws/g4dn.xlarge:spot", "gcp/g2-standard-4"]


def tiny_spec(**over: Any) -> dict:
    data = small_spec(
        workload={"name": "mnist1d", "samples": 800, "val_fraction": 0.25, "seed": 0},
        configs=[{"id": "mlp-16", "family": "mlp", "width": 16, "depth": 1, "lr": 0.01}],
        target={"goal": 0.3, "levels": [0.3], "max_samples": 8000},
        budget={"total_usd": 1.0, "envelopes": {"profile": 0.1, "search": 0.1, "train": 0.5}},
        deadline_s=100000,
        hardware={"allow": ["local/cpu-1", *EMULATED], "catalog": "builtin", "spot": True},
        planner={
            "convergence": "full",
            "stages": 2,
            "batch_sizes": [32, 64],
            "convergence_batch_sizes": [16, 64, 256],
            "profile_steps": 5,
            "noise": False,
        },
        runtime={"eval_every_samples": 400, "checkpoint_every_s": 0.2, "keep_checkpoints": 2},
    )
    for key, value in over.items():
        data[key] = value
    return data


def make_test_plan(data: dict | None = None, e_min: float = 3000.0) -> Plan:
    spec = parse_spec(data or tiny_spec(), "spec.yaml", WORKLOADS)
    lab = SyntheticLab(e_min={c.id: e_min for c in spec.configs}, best={c.id: 1.0 for c in spec.configs})
    configs = list(spec.configs)
    profile = build_profile(spec, lab, configs)
    # the emulated offers stand for machines provisioned in 10 ms (the catalog's minutes would
    # keep them off these seconds-long fronts); they bill as their providers do
    catalog = {o.id: replace(o, switch_s=0.01) for o in parse_catalog(builtin_catalog_text())}
    offers = [o for o in local_offers(lab.devices(), spec.hardware) if o.id in spec.hardware.allow] + [
        catalog[i] for i in spec.hardware.allow if i in catalog
    ]
    problem, ctx = build_problem(spec, offers, profile, configs)
    front = pareto_front(problem)
    return make_plan(
        spec=spec,
        profile_key="test",
        problem=problem,
        ctx=ctx,
        front=front,
        configs=configs,
        offers=offers,
        solver="highs",
    )


def unreachable_plan(checkpoint_every_s: float = 0.1) -> Plan:
    """A plan on an emulated offer whose run writes hundreds of ledger lines (about 660 with
    checkpoints every 0.1 virtual seconds) before it stops: its level, 0.99, is out of reach, and
    with evaluations far apart its curve has the points to say so only after 40,000 samples."""
    data = tiny_spec(
        target={"goal": 0.99, "levels": [0.99], "max_samples": 60000},
        runtime={"eval_every_samples": 4000, "checkpoint_every_s": checkpoint_every_s, "keep_checkpoints": 2},
        hardware={"allow": ["aws/g4dn.xlarge"], "catalog": "builtin", "spot": False},
    )
    return make_test_plan(data, e_min=20000)


def with_spec(plan: Plan, **changes: Any) -> Plan:
    """The same plan with its spec changed and validated again: ``section__field=value`` sets one
    field of a section, ``section=value`` a whole section (in ``spec_to_dict``'s shape, defaults
    filled in) or a top-level field."""
    data = spec_to_dict(plan.spec)
    for key, value in changes.items():
        section, _, fld = key.partition("__")
        if fld:
            data[section] = {**data[section], fld: value}
        else:
            data[section] = value
    return replace(plan, spec=parse_spec(data, plan.spec.path, WORKLOADS))
