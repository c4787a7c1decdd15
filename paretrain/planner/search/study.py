"""The Optuna study a search writes to: opened on a storage, read back as its Pareto front.

Objectives, in ``DIRECTIONS`` order: the target metric's score (maximized), the training cost
to it and the inference latency (both minimized). Storage is any Optuna storage: sqlite
(default, resumable, one machine), a journal file, or an RDB URL (PostgreSQL) shared by workers
on many machines.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import optuna

from paretrain.planner.inputs.metric import ACCURACY, Metric
from paretrain.planner.inputs.space import Config
from paretrain.planner.program.pareto import non_dominated

__all__ = ["DIRECTIONS", "complete_trials", "front_configs", "make_sampler", "open_study"]

#: the target metric's score, cost_usd, latency_ms
DIRECTIONS: tuple[Literal["maximize", "minimize"], ...] = ("maximize", "minimize", "minimize")
_COMPLETE = optuna.trial.TrialState.COMPLETE


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    if name == "tpe":
        with warnings.catch_warnings():  # multivariate/group are marked experimental; they are needed here
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, n_startup_trials=6)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=6, warn_independent_sampling=False)
    return optuna.samplers.NSGAIISampler(seed=seed, population_size=8)


def open_study(
    storage: str | optuna.storages.BaseStorage,
    name: str,
    sampler: str,
    seed: int,
    *,
    heartbeat_s: int | None = None,
) -> optuna.Study:
    """Create or continue the study ``name`` in ``storage``: ``journal:PATH`` for a journal
    file, else an RDB URL (``sqlite:///FILE``, ``postgresql://...``). With ``heartbeat_s`` an
    RDB storage records each running trial's heartbeat every ``heartbeat_s`` seconds and
    fails it after ``4 * heartbeat_s`` without one (a worker that died mid-trial)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if isinstance(storage, str) and storage.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        storage = optuna.storages.JournalStorage(JournalFileBackend(storage[len("journal:") :]))
    elif isinstance(storage, str):
        # several processes write one sqlite file: wait for its lock rather than fail at once
        engine = (
            {"connect_args": {"timeout": 60}} if storage.startswith("sqlite") else {"pool_pre_ping": True}
        )
        beat = heartbeat_s or None
        # heartbeat_interval is marked experimental; it is what fails dead trials
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = optuna.storages.RDBStorage(
                storage,
                engine_kwargs=engine,
                heartbeat_interval=beat,
                grace_period=4 * beat if beat else None,
            )
    return optuna.create_study(
        study_name=name,
        storage=storage,
        directions=list(DIRECTIONS),
        sampler=make_sampler(sampler, seed),
        load_if_exists=True,
    )


def complete_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The study's complete trials (for a caller that does not import optuna)."""
    return study.get_trials(deepcopy=False, states=(_COMPLETE,))


def front_configs(study: optuna.Study, metric: Metric = ACCURACY) -> list[tuple[Config, dict[str, Any]]]:
    """The feasible non-dominated trials' configs with their objective values, best first. The
    first objective is the target metric's score (``paretrain.planner.inputs.metric``: higher is better); each
    entry also gives ``value``, the metric in its own units."""
    done = [
        t
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if "config" in t.user_attrs and all(v <= 0 for v in _trial_constraints(t))
    ]
    # the score maximized; (cost, latency) minimized: map to the (cost, time, score) helper
    pts = [(t.values[1], t.values[2], t.values[0]) for t in done]
    keep = non_dominated(pts)
    out = []
    for i in sorted(keep, key=lambda i: (-done[i].values[0], done[i].values[1], done[i].number)):
        t = done[i]
        out.append(
            (
                Config.from_dict(t.user_attrs["config"]),
                {
                    "trial": t.number,
                    "score": t.values[0],
                    "metric": metric.name,
                    "value": metric.level(t.values[0]),
                    "cost_usd": t.values[1],
                    "latency_ms": t.values[2],
                    "extrapolated": bool(t.user_attrs.get("extrapolated")),
                    "params": t.user_attrs.get("params"),
                },
            )
        )
    return out


def _trial_constraints(t: optuna.trial.FrozenTrial) -> list[float]:
    cons = getattr(t, "constraints", None)
    if isinstance(cons, dict):
        return list(cons.values())
    return list(cons or [])
