"""Fill a ``Problem`` from the spec, the offers and the profile (the docs: concepts, the models and the program).

For choice m = (config c, accuracy level a), stage k of K and option o = (offer h, precision
q, per-worker batch b, workers n), the stage's samples, seconds and dollars are
``paretrain.planner.program.stagecost.stage_cost`` of ideal progress E_min(c, a) / K at ``B_noise(c, a, k)``:
the one cost model that every replan (``paretrain.planner.plan.replan``) uses too. Moving onto an offer and
leaving one cost ``stagecost.entry_cost`` and ``stagecost.exit_usd``; stage 0 on a non-local
offer includes its provisioning (the run starts there), so every schedule pays its entry. A
choice may also start from the profile's checkpoint of its config (``program.reuse``).

``B_noise(c, a, k)`` follows the measured gradient-noise curve (``paretrain.planner.measure.fits.stage_noise``);
``t(b, n)`` is measured or modeled (``paretrain.planner.measure.throughput``). An option is absent when its memory
does not fit the device, its global batch is above the largest one measured to reach the level,
it needs more local threads than the machine has, or its local device does not train in its
precision (the profile lists those pairs; the plan's notes name each one). Options dominated
on the same hardware are then pruned (exactly; ``paretrain.planner.program.problem.prune_dominated``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from paretrain.planner.measure.fits import (
    B_NOISE_CAP,
    B_NOISE_FLOOR,
    ConvergenceFit,
    NoiseCurve,
    StageNoise,
    fit_noise_curve,
    stage_noise,
)
from paretrain.planner.measure.profile import worker_counts
from paretrain.planner.measure.throughput import StepModel, instances_for, speed_factors, step_models
from paretrain.planner.measure.truncated import worth
from paretrain.planner.program.convergence import fit_all_convergence
from paretrain.planner.program.problem import Choice, Option, Problem, ProblemContext, prune_dominated
from paretrain.planner.program.reuse import StartFrom, reused_progress, stage_work, trains, with_starts
from paretrain.planner.program.stagecost import entry_cost, exit_usd, memory_bytes, option_fits, stage_cost

if TYPE_CHECKING:
    from paretrain.planner.inputs.catalog import Offer
    from paretrain.planner.inputs.space import Config
    from paretrain.planner.inputs.spec import Spec
    from paretrain.planner.measure.profile import Profile

__all__ = ["build_problem", "fit_all_convergence"]


def build_problem(
    spec: Spec,
    offers: Sequence[Offer],
    profile: Profile,
    configs: Sequence[Config],
    *,
    budget_usd: float | None = None,
    deadline_s: float | None = None,
    prune: bool = True,
) -> tuple[Problem, ProblemContext]:
    """The ``Problem`` of the module docstring, with its context for the plan file."""
    fits, notes = fit_all_convergence(spec, profile, configs)
    workers = [n for n in worker_counts(spec.planner.max_workers) if n >= spec.planner.min_workers]
    models = step_models(profile, offers, [c.id for c in configs], spec.planner.precisions, workers)
    notes.extend(_speed_notes(profile))
    left_out = _unsupported_precisions(spec, offers, profile, notes)
    options = _options(spec, offers, configs, models, workers, left_out)
    hardware, offer_of = tuple(o.id for o in offers), {o.id: o for o in offers}
    curves, noise = _noise_models(profile, configs, fits, spec.planner.stages, notes)
    choices, starts = _choices(spec, profile, fits, options, noise)
    b_noise_stage = _noise_by_stage(choices, fits, noise, spec.planner.stages, starts)
    instances = {(o.hardware, o.workers): instances_for(offer_of[o.hardware], o.workers) for o in options}
    storage = {key: _storage_bytes(spec, m) for key, m in models.items()}
    time, cost, samples = _fill(
        spec, choices, options, offer_of, fits, models, b_noise_stage, instances, storage, starts
    )
    notes.extend(_offers_left_out(spec, offers, options, time, models))
    switch_s, switch_usd, switch_out_usd, egress_bytes = _switches(hardware, offer_of, profile)
    problem = Problem(
        choices=choices,
        options=options,
        hardware=hardware,
        time_s=time,
        cost_usd=cost,
        samples=samples,
        option_hw=np.array([hardware.index(o.hardware) for o in options], dtype=int),
        switch_s=switch_s,
        switch_usd=switch_usd,
        switch_out_usd=switch_out_usd,
        budget_usd=spec.budget.train_usd if budget_usd is None else budget_usd,
        deadline_s=spec.deadline_s if deadline_s is None else deadline_s,
        score_floor=spec.target.metric_obj.score(spec.target.goal),
        metric=spec.target.metric_obj,
    )
    problem, pruned = prune_dominated(problem) if prune else (problem, 0)
    ctx = ProblemContext(
        step_models=models,
        convergence=fits,
        b_noise_stage=b_noise_stage,
        stage_noise=noise,
        noise_curves=curves,
        instances=instances,
        storage_bytes=storage,
        egress_bytes=egress_bytes,
        notes=tuple(notes),
        pruned=pruned,
        curves={c.id: {r.batch_size: r.curve for r in profile.runs_for(c.id) if r.curve} for c in configs},
        starts=starts,
    )
    return problem, ctx


def _switches(
    hardware: Sequence[str], offer_of: Mapping[str, Offer], profile: Profile
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Moving onto each offer (seconds, dollars), leaving it (dollars: the checkpoint's egress),
    and the checkpoint's bytes that a move carries."""
    entry = [entry_cost(offer_of[h]) for h in hardware]
    egress_bytes = max((_checkpoint_bytes(4.0 * sp.param_count, 1) for sp in profile.steps), default=0.0)
    out_usd = np.array([exit_usd(offer_of[h], egress_bytes) for h in hardware])
    return np.array([e[0] for e in entry]), np.array([e[1] for e in entry]), out_usd, egress_bytes


def _speed_notes(profile: Profile) -> list[str]:
    """One note per device whose steps are predicted faster or slower than its timed passes."""
    return [
        f"{dev}: steps and evaluations predicted at x{f:.3f} the profile's timed passes (its "
        "convergence runs' speed)"
        for dev, f in sorted(speed_factors(profile).items())
        if dev != "*"
    ]


def _options(
    spec: Spec,
    offers: Sequence[Offer],
    configs: Sequence[Config],
    models: Mapping[tuple[str, str, str, int], StepModel],
    workers: Sequence[int],
    left_out: Collection[tuple[str, str]],
) -> tuple[Option, ...]:
    """Every (offer, precision, batch size, workers) some config has a step model for."""
    return tuple(
        Option(o.id, q, b, n)
        for o in offers
        for q in spec.planner.precisions
        if (o.id, q) not in left_out
        for n in workers
        for b in spec.planner.batch_sizes
        if any((o.id, c.id, q, n) in models for c in configs)
    )


def _noise_models(
    profile: Profile,
    configs: Sequence[Config],
    fits: Mapping[tuple[str, float], ConvergenceFit],
    stages: int,
    notes: list[str],
) -> tuple[dict[str, NoiseCurve], dict[tuple[str, float], StageNoise]]:
    """The measured noise curves, and each (config, level)'s noise model along its stages."""
    curves = _noise_curves(profile, configs, notes)
    noise = {
        key: stage_noise(fit.b_noise, curves.get(key[0]), fit.e_min, stages) for key, fit in fits.items()
    }
    return curves, noise


def _storage_bytes(spec: Spec, model: StepModel) -> float:
    """The disk a run of this step model holds: its checkpoints and its data."""
    return _checkpoint_bytes(model.grad_bytes, spec.runtime.keep_checkpoints) + _data_bytes(spec)


def _choices(
    spec: Spec,
    profile: Profile,
    fits: Mapping[tuple[str, float], ConvergenceFit],
    options: Sequence[Option],
    noise: Mapping[tuple[str, float], StageNoise],
) -> tuple[tuple[Choice, ...], dict[int, StartFrom]]:
    """The program's choices and where those from the profile's checkpoints start
    (``with_starts``), a checkpoint's progress measured as the level was: a truncated run's by
    the noise scale along it (``paretrain.planner.measure.truncated.worth``), levels fitted
    across batch sizes by the stages' noise model."""

    def progress_of(cid: str, score: float, samples: int, batch: int) -> float:
        if spec.planner.convergence == "truncated":
            return worth(profile.noise_for(cid), samples, batch)
        return reused_progress(samples, batch, noise[(cid, score)])

    return with_starts(spec, profile.checkpoints, sorted(fits), options, progress_of)


def _noise_by_stage(
    choices: Sequence[Choice],
    fits: Mapping[tuple[str, float], ConvergenceFit],
    noise: Mapping[tuple[str, float], StageNoise],
    stages: int,
    starts: Mapping[int, StartFrom],
) -> dict[tuple[int, int], float]:
    """The noise scale of choice m at stage k, read at the stage's midpoint of ideal progress
    (after the progress of the checkpoint it starts from, ``_from_checkpoint``)."""
    out: dict[tuple[int, int], float] = {}
    for m, ch in enumerate(choices):
        key = (ch.config_id, ch.score)
        done, work = stage_work(fits[key].e_min, stages, starts.get(m))
        at = [noise[key].at(done + work * (k + 0.5)) for k in range(stages)]
        start = starts.get(m)
        if start is not None:
            at = _from_checkpoint(
                at, work, fits[key].samples(start.batch_size) - start.samples, start.batch_size
            )
        for k in range(stages):
            out[(m, k)] = at[k]
    return out


def _from_checkpoint(at: Sequence[float], work: float, left: float, batch: int) -> list[float]:
    """The stages' noise scales of a run from a checkpoint, scaled alike so that the run's
    ``left`` samples at the checkpoint's batch are what its stages' ideal ``work`` costs there:
    the level's samples at that batch less the checkpoint's, as the learning curve says.

    The stage model reads the noise scale at ideal progress; the checkpoint's progress is
    measured along the samples the truncated run saw. With a steep trend the two drift apart
    over the part of the level that is left: on a trend of ``B ~ s^2`` a single stage from a
    checkpoint two thirds of the way planned 40% more samples than the curve leaves, and three
    stages 4% fewer. Scaled, a run that keeps the checkpoint's batch plans exactly
    what is left (the program's other batches follow the McCandlish form from there)."""
    inv = sum(1.0 / b for b in at)
    extra = left - work * len(at)  # the samples beyond the ideal work that the batch costs
    if work <= 0 or inv <= 0 or extra <= 0:
        return list(at)
    c = batch * work * inv / extra
    return [min(max(b * c, B_NOISE_FLOOR), B_NOISE_CAP) for b in at]


def _unsupported_precisions(
    spec: Spec, offers: Sequence[Offer], profile: Profile, notes: list[str]
) -> set[tuple[str, str]]:
    """The (local offer, precision) pairs of the spec that the device does not train in (the
    profile measured none of them); one note each."""
    local = {o.id for o in offers if o.local}
    out = {(h, q) for h, q in profile.unsupported if h in local and q in spec.planner.precisions}
    for h, q in sorted(out):
        notes.append(
            f"{h}: precision {q} is not supported by this device (torch cannot train in "
            f"{q} there); not planned for it"
        )
    return out


def _offers_left_out(
    spec: Spec,
    offers: Sequence[Offer],
    options: Sequence[Option],
    time: np.ndarray,
    models: Mapping[tuple[str, str, str, int], StepModel],
) -> list[str]:
    """A note for each allowed offer that no stage of any choice can use, and why."""
    notes = []
    smallest = min(spec.planner.batch_sizes)
    for o in offers:
        cols = [i for i, opt in enumerate(options) if opt.hardware == o.id]
        if cols and np.isfinite(time[:, :, cols]).any():
            continue
        mine = [m for key, m in models.items() if key[0] == o.id]
        if not mine:
            why = "no step model (not measured here, and no measured device to scale it from)"
        elif all((m.memory_at(smallest) or 0) > memory_bytes(o, spec.runtime.max_memory_mb) for m in mine):
            limit = memory_bytes(o, spec.runtime.max_memory_mb) / 2**20
            why = f"no memory fit (batch {smallest} needs more than its {limit:,.6g} MiB)"
        else:
            why = "no batch size both fits its memory and was measured to reach a level"
        notes.append(f"{o.id}: left out, {why}")
    return notes


def _noise_curves(profile: Profile, configs: Sequence[Config], notes: list[str]) -> dict[str, NoiseCurve]:
    """The gradient-noise curve of each config whose measurements show a trend."""
    curves: dict[str, NoiseCurve] = {}
    for cfg in configs:
        points = [(n.progress_samples, n.b_simple) for n in profile.noise_for(cfg.id)]
        curve = fit_noise_curve(points)
        if curve is not None:
            curves[cfg.id] = curve
        elif len(points) >= 3:
            notes.append(
                f"{cfg.id}: the measured gradient noise shows no significant trend along "
                "training; one B_noise for all stages"
            )
    return curves


def _fill(
    spec: Spec,
    choices: Sequence[Choice],
    options: Sequence[Option],
    offer_of: Mapping[str, Offer],
    fits: Mapping[tuple[str, float], ConvergenceFit],
    models: Mapping[tuple[str, str, str, int], StepModel],
    b_noise_stage: Mapping[tuple[int, int], float],
    instances: Mapping[tuple[str, int], int],
    storage: Mapping[tuple[str, str, str, int], float],
    starts: Mapping[int, StartFrom],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seconds, dollars and samples per (choice, stage, option): ``stagecost.stage_cost`` of the
    work left after the checkpoint a choice starts from (``starts``, ``program.reuse``)."""
    K = spec.planner.stages
    M, O = len(choices), len(options)
    time = np.full((M, K, O), np.inf)
    cost = np.full((M, K, O), np.inf)
    samples = np.zeros((M, K, O))
    for m, ch in enumerate(choices):
        fit, start = fits[(ch.config_id, ch.score)], starts.get(m)
        work = stage_work(fit.e_min, K, start)[1]
        for o, opt in enumerate(options):
            key = (opt.hardware, ch.config_id, opt.precision, opt.workers)
            model = models.get(key)
            cap_mb = spec.runtime.max_memory_mb
            if model is None or not option_fits(opt, model, offer_of[opt.hardware], fit.max_batch, cap_mb):
                continue
            for k in range(K):
                if k == 0 and start is not None and not trains(start, opt):
                    continue  # a choice that starts from a checkpoint goes on where it was trained
                c = stage_cost(
                    work=work,
                    b_noise=b_noise_stage[(m, k)],
                    option=opt,
                    step=model,
                    offer=offer_of[opt.hardware],
                    instances=instances[(opt.hardware, opt.workers)],
                    storage_bytes=storage[key],
                    first=k == 0,
                    entry=k == 0,
                    resumed=k == 0 and start is not None,
                    eval_every=spec.runtime.eval_every_samples,
                    ckpt_every=spec.runtime.checkpoint_every_s,
                )
                samples[m, k, o], time[m, k, o], cost[m, k, o] = c.samples, c.time_s, c.cost_usd
    return time, cost, samples


def _checkpoint_bytes(grad_bytes: float, keep: int) -> float:
    # weights + two optimizer slots (Adam), kept ``keep`` times
    return 3.0 * grad_bytes * keep


def _data_bytes(spec: Spec) -> float:
    if spec.workload.name == "mnist1d":
        return spec.workload.samples * (40 * 4 + 8)
    return 0.0
