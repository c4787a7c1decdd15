r"""Successive halving on learning curves: when a search trial stops short (``search.fidelity: asha``).

A trial's sample budget ``R`` (``search.trial_samples``) is cut into *rungs* a factor ``ETA`` (3)
apart, from the first point a learning curve can be fitted, ``r = MIN_EVALS`` evaluations in:
``r, 3r, 9r, ...`` below ``R``, as ASHA's rungs ``r * ETA^k`` (Li et al. 2020). Anchored at ``r``
rather than at ``R`` (``R / 3, R / 9, ...``), the first cut comes as early as a curve allows: with
``R`` = 40k samples and an evaluation every 2k, rungs at 8k and 24k, where ``R / 3^k`` gives one
rung at 13.3k and a cut trial costs a third of a full one. When a
trial reaches a rung it fits its learning curve so far (``paretrain.planner.measure.curves``) and
records, in the study's storage, its **extrapolated score at full fidelity**: P50 and P90 of the
target metric's score after ``R`` samples (``rung_<samples>`` user attributes; this is
paretrain's own record, since Optuna's pruners do not work on multi-objective studies).

The one stop rule, as in ASHA (Li et al. 2020), asynchronous: a trial goes on past a rung when its
*optimistic* extrapolation (P90) is at least the ``1 - 1/ETA`` quantile of the median
extrapolations (P50) of the trials that reached that rung before it, its own included; with
fewer than ``ETA`` of them it goes on. So promotion goes by where each curve is headed at full
fidelity, with its spread, not by where it stands at the rung: a slow starter whose curve still
climbs is kept, and an early leader that flattens is stopped. A trial stopped at a rung is scored
by its extrapolated P50 (marked ``extrapolated``); a trial that ran to ``R`` by what it measured.

``search.fidelity: median`` keeps the older rule (below the median of finished trials at the
same evaluation, after four evaluations) to compare against.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence

import numpy as np
import optuna

from paretrain.planner.measure.curves import fit_curve

__all__ = ["ETA", "MIN_EVALS", "asha_rule", "extrapolated_score", "median_rule", "rungs"]

ETA = 3
MIN_EVALS = 4
MIN_EVALS_BEFORE_CUT = 4  # the median rule's: the fewest points a learning curve fits

StopRule = Callable[[int, float, int], bool]


def rungs(budget: int, eval_every: int) -> list[int]:
    """The rungs below ``budget``, lowest first: ``MIN_EVALS * eval_every * ETA^k`` (none when
    the lowest is not below ``budget``)."""
    out = []
    r = MIN_EVALS * eval_every
    while 0 < r < budget:
        out.append(r)
        r *= ETA
    return out


def extrapolated_score(curve: Sequence[tuple[int, float]], budget: int) -> tuple[float, float] | None:
    """P50 and P90 of the score after ``budget`` samples, from the curve so far (scores: higher
    is better, whatever the metric's direction); None when too few points to fit."""
    fit = fit_curve(curve, "maximize")
    if fit is None:
        return None
    _lo, mid, hi = fit.predict(budget)
    best = max(v for _, v in curve)
    return max(mid, best), max(hi, best)


def _rung_key(samples: int) -> str:
    return f"rung_{samples}"


def _others_at(study: optuna.Study, key: str, number: int) -> list[float]:
    states = (
        optuna.trial.TrialState.COMPLETE,
        optuna.trial.TrialState.RUNNING,
        optuna.trial.TrialState.PRUNED,
    )
    out = []
    for t in study.get_trials(deepcopy=False, states=states):
        rec = t.user_attrs.get(key)
        if t.number != number and isinstance(rec, dict) and math.isfinite(rec.get("p50", math.nan)):
            out.append(float(rec["p50"]))
    return out


def asha_rule(study: optuna.Study, trial: optuna.Trial, budget: int, eval_every: int) -> StopRule:
    """The stop rule of the module docstring for ``trial`` (``should_stop(samples, score, i)``,
    asked at each evaluation); its rung records go to the trial's user attributes."""
    points: list[tuple[int, float]] = []
    pending = rungs(budget, eval_every)

    def should_stop(samples: int, score: float, _i: int) -> bool:
        points.append((samples, score))
        if not pending or samples < pending[0]:
            return False
        rung = pending.pop(0)
        while pending and samples >= pending[0]:  # a long evaluation interval passed two rungs
            rung = pending.pop(0)
        got = extrapolated_score(points, budget)
        if got is None:
            return False
        p50, p90 = got
        trial.set_user_attr(_rung_key(rung), {"samples": samples, "p50": p50, "p90": p90})
        seen = [*_others_at(study, _rung_key(rung), trial.number), p50]
        if len(seen) < ETA:
            return False
        keep_at = float(np.quantile(seen, 1.0 - 1.0 / ETA))
        return p90 < keep_at

    return should_stop


def median_rule(study: optuna.Study) -> StopRule:
    """The older cut: below the median of finished trials at the same evaluation (four or more),
    after ``MIN_EVALS_BEFORE_CUT`` evaluations."""
    done = [
        t.user_attrs.get("curve", [])
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    ]

    def should_stop(samples: int, score: float, i: int) -> bool:
        if i + 1 < MIN_EVALS_BEFORE_CUT:
            return False
        seen = [c[i][1] for c in done if len(c) > i]
        return len(seen) >= 4 and score < statistics.median(seen)

    return should_stop
