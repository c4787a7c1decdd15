"""Plan, Candidate and StagePlan; the plan file (``paretrain.plan/2``) and its fingerprint.

The plan file holds everything a run needs (the validated spec, the configs, the offers, the
fitted models every replan rebuilds its options from: ``paretrain.planner.plan.fitted``) and nothing that
changes between two plannings of the same spec and profile: no timestamps, no random ids.
Predicted figures are written to 12 significant digits, model parameters at full precision.
Its fingerprint is the SHA-256 of its own canonical JSON without the fingerprint field.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from paretrain.planner.errors import InputError
from paretrain.planner.inputs.catalog import Offer
from paretrain.planner.inputs.metric import ACCURACY, Metric
from paretrain.planner.inputs.space import Config
from paretrain.planner.measure.fits import StageNoise
from paretrain.planner.measure.uncertainty import (
    MODELED_SPREAD,
    Interval,
    StageDraw,
    candidate_intervals,
    convergence_spread,
)
from paretrain.planner.plan.choices import filter_by_confidence, merge_overlapping, renumber
from paretrain.planner.plan.fitted import (
    ConvergenceRecord,
    Curves,
    LearningCurveRecord,
    NoiseCurveRecord,
    PlanModels,
    StepModelRecord,
)
from paretrain.planner.program.pareto import knee_index
from paretrain.planner.program.stagecost import bill_front

if TYPE_CHECKING:
    from paretrain.planner.measure.fits import ConvergenceFit, NoiseCurve
    from paretrain.planner.measure.throughput import StepModel
    from paretrain.planner.program.milp import Front
    from paretrain.planner.program.problem import Option, Problem, ProblemContext

__all__ = [
    "PLAN_SCHEMA",
    "Candidate",
    "Plan",
    "StagePlan",
    "make_plan",
    "plan_from_json",
    "plan_to_json",
    "stage_plan",
]

PLAN_SCHEMA = "paretrain.plan/2"


def _fig(x: float) -> float:
    """A predicted figure (dollars, seconds) as written: 12 significant digits."""
    return float(f"{float(x):.12g}")


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
    #: P10/P50/P90 of cost and wall time, of the samples the level needs, and the share of
    #: draws in which the planned samples reach it (``paretrain.planner.measure.uncertainty``)
    cost_interval: Interval | None = None
    wall_interval: Interval | None = None
    samples_interval: Interval | None = None
    p_reach: float | None = None

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
    models: PlanModels = field(default_factory=PlanModels)
    notes: tuple[str, ...] = ()

    @property
    def metric(self) -> Metric:
        """The target metric and its direction (a candidate's ``accuracy`` is its level in it)."""
        return metric_of(self.spec)

    def candidate(self, which: str) -> Candidate:
        """``knee`` (the chosen one), ``cheapest``, ``fastest``, ``accurate`` (the highest level,
        the cheapest of those) or a candidate id."""
        ident = {
            "knee": self.chosen,
            "chosen": self.chosen,
            "cheapest": self.cheapest,
            "fastest": self.fastest,
            "accurate": self.most_accurate,
        }.get(which, which)
        for c in self.candidates:
            if c.id == ident:
                return c
        ids = ", ".join(c.id for c in self.candidates)
        raise InputError(
            f"--candidate {which!r} is not in the plan. To fix: use knee, cheapest, "
            f"fastest, accurate or one of {ids}"
        )

    @property
    def most_accurate(self) -> str:
        """The id of the candidate at the highest level of the target metric (the cheapest of them)."""
        m = self.metric
        best = max(self.candidates, key=lambda c: (m.score(c.accuracy), -c.cost_usd, -c.wall_s))
        return best.id

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

    def step_model(self, hardware: str, config_id: str, precision: str, workers: int = 1) -> StepModelRecord:
        """The step model of one (offer, config, precision, workers); ``KeyError`` if not planned."""
        return self.models.step_model(hardware, config_id, precision, workers)

    def step_models(self, config_id: str) -> tuple[StepModelRecord, ...]:
        """Every step model of ``config_id``: the options a replan may choose from."""
        return self.models.step_models(config_id)

    def convergence(self, config_id: str, level: float) -> ConvergenceRecord:
        return self.models.convergence_of(config_id, level)

    def noise_curve(self, config_id: str) -> NoiseCurve | None:
        return self.models.noise_curve(config_id)

    def stage_noise(self, config_id: str, level: float) -> StageNoise:
        return self.models.stage_noise(config_id, level)

    def curves(self, config_id: str) -> Curves:
        """batch size -> [(samples, accuracy)] of the profile's convergence runs."""
        return self.models.curves_of(config_id)

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(_canonical(_body(self)).encode()).hexdigest()[:16]


def make_plan(
    *,
    spec_data: Mapping[str, Any],
    spec_digest: str,
    profile_key: str,
    problem: Problem,
    ctx: ProblemContext,
    front: Front,
    configs: Sequence[Config],
    offers: Sequence[Offer],
    solver: str,
) -> Plan:
    """Turn the solver's Pareto schedules into candidates, ids ordered by cost. Each schedule is
    first re-costed as its providers bill (``paretrain.planner.program.stagecost.bill_front``: increments and
    minimums, applied after the linear solve); a stage's cost includes the billing of the hold
    it ends."""
    cfg = {c.id: c for c in configs}
    metric = metric_of(spec_data)
    billed, bill_notes = bill_front(problem, front.schedules, {o.id: o for o in offers}, ctx.instances)
    billing = {(s.choice, s.options): extra for s, extra in billed}
    scheds = sorted((s for s, _ in billed), key=lambda s: (s.cost_usd, s.wall_s, -s.accuracy))
    width = max(2, len(str(len(scheds))))
    cands = []
    for i, s in enumerate(scheds):
        ch = problem.choices[s.choice]
        fit = ctx.convergence[(ch.config_id, ch.accuracy)]
        stages = []
        notes: list[str] = []
        for k, o in enumerate(s.options):
            opt = problem.options[o]
            model = ctx.step_models[(opt.hardware, ch.config_id, opt.precision, opt.workers)]
            st = stage_plan(
                k,
                opt,
                model,
                fit,
                cfg[ch.config_id],
                samples=problem.samples[s.choice, k, o],
                time_s=problem.time_s[s.choice, k, o],
                cost_usd=problem.cost_usd[s.choice, k, o] + billing[(s.choice, s.options)][k],
                b_noise=ctx.b_noise_stage[(s.choice, k)],
                instances=ctx.instances[(opt.hardware, opt.workers)],
                step_s=model.predict(opt.batch_size, opt.workers),
                eval_s=model.eval_s,
            )
            if st.extrapolated:
                notes.append(
                    f"stage {k}: batch {opt.batch_size} x {opt.workers} workers is outside the "
                    "measured range (extrapolated)"
                )
            if st.modeled:
                notes.append(f"stage {k}: {opt.hardware} step time is modeled, not measured")
            stages.append(st)
            if k and problem.option_hw[o] != problem.option_hw[s.options[k - 1]]:
                notes.append(f"stage {k}: moves to {opt.hardware}")
        cands.append(
            Candidate(
                id=f"p{i + 1:0{width}d}",
                config_id=ch.config_id,
                accuracy=metric.level(ch.accuracy),
                cost_usd=_fig(s.cost_usd),
                wall_s=_fig(s.wall_s),
                stages=tuple(stages),
                notes=tuple(notes),
                **_intervals_of(s, problem, ctx, fit),
            )
        )
    cands, offered_notes = _offered(cands, spec_data, problem)
    points = [(c.cost_usd, c.wall_s, metric.score(c.accuracy)) for c in cands]
    knee = cands[knee_index(points)].id
    cheapest = min(cands, key=lambda c: (c.cost_usd, c.wall_s, -metric.score(c.accuracy))).id
    fastest = min(cands, key=lambda c: (c.wall_s, c.cost_usd, -metric.score(c.accuracy))).id
    used = {c.config_id for c in cands}
    models = _plan_models(ctx, used, metric)
    status = "optimal" if front.proven_optimal else "not proven optimal (a solve hit its time limit)"
    return Plan(
        spec_digest=spec_digest,
        profile_key=profile_key,
        spec=spec_data,
        configs=tuple(cfg[c] for c in sorted(used)),
        offers=tuple(offers),
        candidates=tuple(cands),
        chosen=knee,
        cheapest=cheapest,
        fastest=fastest,
        solver={
            "name": solver if front.method == "milp" else "paths",
            "status": status,
            "solves": front.solves,
            "method": front.method,
        },
        models=models,
        notes=tuple(ctx.notes) + tuple(front.notes) + tuple(bill_notes) + tuple(offered_notes),
    )


def _intervals_of(s: Any, problem: Problem, ctx: ProblemContext, fit: ConvergenceFit) -> dict[str, Any]:
    """A schedule's prediction intervals (``paretrain.planner.measure.uncertainty``)."""
    ch = problem.choices[s.choice]
    draws = []
    for k, o in enumerate(s.options):
        opt = problem.options[o]
        model = ctx.step_models[(opt.hardware, ch.config_id, opt.precision, opt.workers)]
        draws.append(
            StageDraw(
                opt.hardware,
                opt.global_batch,
                float(problem.samples[s.choice, k, o]),
                float(problem.time_s[s.choice, k, o]),
                float(problem.cost_usd[s.choice, k, o]),
                ctx.b_noise_stage[(s.choice, k)],
                MODELED_SPREAD if model.modeled else getattr(model, "spread", 0.0),
            )
        )
    fixed_s = s.wall_s - sum(d.time_s for d in draws)
    fixed_usd = s.cost_usd - sum(d.cost_usd for d in draws)
    cost, wall, p_reach, needed = candidate_intervals(
        draws,
        convergence_spread(fit.points, fit.e_min, fit.b_noise, fit.crossing, fit.crossing_dof),
        max(fixed_s, 0.0),
        max(fixed_usd, 0.0),
    )
    return {"cost_interval": cost, "wall_interval": wall, "samples_interval": needed, "p_reach": p_reach}


def _offered(
    cands: list[Candidate], spec_data: Mapping[str, Any], problem: Problem
) -> tuple[list[Candidate], list[str]]:
    """The candidates a user is offered: within budget and deadline at ``planner.confidence``,
    one of each group within the prediction's spread unless ``planner.exact_front``
    (``paretrain.planner.plan.choices``); ids renumbered by cost."""
    planner = spec_data.get("planner", {}) if isinstance(spec_data, Mapping) else {}
    confidence = float(planner.get("confidence", 0.9) or 0.9)
    kept, notes = filter_by_confidence(cands, confidence, problem.budget_usd, problem.deadline_s)
    if not kept:  # nothing fits at the quantile: offer the front as it is, and say so
        notes.append(
            f"no candidate fits the budget and deadline at planner.confidence {confidence:g}; "
            "all are listed at their point prediction"
        )
        kept = list(cands)
    if not planner.get("exact_front", False):
        kept, merged = merge_overlapping(kept)
        notes += merged
    return renumber(kept), notes


def stage_plan(
    index: int,
    option: Option,
    step: StepModel,
    fit: ConvergenceFit,
    config: Config,
    *,
    samples: float,
    time_s: float,
    cost_usd: float,
    b_noise: float,
    instances: int,
    step_s: float,
    eval_s: float,
) -> StagePlan:
    """One stage as the plan and every replan write it: whole steps, the LR for its global
    batch, the predictions of ``paretrain.planner.program.stagecost`` and where the models extrapolate."""
    per_step = option.global_batch
    steps = max(1, math.ceil(float(samples) / per_step - 1e-9))
    extrap = step.extrapolated(option.batch_size, option.workers) or (
        bool(fit.points) and per_step < min(b for b, _ in fit.points)
    )
    return StagePlan(
        index=index,
        hardware=option.hardware,
        precision=option.precision,
        batch_size=option.batch_size,
        workers=option.workers,
        samples=steps * per_step,
        steps=steps,
        lr=float(f"{config.lr_at(per_step):.6g}"),
        cost_usd=_fig(cost_usd),
        wall_s=_fig(time_s),
        b_noise=round(float(b_noise), 3),
        modeled=bool(step.modeled),
        extrapolated=extrap,
        spot=option.hardware.endswith(":spot"),
        instances=int(instances),
        step_s=float(f"{step_s:.6g}"),
        eval_s=float(f"{eval_s:.6g}"),
    )


def _plan_models(ctx: ProblemContext, used: set[str], metric: Metric = ACCURACY) -> PlanModels:
    """The models of the configs the candidates use, every option of theirs included."""
    steps = tuple(
        StepModelRecord.of(key, m, ctx.instances[(key[0], key[3])], ctx.storage_bytes[key])
        for key, m in sorted(ctx.step_models.items())
        if key[1] in used
    )
    conv = []
    for (cid, level), fit in sorted(ctx.convergence.items()):
        if cid in used:
            noise = ctx.stage_noise.get((cid, level))
            scale = noise.scale if noise is not None and noise.curve is not None else None
            conv.append(
                ConvergenceRecord(
                    cid,
                    float(metric.level(level)),
                    float(fit.e_min),
                    float(fit.b_noise),
                    tuple((int(b), int(n)) for b, n in fit.points),
                    int(fit.max_batch),
                    None if scale is None else float(scale),
                )
            )
    noise_curves = tuple(
        NoiseCurveRecord(cid, float(c.a), float(c.slope), int(c.p_min), int(c.p_max))
        for cid, c in sorted(ctx.noise_curves.items())
        if cid in used
    )
    curves = tuple(
        LearningCurveRecord(cid, int(b), tuple((int(n), float(a)) for n, a in curve))
        for cid in sorted(used)
        for b, curve in sorted(ctx.curves.get(cid, {}).items())
    )
    return PlanModels(steps, tuple(conv), noise_curves, curves, float(ctx.egress_bytes), int(ctx.pruned))


def _intervals_dict(c: Candidate) -> dict[str, Any]:
    """The candidate's intervals as plan-file fields (rounded like the point predictions)."""
    out: dict[str, Any] = {}
    for name, iv in (
        ("cost_usd", c.cost_interval),
        ("wall_s", c.wall_interval),
        ("samples", c.samples_interval),
    ):
        if iv is not None:
            out[f"{name}_interval"] = {k: _fig(v) for k, v in iv.to_dict().items()}
    if c.p_reach is not None:
        out["p_reach"] = round(c.p_reach, 4)
    return out


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


def metric_of(spec_data: Mapping[str, Any]) -> Metric:
    """The target metric a plan's spec names (``val_accuracy``, maximized, when it names none)."""
    t = spec_data.get("target", {}) if isinstance(spec_data, Mapping) else {}
    return Metric(t.get("metric") or "val_accuracy", t.get("direction") or "maximize")


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
        "pareto": [
            {
                "id": c.id,
                "config": c.config_id,
                "predicted": {
                    "cost_usd": c.cost_usd,
                    "wall_s": c.wall_s,
                    "accuracy": c.accuracy,
                    **_intervals_dict(c),
                },
                "stages": [{k: v for k, v in asdict(s).items()} for s in c.stages],
                "notes": list(c.notes),
            }
            for c in plan.candidates
        ],
        "configs": [c.to_dict() for c in plan.configs],
        "offers": [_offer_dict(o) for o in plan.offers],
        "models": plan.models.to_dict(),
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
        cands = tuple(
            Candidate(
                id=c["id"],
                config_id=c["config"],
                accuracy=float(c["predicted"]["accuracy"]),
                cost_usd=float(c["predicted"]["cost_usd"]),
                wall_s=float(c["predicted"]["wall_s"]),
                stages=tuple(StagePlan(**s) for s in c["stages"]),
                notes=tuple(c.get("notes", ())),
                **_intervals_from(c["predicted"]),
            )
            for c in d["pareto"]
        )
        plan = Plan(
            spec_digest=d["spec_digest"],
            profile_key=d["profile_key"],
            spec=d["spec"],
            configs=tuple(Config.from_dict(c) for c in d["configs"]),
            offers=tuple(Offer(**o) for o in d["offers"]),
            candidates=cands,
            chosen=d["chosen"],
            cheapest=d["cheapest"],
            fastest=d["fastest"],
            solver=d.get("solver", {}),
            models=PlanModels.from_dict(d["models"]),
            notes=tuple(d.get("notes", ())),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(f"{where}: a plan field is missing or malformed ({err!r}). To fix: {fix}") from None
    if d.get("fingerprint") != plan.fingerprint:
        raise InputError(
            f"{where}: field 'fingerprint' does not match the plan's content "
            f"(got {d.get('fingerprint')!r}, content gives {plan.fingerprint!r}); the file "
            f"was edited or damaged. To fix: {fix}"
        )
    return plan
