"""Optuna constrained multi-objective architecture and hyperparameter search: the trial loop.

The space is ``paretrain.planner.search.narrowed``; the study, its storage and its front are
``paretrain.planner.search.study`` (both re-exported here).

Objectives: maximize the target metric's score, minimize the training cost to that score (the
money the trial spent on the planning device until its best evaluation), minimize the
inference latency (median per-sample latency measured on the planning device). Constraints,
reported with ``Trial.set_constraint`` (Optuna 5's replacement for ``constraints_func``):
parameter count, peak training memory and latency ceilings from the spec.

Multi-objective studies cannot use Optuna's pruners, so a trial is cut short by paretrain's own
rule (``paretrain.planner.search.rungs``: successive halving on rungs a factor 3 apart, promotion
by the learning curve's extrapolated score at full fidelity; or the older median cut); a trial
cut short is scored by its learning curve extrapolated to the trial's sample budget, marked
``extrapolated``. Trials run through the Lab (``lab.run_trial``), which charges the ledger under
``search``.

Money: every trial trains on what it holds in the search envelope (``paretrain.planner.search.envelope``):
it reserves its worst case before it trains, asks for more in chunks, settles when it ends;
a worker stops when the envelope cannot fund its next trial. Storage is any Optuna storage:
sqlite (default, resumable, one machine), a journal file, or an RDB URL (PostgreSQL) shared by
workers on many machines; trials of a worker that died are failed by Optuna's heartbeat (RDB)
or when its envelope lease lapses, and the study goes on.

A trial whose training goes wrong (it diverges, a workload member raises, a signal comes) is
failed and never scored: ``paretrain.planner.search.faults`` gives the rule for each case.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import optuna
from optuna.storages._heartbeat import get_heartbeat_thread

from paretrain.planner.inputs.space import Config, WorkloadInfo
from paretrain.planner.search.envelope import (
    EnvelopeState,
    LocalEnvelope,
    SearchEnvelope,
    first_hold,
    more_hold,
)
from paretrain.planner.search.faults import TrialAborted, TrialFault, fail_trial, fail_unscored
from paretrain.planner.search.narrowed import SearchSpace, search_space, suggest_config
from paretrain.planner.search.rungs import asha_rule, extrapolated_score, median_rule
from paretrain.planner.search.study import (
    DIRECTIONS,
    complete_trials,
    front_configs,
    make_sampler,
    open_study,
)

if TYPE_CHECKING:
    from paretrain.planner.inputs.spec import Spec

__all__ = [
    "DIRECTIONS",
    "SearchResult",
    "SearchSpace",
    "TrialLab",
    "TrialRun",
    "complete_trials",
    "front_configs",
    "make_sampler",
    "open_study",
    "run_search",
    "search_space",
    "suggest_config",
]

WAIT_S = 0.5  # a worker the envelope cannot fund looks again this often while others hold money
_COMPLETE, _RUNNING = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.RUNNING


@dataclass(frozen=True)
class TrialRun:
    """What one trial measured."""

    curve: tuple[tuple[int, float], ...]  # (samples, the target metric's score) at each evaluation
    cost_to_best_usd: float  # money spent until the best evaluation
    cost_per_sample_usd: float
    spend_usd: float  # everything the trial was charged
    latency_ms: float
    params: int
    peak_mem_bytes: int
    stopped: bool = False  # should_stop said so
    budget_hit: bool = False  # the envelope ran out mid-trial
    fault: TrialFault | None = None  # why it is not scored (diverged, or its config did not build)


class TrialLab(Protocol):
    def run_trial(
        self,
        config: Config,
        max_samples: int,
        eval_every: int,
        cap_usd: float,
        should_stop: Callable[[int, float, int], bool],
        more: Callable[[float], float] | None = None,
    ) -> TrialRun:
        """Train ``config`` up to ``max_samples``, evaluating every ``eval_every`` samples;
        ``should_stop(samples, accuracy, eval_index)`` may cut it short. The trial spends at
        most ``cap_usd`` plus what ``more(need_usd)`` grants (it returns the amount added; 0.0
        when the envelope has nothing more): then it stops with ``budget_hit``."""
        ...


@dataclass
class SearchResult:
    study_name: str
    trials: int  # complete trials in the study
    new_trials: int  # run by this call
    spent_usd: float  # by this call
    stopped_for_budget: bool
    front: list[tuple[Config, dict[str, Any]]] = field(default_factory=list)


def run_search(
    spec: Spec,
    lab: TrialLab,
    study: optuna.Study,
    info: WorkloadInfo,
    *,
    trials: int | None = None,
    trial_samples: int | None = None,
    on_trial: Callable[[optuna.trial.FrozenTrial, Config], None] | None = None,
    envelope: SearchEnvelope | None = None,
    check: Callable[[], None] | None = None,
) -> SearchResult:
    """Run trials until the study holds ``trials`` complete or running ones, or the envelope
    cannot fund the next (while other workers' trials hold money, it waits for what they give
    back rather than stop). Each trial trains only on money it holds in ``envelope`` (default:
    an in-process one, starting from what the study's finished trials spent): it reserves
    its worst case before it starts, asks for more in chunks while it trains and settles
    when it ends, so any number of workers sharing one envelope stay within it. ``check`` is
    asked before every trial (a worker's signal flag: it raises to stop the search)."""
    space = search_space(info, spec.search.space, spec.path)
    target = trials if trials is not None else spec.search.trials
    budget = spec.budget.search_usd
    envelope = envelope if envelope is not None else LocalEnvelope(budget, _study_spend(study))
    samples = trial_samples or spec.search.trial_samples or spec.target.max_samples
    new, spent, stopped_for_budget = 0, 0.0, False
    unbuildable = 0  # trials in a row whose config did not build
    while True:
        if check is not None:
            check()
        step, dearest = _look(study, envelope, target)
        if step == "wait":  # trials of other workers hold money: what they leave comes back
            time.sleep(WAIT_S)
            continue
        if step != "run":
            stopped_for_budget = step == "short"  # the next trial could not finish on what is left
            break
        trial = _ask(study)
        config = suggest_config(trial, space)
        held = envelope.reserve(trial.number, first_hold(budget, dearest))
        if held <= 0:  # another worker took what was free since the look above: look again
            trial.set_user_attr("unfunded", True)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        run = _train(spec, lab, study, trial, config, held, samples, envelope)
        spent += run.spend_usd
        new += 1
        unbuildable = _tell(spec, study, trial, config, run, samples, unbuildable, on_trial)
        if run.budget_hit:  # the envelope is spent (an unfunded trial's too)
            stopped_for_budget = True
            break
    return _result(spec, study, new, spent, stopped_for_budget)


def _tell(
    spec: Spec,
    study: optuna.Study,
    trial: optuna.Trial,
    config: Config,
    run: TrialRun,
    samples: int,
    unbuildable: int,
    on_trial: Callable[[optuna.trial.FrozenTrial, Config], None] | None,
) -> int:
    """Record a trial that ran: failed unscored (``run.fault``) or scored; returns the trials
    in a row whose config did not build, this one included (``fail_unscored``)."""
    if run.fault is not None:
        attrs = {"config": config.to_dict(), "spend_usd": run.spend_usd}
        return fail_unscored(study, trial, run.fault, attrs, unbuildable)
    frozen = _record(spec, study, trial, config, run, samples)
    if on_trial is not None and frozen is not None:
        on_trial(frozen, config)
    return 0


def _result(
    spec: Spec, study: optuna.Study, new: int, spent: float, stopped_for_budget: bool
) -> SearchResult:
    complete = study.get_trials(deepcopy=False, states=(_COMPLETE,))
    return SearchResult(
        study.study_name,
        len(complete),
        new,
        spent,
        stopped_for_budget,
        front_configs(study, spec.target.metric_obj),
    )


def _look(study: optuna.Study, envelope: SearchEnvelope, target: int) -> tuple[str, float | None]:
    """What the loop does next: ``done`` (the study holds its target), ``wait`` (what is free
    is short, but other workers' trials hold money), ``short`` (it is short, and nothing will
    come back) or ``run``; with what the dearest full trial spent."""
    state = envelope.state()
    _fail_stale(study, state.lost)
    if len(study.get_trials(deepcopy=False, states=(_COMPLETE, _RUNNING))) >= target:
        return "done", None
    dearest = _dearest_full_trial(study)
    if _short(state, dearest):
        return ("wait" if state.held_usd > 0 else "short"), dearest
    return "run", dearest


def _short(state: EnvelopeState, dearest: float | None) -> bool:
    """Whether what is free now could not fund a trial as dear as the dearest full one."""
    return state.free_usd <= 0 or (dearest is not None and state.free_usd < dearest)


def _ask(study: optuna.Study) -> optuna.Trial:
    """A new trial; with a heartbeat storage its beats are ours (ask/tell), so no warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Heartbeat of storage")
        return study.ask()


def _train(
    spec: Spec,
    lab: TrialLab,
    study: optuna.Study,
    trial: optuna.Trial,
    config: Config,
    held: float,
    samples: int,
    envelope: SearchEnvelope,
) -> TrialRun:
    """One trial on the money it holds, asking the envelope for more as it goes; settled with
    what it spent (all it held when it raised: what it spent is then unknown)."""
    budget = spec.budget.search_usd

    def more(need_usd: float) -> float:
        return envelope.reserve(trial.number, more_hold(budget, need_usd))

    try:
        with get_heartbeat_thread(trial._trial_id, study._storage):  # Optuna's own liveness signal
            run = lab.run_trial(
                config,
                samples,
                spec.runtime.eval_every_samples,
                held,
                _rule(spec, study, trial, samples),
                more=more,
            )
    except TrialAborted as aborted:  # a workload's fault or a signal: the lab knows what it spent
        envelope.settle(trial.number, aborted.spend_usd)
        attrs = {aborted.attr: aborted.reason, "config": config.to_dict(), "spend_usd": aborted.spend_usd}
        fail_trial(study, trial, attrs)
        raise aborted.cause from None
    except BaseException:
        envelope.settle(trial.number, None)
        study.tell(trial, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
        raise
    envelope.settle(trial.number, run.spend_usd)
    return run


def _rule(
    spec: Spec, study: optuna.Study, trial: optuna.Trial, samples: int
) -> Callable[[int, float, int], bool]:
    """The trial's stop rule (``search.fidelity``)."""
    if spec.search.fidelity == "median":
        return median_rule(study)
    return asha_rule(study, trial, samples, spec.runtime.eval_every_samples)


def _record(
    spec: Spec, study: optuna.Study, trial: optuna.Trial, config: Config, run: TrialRun, samples: int
) -> optuna.trial.FrozenTrial | None:
    """Tell the study what the trial measured; None when it was already failed as stale (its
    worker stalled past the lease)."""
    score, cost, extrapolated = _score(run, samples)
    try:
        trial.set_user_attr("config", config.to_dict())
        trial.set_user_attr("curve", [list(p) for p in run.curve])
        trial.set_user_attr("extrapolated", extrapolated)
        trial.set_user_attr("cut_short", run.stopped or run.budget_hit)
        trial.set_user_attr("spend_usd", run.spend_usd)
        trial.set_user_attr("params", run.params)
        trial.set_user_attr("peak_mem_bytes", run.peak_mem_bytes)
        for name, value in _constraints(spec, run).items():
            trial.set_constraint(name, value)
    except optuna.exceptions.UpdateFinishedTrialError:
        return None
    frozen = study.tell(trial, [score, cost, run.latency_ms], skip_if_finished=True)
    return frozen if frozen.state == _COMPLETE else None


def _fail_stale(study: optuna.Study, lost: tuple[int, ...]) -> None:
    """Fail the running trials whose worker is gone: Optuna's heartbeat (RDB storages) and the
    envelope's lapsed leases (every storage, the journal too)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    if lost:
        running = {t.number for t in study.get_trials(deepcopy=False, states=(_RUNNING,))}
        for number in sorted(set(lost) & running):
            study.tell(number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)


def _dearest_full_trial(study: optuna.Study) -> float | None:
    """The most a finished trial spent running to its sample budget (None before any did)."""
    full = [
        float(t.user_attrs.get("spend_usd", 0.0))
        for t in study.get_trials(deepcopy=False, states=(_COMPLETE,))
        if not t.user_attrs.get("cut_short")
    ]
    return max(full) if full else None


def _study_spend(study: optuna.Study) -> float:
    """What the study's finished trials spent (the in-process envelope's starting point)."""
    return math.fsum(float(t.user_attrs.get("spend_usd", 0.0)) for t in study.get_trials(deepcopy=False))


def _score(run: TrialRun, samples: int) -> tuple[float, float, bool]:
    """The best score of the target metric and the cost to it; a trial cut short is extrapolated
    to ``samples``."""
    best = max((a for _, a in run.curve), default=0.0)
    if not (run.stopped or run.budget_hit) or not run.curve:
        return best, run.cost_to_best_usd, False
    got = extrapolated_score(run.curve, samples)
    if got is None:
        return best, run.cost_to_best_usd, False
    return got[0], run.cost_per_sample_usd * samples, True


def _constraints(spec: Spec, run: TrialRun) -> dict[str, float]:
    s = spec.search
    out = {}
    if s.max_params is not None:
        out["params"] = float(run.params - s.max_params)
    if s.max_memory_mb is not None:
        out["memory_mb"] = run.peak_mem_bytes / 2**20 - s.max_memory_mb
    if s.max_latency_ms is not None:
        out["latency_ms"] = run.latency_ms - s.max_latency_ms
    return out
