"""Plan, Candidate and StagePlan; the plan file (``paretrain.plan/1``) and its fingerprint.

The plan file holds everything a run needs (the validated spec, the configs, the offers) and
nothing that changes between two plannings of the same spec and profile: no timestamps, no
random ids, floats rounded to fixed precision. Its fingerprint is the SHA-256 of its own
canonical JSON without the fingerprint field.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from planner.errors import InputError
from planner.pareto import knee_index
from planner.catalog import Offer
from planner.space import Config

if TYPE_CHECKING:
    from planner.milp import Front
    from planner.problem import Problem, ProblemContext

__all__ = ["StagePlan", "Candidate", "Plan", "make_plan", "plan_to_json", "plan_from_json", "PLAN_SCHEMA"]

PLAN_SCHEMA = "paretrain.plan/1"


def _usd(x: float) -> float:
    return round(float(x), 12)


def _sec(x: float) -> float:
    return round(float(x), 4)


@dataclass(frozen=True, slots=True)
class StagePlan:
    index: int
    hardware: str
    precision: str
    batch_size: int
    workers: int
    samples: int
    steps: int
    lr: float
    cost_usd: float
    wall_s: float
    b_noise: float
    modeled: bool = False
    extrapolated: bool = False
    spot: bool = False
    instances: int = 1
    step_s: float = 0.0  # predicted seconds per step (with the all-reduce term)
    eval_s: float = 0.0  # predicted seconds per evaluation


@dataclass(frozen=True, slots=True)
class Candidate:
    """One Pareto point: a config trained to ``accuracy`` by a sequence of stages."""

    id: str
    config_id: str
    accuracy: float
    cost_usd: float
    wall_s: float
    stages: tuple[StagePlan, ...]
    notes: tuple[str, ...] = ()

    @property
    def samples(self) -> int:
        return sum(s.samples for s in self.stages)

    @property
    def hardware(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.hardware for s in self.stages))


@dataclass(frozen=True, slots=True)
class Plan:
    spec_digest: str
    profile_key: str
    spec: Mapping[str, Any]
    configs: tuple[Config, ...]
    offers: tuple[Offer, ...]
    candidates: tuple[Candidate, ...]
    chosen: str
    cheapest: str
    fastest: str
    solver: Mapping[str, Any] = field(default_factory=dict)
    models: Mapping[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def candidate(self, which: str) -> Candidate:
        """``knee`` (the chosen one), ``cheapest``, ``fastest`` or a candidate id."""
        ident = {"knee": self.chosen, "chosen": self.chosen, "cheapest": self.cheapest,
                 "fastest": self.fastest}.get(which, which)
        for c in self.candidates:
            if c.id == ident:
                return c
        ids = ", ".join(c.id for c in self.candidates)
        raise InputError(f"--candidate {which!r} is not in the plan. To fix: use knee, cheapest, "
                         f"fastest or one of {ids}")

    def config(self, config_id: str) -> Config:
        for c in self.configs:
            if c.id == config_id:
                return c
        raise KeyError(config_id)

    def offer(self, offer_id: str) -> Offer:
        for o in self.offers:
            if o.id == offer_id:
                return o
        raise KeyError(offer_id)

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(_canonical(_body(self)).encode()).hexdigest()[:16]


def make_plan(*, spec_data: Mapping[str, Any], spec_digest: str, profile_key: str,
              problem: "Problem", ctx: "ProblemContext", front: "Front",
              configs: Sequence[Config], offers: Sequence[Offer], solver: str) -> Plan:
    """Turn the solver's Pareto schedules into candidates, ids ordered by cost."""
    cfg = {c.id: c for c in configs}
    scheds = sorted(front.schedules, key=lambda s: (s.cost_usd, s.wall_s, -s.accuracy))
    width = max(2, len(str(len(scheds))))
    cands = []
    for i, s in enumerate(scheds):
        ch = problem.choices[s.choice]
        c = cfg[ch.config_id]
        stages = []
        notes: list[str] = []
        for k, o in enumerate(s.options):
            opt = problem.options[o]
            model = ctx.step_models[(opt.hardware, ch.config_id, opt.precision, opt.workers)]
            fit = ctx.convergence[(ch.config_id, ch.accuracy)]
            samples = float(problem.samples[s.choice, k, o])
            per_step = opt.global_batch
            steps = max(1, math.ceil(samples / per_step - 1e-9))
            extrap = model.extrapolated(opt.batch_size, opt.workers) or (
                bool(fit.points) and per_step < min(b for b, _ in fit.points))
            if extrap:
                notes.append(f"stage {k}: batch {opt.batch_size} x {opt.workers} workers is outside the "
                             "measured range (extrapolated)")
            if model.modeled:
                notes.append(f"stage {k}: {opt.hardware} step time is modeled, not measured")
            stages.append(StagePlan(
                index=k, hardware=opt.hardware, precision=opt.precision, batch_size=opt.batch_size,
                workers=opt.workers, samples=steps * per_step, steps=steps,
                lr=float(f"{c.lr_at(per_step):.6g}"), cost_usd=_usd(problem.cost_usd[s.choice, k, o]),
                wall_s=_sec(problem.time_s[s.choice, k, o]),
                b_noise=round(ctx.b_noise_stage[(s.choice, k)], 3),
                modeled=bool(model.modeled), extrapolated=extrap,
                spot=opt.hardware.endswith(":spot"), instances=int(ctx.instances.get(o, 1)),
                step_s=float(f"{model.predict(opt.batch_size, opt.workers):.6g}"),
                eval_s=float(f"{model.eval_s:.6g}")))
            if k and problem.option_hw[o] != problem.option_hw[s.options[k - 1]]:
                notes.append(f"stage {k}: moves to {opt.hardware}")
        cands.append(Candidate(id=f"p{i + 1:0{width}d}", config_id=ch.config_id, accuracy=ch.accuracy,
                               cost_usd=_usd(s.cost_usd), wall_s=_sec(s.wall_s), stages=tuple(stages),
                               notes=tuple(notes)))
    points = [(c.cost_usd, c.wall_s, c.accuracy) for c in cands]
    knee = cands[knee_index(points)].id
    cheapest = min(cands, key=lambda c: (c.cost_usd, c.wall_s, -c.accuracy)).id
    fastest = min(cands, key=lambda c: (c.wall_s, c.cost_usd, -c.accuracy)).id
    used = {c.config_id for c in cands}
    models: dict[str, Any] = {"convergence": {}, "step_time": {}}
    for (cid, level), fit in sorted(ctx.convergence.items()):
        if cid in used:
            models["convergence"].setdefault(cid, {})[f"{level:g}"] = {
                "e_min": round(fit.e_min, 3), "b_noise": round(fit.b_noise, 3),
                "points": [list(p) for p in fit.points]}
    for (h, cid, q, n), m in sorted(ctx.step_models.items()):
        if cid in used and n == 1:
            models["step_time"][f"{h}|{cid}|{q}"] = {
                "alpha_s": float(f"{m.single.alpha:.6g}"), "beta_s": float(f"{m.single.beta:.6g}"),
                "b_range": [m.single.b_min, m.single.b_max], "eval_s": float(f"{m.eval_s:.6g}"),
                "ckpt_s": float(f"{m.ckpt_s:.6g}"), "modeled": bool(m.modeled)}
    for cid, curve in sorted(ctx.noise_curves.items()):
        if cid in used:
            models.setdefault("noise", {})[cid] = {
                "log_a": round(curve.a, 6), "slope": round(curve.slope, 6),
                "progress_range": [curve.p_min, curve.p_max]}
    for cid in sorted(used):
        if ctx.curves.get(cid):
            models.setdefault("curves", {})[cid] = {
                str(b): [[int(n), float(a)] for n, a in curve] for b, curve in sorted(ctx.curves[cid].items())}
    status = "optimal" if front.proven_optimal else "not proven optimal (a solve hit its time limit)"
    if ctx.pruned:
        models["pruned_options"] = ctx.pruned
    return Plan(
        spec_digest=spec_digest, profile_key=profile_key, spec=spec_data,
        configs=tuple(cfg[c] for c in sorted(used)),
        offers=tuple(offers), candidates=tuple(cands),
        chosen=knee, cheapest=cheapest, fastest=fastest,
        solver={"name": solver, "status": status, "solves": front.solves},
        models=models, notes=tuple(ctx.notes) + tuple(front.notes),
    )


def _offer_dict(o: Offer) -> dict[str, Any]:
    return asdict(o)


def _body(plan: Plan) -> dict[str, Any]:
    return {
        "schema": PLAN_SCHEMA,
        "spec_digest": plan.spec_digest,
        "profile_key": plan.profile_key,
        "chosen": plan.chosen,
        "cheapest": plan.cheapest,
        "fastest": plan.fastest,
        "solver": dict(plan.solver),
        "notes": list(plan.notes),
        "pareto": [{
            "id": c.id, "config": c.config_id,
            "predicted": {"cost_usd": c.cost_usd, "wall_s": c.wall_s, "accuracy": c.accuracy},
            "stages": [{k: v for k, v in asdict(s).items()} for s in c.stages],
            "notes": list(c.notes),
        } for c in plan.candidates],
        "configs": [c.to_dict() for c in plan.configs],
        "offers": [_offer_dict(o) for o in plan.offers],
        "models": plan.models,
        "spec": plan.spec,
    }


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def plan_to_json(plan: Plan) -> str:
    body = _body(plan)
    body = {"schema": PLAN_SCHEMA, "fingerprint": plan.fingerprint, **body}
    return json.dumps(body, indent=1, sort_keys=False, allow_nan=False) + "\n"


def plan_from_json(text: str, where: str) -> Plan:
    """Parse a plan file; ``InputError`` names the file and what is wrong with it."""
    fix = "write it again with 'paretrain plan SPEC -o PLAN'"
    try:
        d = json.loads(text)
    except ValueError as err:
        raise InputError(f"{where}: not a plan file, invalid JSON ({err}). To fix: {fix}") from None
    if not isinstance(d, dict) or d.get("schema") != PLAN_SCHEMA:
        got = d.get("schema") if isinstance(d, dict) else type(d).__name__
        raise InputError(f"{where}: field 'schema' must be {PLAN_SCHEMA}; got {got!r}. To fix: {fix}")
    try:
        cands = tuple(Candidate(
            id=c["id"], config_id=c["config"], accuracy=float(c["predicted"]["accuracy"]),
            cost_usd=float(c["predicted"]["cost_usd"]), wall_s=float(c["predicted"]["wall_s"]),
            stages=tuple(StagePlan(**s) for s in c["stages"]), notes=tuple(c.get("notes", ())))
            for c in d["pareto"])
        plan = Plan(spec_digest=d["spec_digest"], profile_key=d["profile_key"], spec=d["spec"],
                    configs=tuple(Config.from_dict(c) for c in d["configs"]),
                    offers=tuple(Offer(**o) for o in d["offers"]), candidates=cands, chosen=d["chosen"],
                    cheapest=d["cheapest"], fastest=d["fastest"], solver=d.get("solver", {}),
                    models=d.get("models", {}), notes=tuple(d.get("notes", ())))
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(f"{where}: a plan field is missing or malformed ({err!r}). To fix: {fix}") from None
    if d.get("fingerprint") != plan.fingerprint:
        raise InputError(f"{where}: field 'fingerprint' does not match the plan's content "
                         f"(got {d.get('fingerprint')!r}, content gives {plan.fingerprint!r}); the file "
                         f"was edited or damaged. To fix: {fix}")
    return plan
