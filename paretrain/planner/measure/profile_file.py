"""The profile file (``paretrain.profile/1``): a ``Profile`` as JSON text and back.

Files written before the metric-neutral names (a run's ``best_accuracy``, a noise sample's
``accuracy``) still read, and so do files without ``checkpoints`` (the truncated runs' kept
states, ``TruncatedCheckpoint``; none: no run starts from the profile).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from paretrain.planner.errors import InputError
from paretrain.planner.measure.measurements import (
    ConvergenceRun,
    NoiseSample,
    StepProfile,
    StepSample,
    SyncSample,
    TruncatedCheckpoint,
)
from paretrain.planner.measure.profile import PROFILE_SCHEMA, Profile

__all__ = ["profile_from_json", "profile_to_json"]


def profile_to_json(profile: Profile) -> str:
    """The profile as the text of a ``paretrain.profile/1`` file."""
    d = asdict(profile)
    d["notes"] = dict(profile.notes)
    d["peaks"] = dict(profile.peaks)
    return json.dumps({"schema": PROFILE_SCHEMA, **d}, indent=1, sort_keys=True) + "\n"


def _renamed(record: Mapping[str, Any], old: str, new: str) -> dict[str, Any]:
    """A record of a profile file written before the metric-neutral names (``accuracy`` held any
    metric's value), with the key's new name."""
    out = dict(record)
    if old in out and new not in out:
        out[new] = out.pop(old)
    return out


def profile_from_json(text: str, where: str) -> Profile:
    """Parse a profile file's text; ``InputError`` names the file and what is wrong."""
    try:
        data = json.loads(text)
    except ValueError as err:
        raise InputError(
            f"{where}: not a readable profile ({err}). To fix: rewrite it with 'paretrain profile'"
        ) from None
    if not isinstance(data, dict) or data.get("schema") != PROFILE_SCHEMA:
        got = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise InputError(
            f"{where}: field 'schema' must be {PROFILE_SCHEMA}; got {got!r}. To fix: "
            "rewrite it with 'paretrain profile'"
        )
    try:
        return Profile(
            key=data["key"],
            device=data["device"],
            steps=tuple(
                StepProfile(**{**s, "samples": tuple(StepSample(**x) for x in s["samples"])})
                for s in data["steps"]
            ),
            convergence=tuple(
                ConvergenceRun(
                    **{
                        **_renamed(r, "best_accuracy", "best_level"),
                        "reached": tuple((float(a), None if n is None else int(n)) for a, n in r["reached"]),
                        "curve": tuple((int(n), float(a)) for n, a in r["curve"]),
                    }
                )
                for r in data["convergence"]
            ),
            noise=tuple(NoiseSample(**_renamed(n, "accuracy", "level")) for n in data.get("noise", [])),
            measured_at=data.get("measured_at", ""),
            spend_usd=float(data.get("spend_usd", 0.0)),
            notes=data.get("notes", {}),
            peaks={k: float(v) for k, v in data.get("peaks", {}).items()},
            sync=tuple(SyncSample(**x) for x in data.get("sync", [])),
            unsupported=tuple((str(d), str(q)) for d, q in data.get("unsupported", [])),
            checkpoints=tuple(TruncatedCheckpoint(**c) for c in data.get("checkpoints", [])),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(
            f"{where}: a profile entry is malformed ({err}). To fix: rewrite it with 'paretrain profile'"
        ) from None
