"""The plan file: a ``Plan`` written as JSON (``paretrain.plan/4``) and read back.

The file is the plan's body (``paretrain.planner.plan.plan_body``) with its fingerprint; its spec
is parsed back into a ``Spec`` once, here, so that nothing downstream reads a spec field from a
mapping. Schema 4 adds a candidate's ``start`` (the profile's checkpoint its run starts from, or
null); schema 3 files (no ``start``: every run from scratch) and schema 2 files (the predicted
level named ``predicted.accuracy``) still read, their fingerprint checked against their own body
(a plan read from one gets the fingerprint of its schema 4 form).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from paretrain.planner.errors import InputError
from paretrain.planner.inputs.catalog import Offer
from paretrain.planner.inputs.space import Config
from paretrain.planner.inputs.spec_parse import parse_spec
from paretrain.planner.measure.uncertainty import Interval
from paretrain.planner.plan.fitted import PlanModels
from paretrain.planner.plan.plan import Candidate, Plan, StagePlan
from paretrain.planner.plan.plan_body import PLAN_SCHEMA, body_fingerprint, plan_body
from paretrain.planner.plan.plan_check import check_plan
from paretrain.planner.program.reuse import StartFrom

__all__ = ["PLAN_SCHEMA", "READ_SCHEMAS", "plan_from_json", "plan_to_json"]

#: schema -> the ``predicted`` field that holds a candidate's level of the target metric
READ_SCHEMAS = {PLAN_SCHEMA: "level", "paretrain.plan/3": "level", "paretrain.plan/2": "accuracy"}

_FIX = "write it again with 'paretrain plan SPEC -o PLAN'"


def plan_to_json(plan: Plan) -> str:
    body = plan_body(plan)
    body = {"schema": PLAN_SCHEMA, "fingerprint": body_fingerprint(body), **body}
    return json.dumps(body, indent=1, sort_keys=False, allow_nan=False) + "\n"


def plan_from_json(text: str, where: str) -> Plan:
    """Parse a plan file (schema 4, 3 or 2); ``InputError`` names the file and what is wrong."""
    try:
        d = json.loads(text)
    except ValueError as err:
        raise InputError(f"{where}: not a plan file, invalid JSON ({err}). To fix: {_FIX}") from None
    if not isinstance(d, dict) or d.get("schema") not in READ_SCHEMAS:
        got = d.get("schema") if isinstance(d, dict) else type(d).__name__
        raise InputError(f"{where}: field 'schema' must be {PLAN_SCHEMA}; got {got!r}. To fix: {_FIX}")
    try:
        plan = _plan_of(d, READ_SCHEMAS[d["schema"]], where)
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(f"{where}: a plan field is missing or malformed ({err!r}). To fix: {_FIX}") from None
    # a file of this schema is checked against the plan it parses into; an older one against its own body
    found = plan.fingerprint if d["schema"] == PLAN_SCHEMA else body_fingerprint(_without_fingerprint(d))
    if d.get("fingerprint") != found:
        raise InputError(
            f"{where}: field 'fingerprint' must match the plan's content; got "
            f"{d.get('fingerprint')!r}: the file was edited or damaged. To fix: {_FIX} (to change a "
            "plan, change its spec and plan again)"
        )
    check_plan(plan, where, _FIX)
    return plan


def _plan_of(d: Mapping[str, Any], level_field: str, where: str) -> Plan:
    """The plan a file's fields give; its spec validated as a spec file is (``SpecError``
    names the spec's field, at ``WHERE:spec``)."""
    return Plan(
        spec_digest=d["spec_digest"],
        profile_key=d["profile_key"],
        spec=parse_spec(d["spec"], f"{where}:spec"),
        configs=tuple(Config.from_dict(c) for c in d["configs"]),
        offers=tuple(Offer(**o) for o in d["offers"]),
        candidates=tuple(_candidate_of(c, level_field) for c in d["pareto"]),
        chosen=d["chosen"],
        cheapest=d["cheapest"],
        fastest=d["fastest"],
        solver=d.get("solver", {}),
        models=PlanModels.from_dict(d["models"]),
        notes=tuple(d.get("notes", ())),
    )


def _candidate_of(c: Mapping[str, Any], level_field: str) -> Candidate:
    predicted = c["predicted"]
    return Candidate(
        id=c["id"],
        config_id=c["config"],
        level=float(predicted[level_field]),
        cost_usd=float(predicted["cost_usd"]),
        wall_s=float(predicted["wall_s"]),
        stages=tuple(StagePlan(**s) for s in c["stages"]),
        notes=tuple(c.get("notes", ())),
        start=StartFrom.from_dict(c["start"]) if c.get("start") is not None else None,
        **_intervals_from(predicted),
    )


def _intervals_from(predicted: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, field_ in (
        ("cost_usd", "cost_interval"),
        ("wall_s", "wall_interval"),
        ("samples", "samples_interval"),
    ):
        iv = predicted.get(f"{name}_interval")
        if iv is not None:
            out[field_] = Interval(float(iv["p10"]), float(iv["p50"]), float(iv["p90"]))
    if predicted.get("p_reach") is not None:
        out["p_reach"] = float(predicted["p_reach"])
    return out


def _without_fingerprint(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k != "fingerprint"}
