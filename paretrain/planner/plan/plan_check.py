"""What a plan read from a file must hold before a run uses it.

A plan file is written by ``paretrain plan`` and carries a fingerprint of its content, so an
edit by hand is refused. But a fingerprint is a checksum, not a seal: a file can be edited and
its fingerprint recomputed, or written by an older paretrain. A run divides by a stage's
B_noise, looks its hardware up among the plan's offers and counts its samples in whole batches,
so every such field is checked here, once, and a bad one is bad input: one line naming the
field, the rule and the value received (``InputError``, exit 2), before anything is written or
spent, instead of an internal error half-way into a run.

>>> _rule("count")
'a whole number >= 0'
"""

from __future__ import annotations

import math
from typing import Any

from paretrain.planner.errors import InputError
from paretrain.planner.plan.plan import Plan

__all__ = ["check_plan"]

#: what each numeric stage field must be (``count``: a whole number >= 0; ``size``: >= 1;
#: ``positive``: a finite number > 0; ``amount``: a finite number >= 0)
STAGE_RULES = {
    "batch_size": "size",
    "workers": "size",
    "instances": "size",
    "samples": "count",
    "steps": "count",
    "lr": "positive",
    "b_noise": "positive",
    "cost_usd": "amount",
    "wall_s": "amount",
    "step_s": "amount",
    "eval_s": "amount",
}


def _rule(kind: str) -> str:
    return {
        "count": "a whole number >= 0",
        "size": "a whole number >= 1",
        "positive": "a positive number",
        "amount": "a finite number >= 0",
    }[kind]


def _ok(value: Any, kind: str) -> bool:
    if isinstance(value, bool):
        return False
    if kind in ("count", "size"):
        return isinstance(value, int) and value >= (1 if kind == "size" else 0)
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    return value > 0 if kind == "positive" else value >= 0


def check_plan(plan: Plan, where: str, fix: str) -> None:
    """Raise ``InputError`` (``where``: the file; ``fix``: how to get a good one) at the first
    field of ``plan`` that a run could not use."""

    def bad(field: str, rule: str, got: Any) -> InputError:
        return InputError(f"{where}: field '{field}' must be {rule}; got {got!r}. To fix: {fix}")

    ids = [c.id for c in plan.candidates]
    if not ids:
        raise bad("pareto", "a non-empty list of candidates", [])
    if len(set(ids)) != len(ids):
        raise bad("pareto[].id", "unique", sorted(i for i in ids if ids.count(i) > 1)[0])
    for name in ("chosen", "cheapest", "fastest"):
        if getattr(plan, name) not in ids:
            raise bad(name, f"one of the candidates' ids ({', '.join(ids)})", getattr(plan, name))
    configs = {c.id for c in plan.configs}
    offers = {o.id for o in plan.offers}
    for c in plan.candidates:
        at = f"pareto[{c.id}]"
        if c.config_id not in configs:
            raise bad(
                f"{at}.config", f"one of the plan's configs ({', '.join(sorted(configs))})", c.config_id
            )
        for name in ("cost_usd", "wall_s"):
            if not _ok(getattr(c, name), "amount"):
                raise bad(f"{at}.predicted.{name}", _rule("amount"), getattr(c, name))
        if not c.stages:
            raise bad(f"{at}.stages", "a non-empty list of stages", [])
        for i, st in enumerate(c.stages):
            here = f"{at}.stages[{i}]"
            if st.index != i:
                raise bad(f"{here}.index", f"its position in the list ({i})", st.index)
            if st.hardware not in offers:
                raise bad(
                    f"{here}.hardware", f"one of the plan's offers ({', '.join(sorted(offers))})", st.hardware
                )
            if st.precision not in plan.spec.planner.precisions:
                allowed = ", ".join(plan.spec.planner.precisions)
                raise bad(
                    f"{here}.precision", f"one of the spec's planner.precisions ({allowed})", st.precision
                )
            for name, kind in STAGE_RULES.items():
                value = getattr(st, name)
                if not _ok(value, kind):
                    raise bad(f"{here}.{name}", _rule(kind), value)
