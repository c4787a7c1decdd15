"""An emulated run pays what renting the machine costs: its provisioning at the start, and its
provider's billing increments and minimum when it leaves or ends on the offer, within the budget."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from paretrain.planner.inputs.catalog import builtin_catalog_text, parse_catalog
from paretrain.planner.inputs.spec_parse import parse_spec
from paretrain.planner.measure.profile import build_profile
from paretrain.planner.plan.make import make_plan
from paretrain.planner.plan.plan import Plan
from paretrain.planner.program.build import build_problem
from paretrain.planner.program.milp import pareto_front
from paretrain.runtime.money.ledger import read_charges
from paretrain.runtime.run.executor import Executor, RunStopped
from paretrain.runtime.train.workloads import WORKLOADS
from tests.planner.synthetic_lab import SyntheticLab
from tests.runtime.plans import tiny_spec, with_spec

G4DN = "aws/g4dn.xlarge"


def _plan(switch_s: float | None = None) -> Plan:
    """A job of a few seconds planned on aws/g4dn.xlarge alone (the catalog's provisioning time,
    or ``switch_s``), emulated here."""
    spec = parse_spec(tiny_spec(hardware={"allow": [G4DN], "catalog": "builtin"}), "spec.yaml", WORKLOADS)
    lab = SyntheticLab(e_min={c.id: 3000.0 for c in spec.configs}, best={c.id: 1.0 for c in spec.configs})
    configs = list(spec.configs)
    profile = build_profile(spec, lab, configs)
    offers = [o for o in parse_catalog(builtin_catalog_text()) if o.id == G4DN]
    if switch_s is not None:
        offers = [replace(o, switch_s=switch_s) for o in offers]
    problem, ctx = build_problem(spec, offers, profile, configs)
    return make_plan(
        spec=spec,
        profile_key="test",
        problem=problem,
        ctx=ctx,
        front=pareto_front(problem),
        configs=configs,
        offers=offers,
        solver="highs",
    )


def _run(plan: Plan, tmp_path, run_id: str, budget: float, **runtime):
    plan = with_spec(
        plan,
        budget={"total_usd": 10.0, "envelopes": {"profile": 0.1, "search": 0.1, "train": budget}},
        **{f"runtime__{k}": v for k, v in runtime.items()},
    )
    cand = plan.candidate("cheapest")
    try:
        result = Executor(plan, cand, workdir=tmp_path, run_id=run_id).run()
    except RunStopped as err:
        result = err.result
    return result, list(read_charges(tmp_path / ".paretrain" / "ledger" / f"{run_id}.jsonl"))


def _minute_usd(plan: Plan) -> float:
    offer = plan.offer(G4DN)
    return offer.billing_minimum_s * offer.price_usd_per_h / 3600.0


@pytest.mark.slow  # trains through a real executor
def test_a_run_on_g4dn_pays_its_provisioning_and_bills_whole_seconds_within_the_budget(tmp_path):
    plan = _plan()
    offer = plan.offer(G4DN)
    budget = 2.0 * plan.candidate("cheapest").cost_usd
    result, lines = _run(plan, tmp_path, "g4dn", budget)
    assert result.status == "target" and result.emulated
    provision = [c for c in lines if c.get("what") == "provision"]
    assert len(provision) == 1 and provision[0]["seconds"] == pytest.approx(offer.switch_s)
    assert provision[0]["usd"] == pytest.approx(offer.switch_s * offer.price_usd_per_h / 3600.0, rel=1e-9)
    assert provision[0]["emulated"] is True
    total = math.fsum(c["usd"] for c in lines)
    assert _minute_usd(plan) <= total <= budget
    # the seconds held on the offer, with the billing line's, are whole seconds as AWS bills them
    held = math.fsum(c["seconds"] for c in lines if c["kind"] in ("compute", "checkpoint"))
    billed = math.fsum(c.get("billed_s", 0.0) for c in lines if c.get("what") == "billing increment")
    assert held >= offer.switch_s
    assert held + billed == pytest.approx(math.ceil(held - 1e-9), abs=1e-5)


@pytest.mark.slow  # trains through a real executor
def test_a_short_hold_is_billed_its_minute_and_one_that_cannot_afford_it_spends_nothing(tmp_path):
    plan = _plan(switch_s=2.0)  # provisioned in 2 s: the run holds the offer far less than a minute
    minute = _minute_usd(plan)
    result, lines = _run(plan, tmp_path, "short", budget=1.5 * minute)
    assert result.status == "target"
    increments = [c for c in lines if c.get("what") == "billing increment"]
    assert len(increments) == 1 and increments[0]["kind"] == "compute" and increments[0]["emulated"] is True
    total = math.fsum(c["usd"] for c in lines)
    assert minute <= total <= 1.5 * minute
    compute = math.fsum(c["usd"] for c in lines if c["kind"] in ("compute", "checkpoint"))
    assert compute == pytest.approx(minute, rel=1e-9)  # exactly the minute: AWS's minimum

    result, lines = _run(plan, tmp_path, "poor", budget=0.9 * minute)  # the minute does not fit
    assert result.status == "budget"
    assert math.fsum(c["usd"] for c in lines) == 0.0


@pytest.mark.slow  # trains through a real executor
def test_a_run_stopped_by_its_budget_on_g4dn_settles_its_hold_without_passing_it(tmp_path):
    plan = _plan()
    offer = plan.offer(G4DN)
    cand = plan.candidate("cheapest")
    slow = 200.0  # every step 200 times slower than planned: the training takes seconds of the offer's time
    train_s = slow * (cand.wall_s - offer.switch_s)
    budget = (offer.switch_s + 0.5 * train_s) * offer.price_usd_per_h / 3600.0  # about half the training
    result, lines = _run(
        plan,
        tmp_path,
        "half",
        budget,
        adapt=False,
        events=[{"at_s": 0.0, "kind": "slowdown", "factor": slow}],
    )
    assert result.status == "budget" and 0 < result.samples < cand.samples
    total = math.fsum(c["usd"] for c in lines)
    assert total <= budget
    held = math.fsum(c["seconds"] for c in lines if c["kind"] in ("compute", "checkpoint"))
    billed = math.fsum(c.get("billed_s", 0.0) for c in lines if c.get("what") == "billing increment")
    assert held + billed == pytest.approx(math.ceil(held - 1e-9), abs=1e-5)  # whole seconds, settled


def test_local_offers_have_no_provisioning_and_no_billing_hold(tmp_path):
    from paretrain.runtime.money.ledger import Ledger
    from paretrain.runtime.money.meter import Meter
    from paretrain.runtime.money.prices import StaticPrices
    from paretrain.runtime.run.account import Account
    from paretrain.runtime.run.executor import run_setup
    from paretrain.runtime.run.state import RunState
    from tests.runtime.plans import make_test_plan

    plan = make_test_plan(tiny_spec(hardware={"allow": ["local/cpu-1"], "catalog": "none"}))
    cand = plan.candidates[0]
    setup = run_setup(plan, cand, tmp_path, run_id="local")
    setup.run_dir.mkdir(parents=True, exist_ok=True)
    meter = Meter(
        Ledger(setup.ledger_path, "local"), StaticPrices({o.id: o.price_usd_per_h for o in plan.offers})
    )
    account = Account(setup, meter)
    state = RunState(stages=list(cand.stages), hw="local/cpu-1")
    account.open_hold(state)
    meter.charge("compute", "local/cpu-1", stage="s", what="train", emulated=False, seconds=0.3)
    assert account.hold_t is None and account.settle_usd(state, 0.3) == 0.0
    assert account.settle(state) == 0.0 and meter.spent == pytest.approx(0.3 * plan.offers[0].price_usd_per_s)


# -- which catalog offers a spec allows ---------------------------------------------------------


def _spec(allow, spot=False, catalog="builtin"):
    return parse_spec(
        tiny_spec(hardware={"allow": allow, "catalog": catalog, "spot": spot}), "spec.yaml", WORKLOADS
    )


def test_the_builtin_catalog_with_the_default_allow_list_says_it_adds_no_offer():
    from paretrain.runtime.pipeline import allowed_offers

    offers, notes = allowed_offers(_spec(["local/cpu-1"]))
    assert [o.id for o in offers] == ["local/cpu-1"]
    n = len(parse_catalog(builtin_catalog_text()))
    assert any(
        f"{n} of {n} catalog offers left out, not named or matched by hardware.allow" in x for x in notes
    )


def test_allow_patterns_match_catalog_offers_and_name_those_left_out():
    from paretrain.runtime.pipeline import allowed_offers

    catalog = [o.id for o in parse_catalog(builtin_catalog_text())]
    offers, notes = allowed_offers(_spec(["*"], spot=True))
    assert set(catalog) <= {o.id for o in offers} and "local/cpu-1" in {o.id for o in offers} and not notes
    offers, notes = allowed_offers(_spec(["local/cpu-1", "aws/*"]))
    aws = [i for i in catalog if i.startswith("aws/") and not i.endswith(":spot")]
    assert [o.id for o in offers] == ["local/cpu-1", *aws]
    assert any("spot offer(s) left out, hardware.spot is false: aws/c6i.large:spot" in x for x in notes)
    assert any("lambda/gpu_8x_v100" in x and "not named or matched" in x for x in notes)
    offers, _ = allowed_offers(_spec(["*:spot", "gcp/g2-*"], spot=True))
    assert {o.id for o in offers} == {i for i in catalog if i.endswith(":spot") or i.startswith("gcp/g2-")}


def test_a_pattern_that_matches_nothing_is_one_line_and_exit_2(tmp_path, monkeypatch):
    import yaml
    from click.testing import CliRunner

    from paretrain.cli import cli
    from paretrain.planner.errors import SpecError
    from paretrain.runtime.pipeline import allowed_offers

    with pytest.raises(SpecError) as info:
        allowed_offers(_spec(["local/cpu-1", "lambda/*:spot"], spot=True))  # Lambda has no spot tier
    assert info.value.field == "hardware.allow[1]"
    with pytest.raises(SpecError):
        _spec(["aws/g4dn xlarge"])  # neither a name nor a pattern
    monkeypatch.chdir(tmp_path)
    (tmp_path / "spec.yaml").write_text(
        yaml.safe_dump(tiny_spec(hardware={"allow": ["local/cpu-1", "azure/*"], "catalog": "builtin"}))
    )
    r = CliRunner().invoke(cli, ["plan", "spec.yaml", "--no-track"])
    assert r.exit_code == 2
    assert r.stderr.count("\n") == 1 and "hardware.allow[1]" in r.stderr and "azure/*" in r.stderr
    assert not (tmp_path / ".paretrain").exists()


def test_a_replan_on_a_held_offer_counts_the_seconds_already_held(tmp_path):
    """20 s into a one-minute minimum, the rest of the hold is billed to the minute from there:
    a replan that forgot the 20 s would bill the remaining stages another whole minute."""
    from paretrain.planner.plan.replan import replan
    from paretrain.runtime.adapt.adaptation import Adaptation, Snapshot
    from paretrain.runtime.money.ledger import Ledger
    from paretrain.runtime.money.meter import Meter
    from paretrain.runtime.money.prices import StaticPrices
    from paretrain.runtime.run.account import Account
    from paretrain.runtime.run.executor import run_setup
    from paretrain.runtime.run.state import RunState

    plan = _plan(switch_s=2.0)
    cand = plan.candidate("cheapest")
    setup = run_setup(plan, cand, tmp_path, run_id="held")
    setup.run_dir.mkdir(parents=True, exist_ok=True)
    prices = StaticPrices({o.id: o.price_usd_per_h for o in plan.offers})
    meter = Meter(Ledger(setup.ledger_path, "held"), prices)
    account = Account(setup, meter)
    state = RunState(stages=list(cand.stages), hw=G4DN)
    account.open_hold(state)
    meter.charge("compute", G4DN, stage="s", what="train", emulated=True, seconds=20.0)
    assert account.held_s() == pytest.approx(20.0)

    adaptation = Adaptation(plan, cand, setup.spec, prices, meter.cost_ahead)
    snap = Snapshot(
        now=20.0,
        spent=meter.spent,
        budget=1.0,
        reserve_usd=0.0,
        hw=G4DN,
        stage_i=0,
        stages=tuple(cand.stages),
        stage_done=0,
        progress=0.0,
        beyond=False,
        samples=0,
        batch_size=cand.stages[0].batch_size,
        busy_s=0.0,
        busy_usd=0.0,
        val_loss=1.0,
        level=0.0,
        held_s=account.held_s(),
    )
    req = adaptation._request(snap, "cost")
    assert req.held_s == pytest.approx(20.0)
    held = replan(plan, cand, req)
    fresh = replan(plan, cand, replace(req, held_s=0.0))
    assert held.feasible and fresh.feasible and held.wall_s < 38.0  # the rest is far shorter than the minute
    price_s = plan.offer(G4DN).price_usd_per_h / 3600.0
    assert fresh.cost_usd - held.cost_usd == pytest.approx(20.0 * price_s, rel=1e-6)
