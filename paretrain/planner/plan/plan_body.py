"""A plan as the JSON mapping its file holds (``paretrain.plan/4``), and the fingerprint of it.

The body holds nothing that changes between two plannings of the same spec and profile: no
timestamps, no random ids. Predicted figures are written to 12 significant digits
(``figure``), model parameters at full precision, the spec as its validated mapping
(``paretrain.planner.inputs.spec.spec_to_dict``). A candidate's ``start`` is the profile's
checkpoint its run starts from (``paretrain.planner.program.reuse.StartFrom``), or null: from
scratch. The fingerprint is the SHA-256 of the body's
canonical JSON (the file without its fingerprint field).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from paretrain.planner.inputs.spec import spec_to_dict

__all__ = ["PLAN_SCHEMA", "body_fingerprint", "figure", "plan_body"]

PLAN_SCHEMA = "paretrain.plan/4"


def figure(x: float) -> float:
    """A predicted figure (dollars, seconds) as a plan writes it: 12 significant digits."""
    return float(f"{float(x):.12g}")


def plan_body(plan: Any) -> dict[str, Any]:
    """The mapping a plan file holds for ``plan`` (a ``paretrain.planner.plan.plan.Plan``, not
    imported: it imports this module for its fingerprint), its fingerprint left out."""
    return {
        "schema": PLAN_SCHEMA,
        "spec_digest": plan.spec_digest,
        "profile_key": plan.profile_key,
        "chosen": plan.chosen,
        "cheapest": plan.cheapest,
        "fastest": plan.fastest,
        "solver": dict(plan.solver),
        "notes": list(plan.notes),
        "pareto": [
            {
                "id": c.id,
                "config": c.config_id,
                "predicted": {
                    "cost_usd": c.cost_usd,
                    "wall_s": c.wall_s,
                    "level": c.level,
                    **_intervals_dict(c),
                },
                "stages": [asdict(s) for s in c.stages],
                "start": c.start.to_dict() if c.start is not None else None,
                "notes": list(c.notes),
            }
            for c in plan.candidates
        ],
        "configs": [c.to_dict() for c in plan.configs],
        "offers": [asdict(o) for o in plan.offers],
        "models": plan.models.to_dict(),
        "spec": spec_to_dict(plan.spec),
    }


def _intervals_dict(c: Any) -> dict[str, Any]:
    """The candidate's intervals as plan-file fields (rounded like the point predictions)."""
    out: dict[str, Any] = {}
    for name, iv in (
        ("cost_usd", c.cost_interval),
        ("wall_s", c.wall_interval),
        ("samples", c.samples_interval),
    ):
        if iv is not None:
            out[f"{name}_interval"] = {k: figure(v) for k, v in iv.to_dict().items()}
    if c.p_reach is not None:
        out["p_reach"] = round(c.p_reach, 4)
    return out


def body_fingerprint(body: Mapping[str, Any]) -> str:
    """The SHA-256 (16 hex digits) of a plan body's canonical JSON."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
