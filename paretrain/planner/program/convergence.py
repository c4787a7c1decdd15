"""Each configuration's convergence, E(B) per accuracy level, from the profile's runs.

Full runs (every config trained to the top level at several batch sizes) give E_min and B_noise
by ``paretrain.planner.measure.fits.fit_convergence``; a truncated run gives them from its
learning curve and the gradient noise sampled along it (``paretrain.planner.measure.truncated``);
a ``convergence:`` hint of the spec is taken as it is. A config whose run met a non-finite loss
or metric (``ConvergenceRun.diverged``) is marked failed and never planned; when no config is
left for that reason, ``all_diverged`` says so (exit 3) rather than blame the target.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from paretrain.planner.errors import InfeasiblePlan
from paretrain.planner.measure.curves import fit_curve
from paretrain.planner.measure.fits import ConvergenceFit, fit_convergence
from paretrain.planner.measure.measurements import ConvergenceRun
from paretrain.planner.measure.truncated import level_from_curve
from paretrain.planner.measure.uncertainty import crossing_dof, crossing_spread

if TYPE_CHECKING:
    from paretrain.planner.inputs.space import Config
    from paretrain.planner.inputs.spec import Spec
    from paretrain.planner.measure.profile import Profile

__all__ = ["all_diverged", "fit_all_convergence"]


def fit_all_convergence(
    spec: Spec, profile: Profile, configs: Sequence[Config]
) -> tuple[dict[tuple[str, float], ConvergenceFit], list[str]]:
    """Fit E(B) per (config, level) from the profile's runs (or take the spec's hints). Keys
    are (config, *score* of the level): higher is better whatever the metric's direction
    (``paretrain.planner.inputs.metric``), which is what the program's accuracy axis maximizes.
    A config whose run diverged while profiling is marked failed: no fit, a note; none left
    for that reason is ``all_diverged``'s ``InfeasiblePlan``."""
    metric = spec.target.metric_obj
    fits: dict[tuple[str, float], ConvergenceFit] = {}
    notes = [
        f"{sp.config_id} on {sp.hardware} {sp.precision}: a step at batch {sp.oom_batch} ran out of "
        "memory while profiling; batch sizes from it up are not planned there"
        for sp in profile.steps
        if sp.oom_batch
    ]
    notes += [f"profiling: {n}" for n in dict(profile.notes).get("out_of_memory", ())]
    hints = spec.convergence or {}
    diverged = profile.diverged()
    for cfg in configs:
        if cfg.id in hints:
            h = hints[cfg.id]
            fits[(cfg.id, metric.score(h.level))] = ConvergenceFit(h.e_min, h.b_noise, (), 1 << 30)
            continue
        if cfg.id in diverged:
            notes.append(
                f"{cfg.id}: diverged while profiling ({diverged[cfg.id]}); marked failed, not planned"
            )
            continue
        runs = profile.runs_for(cfg.id)
        if any(r.truncated for r in runs):
            _truncated_fits(spec, profile, cfg.id, [r for r in runs if r.truncated], fits, notes)
            continue
        for level in spec.target.levels:
            pts = [
                (r.batch_size, n)
                for r in runs
                for a, n in r.reached
                if abs(a - level) < 1e-9 and n is not None
            ]
            if len(pts) < 2:
                notes.append(
                    f"{cfg.id}: {metric.name} {level:g} reached at {len(pts)} of {len(runs)} "
                    "measured batch sizes; not planned"
                )
                continue
            fit = fit_convergence(pts)
            spread, dof = _crossing(runs, level, metric)
            fits[(cfg.id, metric.score(level))] = replace(fit, crossing=spread, crossing_dof=dof)
    if not fits and (err := all_diverged(spec, profile, configs)) is not None:
        raise err
    return fits, notes


def _truncated_fits(
    spec: Spec,
    profile: Profile,
    config_id: str,
    runs: Sequence[ConvergenceRun],
    fits: dict[tuple[str, float], ConvergenceFit],
    notes: list[str],
) -> None:
    """Each level's E(B) from one truncated run's learning curve and the gradient noise sampled
    along it (``paretrain.planner.measure.truncated``); a level beyond the run is extrapolated,
    and the notes say so."""
    metric = spec.target.metric_obj
    run = max(runs, key=lambda r: len(r.curve))
    curve = fit_curve(run.curve, metric.direction)
    if curve is None:
        notes.append(
            f"{config_id}: its truncated run has too few evaluations for a learning curve; not planned"
        )
        return
    widest = max(spec.planner.batch_sizes) * spec.planner.max_workers
    for level in spec.target.levels:
        got = level_from_curve(
            curve,
            level,
            run.batch_size,
            profile.noise_for(config_id),
            widest,
            spec.runtime.eval_every_samples,
            spec.target.max_samples,
        )
        if got is None:
            touched = curve.reached(level)
            notes.append(
                f"{config_id}: {metric.name} {level:g} was measured at {touched[1]:,.0f} samples and "
                f"fell back; its learning curve does not reach it again after the run's "
                f"{run.curve[-1][0]} samples, where a run from its checkpoint starts; not planned"
                if touched is not None
                else f"{config_id}: {metric.name} {level:g} is not reached by its learning curve "
                f"within target.max_samples ({spec.target.max_samples:,}; best measured "
                f"{run.best_level:g} after {run.curve[-1][0]} samples); not planned"
            )
            continue
        fits[(config_id, metric.score(level))] = got.fit
        if got.extrapolated:
            lo, mid, hi = got.samples
            # a P90 past target.max_samples: more than a tenth of the curves stop the run there
            upper = f"{hi:,.0f}" if math.isfinite(hi) else "beyond target.max_samples"
            notes.append(
                f"{config_id}: {metric.name} {level:g} extrapolated from a truncated run of "
                f"{run.curve[-1][0]} samples: {mid:,.0f} samples at batch {run.batch_size} "
                f"(P10-P90 {lo:,.0f} to {upper})"
            )


def _crossing(runs: Sequence[Any], level: float, metric: Any) -> tuple[float, int]:
    """Root mean square of the crossing spreads of the runs that reached ``level``, and the
    degrees of freedom of their evaluation noise together."""
    hit = [(r, n) for r in runs for a, n in r.reached if abs(a - level) < 1e-9 and n]
    spreads = [
        crossing_spread([(s, metric.score(v)) for s, v in r.curve], metric.score(level), n, r.eval_every)
        for r, n in hit
    ]
    if not spreads:
        return 0.0, 0
    return math.sqrt(sum(x * x for x in spreads) / len(spreads)), sum(crossing_dof(r.curve) for r, _ in hit)


def all_diverged(spec: Spec, profile: Profile, configs: Sequence[Config]) -> InfeasiblePlan | None:
    """The error of a plan none of whose measured configs is left because each diverged while
    profiling; None when some config was not marked failed."""
    hints = spec.convergence or {}
    diverged = profile.diverged()
    if not diverged or any(c.id in hints or c.id not in diverged for c in configs):
        return None
    why = "; ".join(f"{cid}: {reason}" for cid, reason in diverged.items())
    return InfeasiblePlan(
        f"no configuration is left to plan: every one diverged while profiling ({why}); each is "
        "marked failed and not scored. To fix: lower their lr (or check the workload's loss and "
        "evaluate for values that overflow) and plan again with --reprofile",
        binding="divergence",
    )
