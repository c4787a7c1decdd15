"""The planning problem as arrays: per (choice, stage, option) time, cost and samples.

A *choice* ``m`` is one model configuration trained to one accuracy level; an *option*
``o`` is (hardware, precision, per-worker batch size, workers). ``build_problem`` turns the
spec, the offers and the fitted models into a ``Problem`` that ``planner.milp`` solves and
that a brute-force enumerator can check (``Problem.evaluate``).

Stage k of choice m with option o trains ``S = E_min(m) / K * (1 + n b / B_noise(m, k))``
samples in ``T = S / b * t(b) + S / eval_every * t_eval`` seconds and costs
``T * n * price(h)``. Options that do not fit the device's memory, were never measured nor
modeled, or use a batch larger than the largest one seen to reach the level, are absent
(``inf``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from planner.models import ConvergenceFit, StepTimeModel, fit_convergence, fit_step_time

if TYPE_CHECKING:
    from planner.catalog import Offer
    from planner.profile import Profile
    from planner.space import Config
    from planner.spec import Spec

__all__ = ["Choice", "Option", "Problem", "Schedule", "build_problem", "ProblemContext",
           "fit_all_convergence"]


@dataclass(frozen=True, slots=True)
class Choice:
    """Config ``config_id`` trained until validation accuracy ``accuracy``."""

    config_id: str
    accuracy: float


@dataclass(frozen=True, slots=True)
class Option:
    hardware: str
    precision: str
    batch_size: int
    workers: int = 1


@dataclass(frozen=True, slots=True)
class Schedule:
    """One feasible point: a choice and one option per stage, with its exact totals."""

    choice: int
    options: tuple[int, ...]
    cost_usd: float
    wall_s: float
    accuracy: float


@dataclass(frozen=True, eq=False)
class Problem:
    """Arrays of shape (M choices, K stages, O options); ``inf`` marks an absent option."""

    choices: tuple[Choice, ...]
    options: tuple[Option, ...]
    hardware: tuple[str, ...]
    time_s: np.ndarray
    cost_usd: np.ndarray
    samples: np.ndarray
    option_hw: np.ndarray
    switch_s: np.ndarray  # (H,) time to move onto hardware h between stages
    switch_usd: np.ndarray  # (H,) money to move onto hardware h between stages
    budget_usd: float = math.inf
    deadline_s: float = math.inf
    accuracy_floor: float = 0.0

    def __post_init__(self) -> None:
        M, K, O = len(self.choices), self.time_s.shape[1], len(self.options)
        if self.time_s.shape != (M, K, O) or self.cost_usd.shape != (M, K, O):
            raise ValueError(f"time/cost arrays must have shape {(M, K, O)}, got "
                             f"{self.time_s.shape} and {self.cost_usd.shape}")
        if self.option_hw.shape != (O,):
            raise ValueError(f"option_hw must have shape {(O,)}, got {self.option_hw.shape}")

    @property
    def stages(self) -> int:
        return int(self.time_s.shape[1])

    @property
    def accuracy(self) -> np.ndarray:
        return np.array([c.accuracy for c in self.choices], dtype=float)

    def evaluate(self, m: int, opts: Sequence[int]) -> Schedule:
        """Exact totals of choice ``m`` run with ``opts[k]`` at stage k (``inf`` if absent)."""
        cost = float(sum(self.cost_usd[m, k, o] for k, o in enumerate(opts)))
        time = float(sum(self.time_s[m, k, o] for k, o in enumerate(opts)))
        for k in range(1, len(opts)):
            h, prev = self.option_hw[opts[k]], self.option_hw[opts[k - 1]]
            if h != prev:
                cost += float(self.switch_usd[h])
                time += float(self.switch_s[h])
        return Schedule(m, tuple(int(o) for o in opts), cost, time, self.choices[m].accuracy)

    def feasible(self, s: Schedule, *, budget: float | None = None, deadline: float | None = None) -> bool:
        b = self.budget_usd if budget is None else budget
        d = self.deadline_s if deadline is None else deadline
        return (math.isfinite(s.cost_usd) and s.cost_usd <= b * (1 + 1e-9)
                and s.wall_s <= d * (1 + 1e-9) and s.accuracy >= self.accuracy_floor - 1e-12)


@dataclass(frozen=True)
class ProblemContext:
    """What the plan file reports beside the schedules: fitted models and per-option flags."""

    step_models: Mapping[tuple[str, str, str], StepTimeModel] = field(default_factory=dict)
    convergence: Mapping[tuple[str, float], ConvergenceFit] = field(default_factory=dict)
    modeled: Mapping[tuple[str, str, str], bool] = field(default_factory=dict)
    eval_s: Mapping[tuple[str, str, str], float] = field(default_factory=dict)
    memory: Mapping[tuple[str, str, str, int], int] = field(default_factory=dict)
    b_noise_stage: Mapping[tuple[int, int], float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


def fit_all_convergence(spec: "Spec", profile: "Profile",
                        configs: Sequence["Config"]) -> tuple[dict[tuple[str, float], ConvergenceFit], list[str]]:
    """Fit E(B) per (config, level) from the profile's runs (or the spec's hints)."""
    fits: dict[tuple[str, float], ConvergenceFit] = {}
    notes: list[str] = []
    hints = spec.convergence or {}
    for cfg in configs:
        if cfg.id in hints:
            h = hints[cfg.id]
            fits[(cfg.id, h.accuracy)] = ConvergenceFit(h.e_min, h.b_noise, (), 1 << 30)
            continue
        runs = profile.runs_for(cfg.id)
        for level in spec.target.levels:
            pts = [(r.batch_size, n) for r in runs for a, n in r.reached
                   if abs(a - level) < 1e-9 and n is not None]
            if len(pts) < 2:
                notes.append(f"{cfg.id}: accuracy {level:g} reached at {len(pts)} of {len(runs)} "
                             "measured batch sizes; not planned")
                continue
            fits[(cfg.id, level)] = fit_convergence(pts)
    return fits, notes


def build_problem(spec: "Spec", offers: Sequence["Offer"], profile: "Profile",
                  configs: Sequence["Config"], *, budget_usd: float | None = None,
                  deadline_s: float | None = None) -> tuple[Problem, ProblemContext]:
    """Turn the spec, the offers and the profile into a ``Problem`` (see the module docstring)."""
    K = spec.planner.stages
    fits, notes = fit_all_convergence(spec, profile, configs)
    choices = tuple(Choice(cid, acc) for (cid, acc) in sorted(fits, key=lambda k: (k[0], k[1])))
    options = tuple(Option(o.id, q, b, 1) for o in offers for q in spec.planner.precisions
                    for b in spec.planner.batch_sizes)
    hardware = tuple(o.id for o in offers)
    offer_of = {o.id: o for o in offers}
    hw_index = {h: i for i, h in enumerate(hardware)}
    M, O = len(choices), len(options)
    time = np.full((M, K, O), np.inf)
    cost = np.full((M, K, O), np.inf)
    samples = np.zeros((M, K, O))
    step_models: dict[tuple[str, str, str], StepTimeModel] = {}
    eval_s: dict[tuple[str, str, str], float] = {}
    memory: dict[tuple[str, str, str, int], int] = {}
    modeled: dict[tuple[str, str, str], bool] = {}
    cfg_ids = {c.id for c in configs}
    for sp in profile.steps:
        if sp.config_id not in cfg_ids or sp.hardware not in offer_of:
            continue
        key = (sp.hardware, sp.config_id, sp.precision)
        pts = [(s.batch_size, s.step_s) for s in sp.samples if s.workers == 1]
        if not pts:
            continue
        step_models[key] = fit_step_time(pts)
        eval_s[key] = sp.eval_s
        modeled[key] = sp.source == "modeled"
        for s in sp.samples:
            memory[(*key, s.batch_size)] = s.peak_mem_bytes
    eval_every = spec.runtime.eval_every_samples
    b_noise_stage: dict[tuple[int, int], float] = {}
    for m, ch in enumerate(choices):
        fit = fits[(ch.config_id, ch.accuracy)]
        for k in range(K):
            b_noise_stage[(m, k)] = fit.b_noise
        for o, opt in enumerate(options):
            key = (opt.hardware, ch.config_id, opt.precision)
            model = step_models.get(key)
            if model is None or opt.batch_size > fit.max_batch:
                continue
            mem = _memory_at(memory, key, opt.batch_size)
            if mem is not None and mem > offer_of[opt.hardware].memory_gib * 2**30:
                continue
            price = offer_of[opt.hardware].price_usd_per_s * opt.workers
            step = model.predict(opt.batch_size)
            for k in range(K):
                s = fit.e_min / K * (1.0 + opt.batch_size * opt.workers / b_noise_stage[(m, k)])
                t = s / (opt.batch_size * opt.workers) * step + s / eval_every * eval_s[key]
                samples[m, k, o] = s
                time[m, k, o] = t
                cost[m, k, o] = t * price
    switch_s = np.array([0.0 if offer_of[h].local else offer_of[h].switch_s for h in hardware])
    # Moving between local thread counts costs nothing; onto a cloud offer, its switch time
    # at its price plus the egress of the data and the checkpoint.
    switch_usd = np.array([switch_s[i] * offer_of[h].price_usd_per_s for i, h in enumerate(hardware)])
    problem = Problem(
        choices=choices, options=options, hardware=hardware, time_s=time, cost_usd=cost,
        samples=samples, option_hw=np.array([hw_index[o.hardware] for o in options], dtype=int),
        switch_s=switch_s, switch_usd=switch_usd,
        budget_usd=spec.budget.train_usd if budget_usd is None else budget_usd,
        deadline_s=spec.deadline_s if deadline_s is None else deadline_s,
        accuracy_floor=spec.target.goal,
    )
    ctx = ProblemContext(step_models=step_models, convergence=fits, modeled=modeled, eval_s=eval_s,
                         memory=memory, b_noise_stage=b_noise_stage, notes=tuple(notes))
    return problem, ctx


def _memory_at(memory: Mapping[tuple[str, str, str, int], int], key: tuple[str, str, str],
               batch: int) -> int | None:
    """Measured peak memory at ``batch``, or a linear extrapolation from the two nearest."""
    if (*key, batch) in memory:
        return memory[(*key, batch)]
    pts = sorted((b, v) for (h, c, q, b), v in memory.items() if (h, c, q) == key)
    if len(pts) < 2:
        return pts[0][1] if pts else None
    (b0, v0), (b1, v1) = pts[-2:] if batch > pts[-1][0] else pts[:2]
    return int(v0 + (v1 - v0) * (batch - b0) / (b1 - b0))
