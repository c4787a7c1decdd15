r"""One stage's samples, seconds and dollars: the cost model of the plan and of every replan.

For a stage of ideal progress W (samples at the noise-free limit: E_min / K when planning)
run with option o = (offer h, precision q, per-worker batch b, workers n), global batch B = n b:

    samples   S  = W (1 + B / B_noise)                  B_noise at the stage's midpoint
    compute   T0 = f (S / B * t(b, n) + S / eval_every * t_eval)
    resumed   T0 += f t_eval                            the first stage of a run from a checkpoint
    ckpt      T0 += t_ckpt (c + T0 / ckpt_every)        c = 2 for the run's first stage, else 1
    warm-up   T0 += t_fixed                             the run's first stage only
    group     T0 += t_rdzv                              the run's first stage, n > 1
    rework    T  = T0 (1 + rate(h) / 3600 * (ckpt_every / 2 + switch_s(h)))      (spot offers)
    cost      C  = T (instances(h, n) * price(h) + storage(h) * bytes / 1e9 / month)

``t(b, n)`` is the step model (``paretrain.planner.measure.throughput``: measured or modeled, with the all-reduce
term for n > 1), ``f`` an observed step-time factor (1 when planning), ``price(h)`` the offer's
price per instance (a replan passes the current one). Checkpoints are written once at each
stage's end (and at the run's start) and once every ``ckpt_every`` seconds. A stage with several
workers forms its group first (``t_rdzv``: the launcher starts the workers and they rendezvous,
measured by the profile on local offers, ``Offer.rendezvous_s`` elsewhere),
every instance held meanwhile. The runtime keeps a group formed across stages with the same
offer and workers, so the plan charges it once, with the run's first stage; a schedule that
changes its worker count or offer mid-run forms a new group then, which the program (whose
transitions are between offers, not worker counts) does not price and the runtime charges as it
happens. A replan's stages never pay it: the run's group exists.

Between stages, moving the run onto offer h costs ``switch_s(h)`` seconds at h's price (free on
local offers) and leaving offer h costs the checkpoint's egress. The run's first stage on a
non-local offer (``entry``) pays the same provisioning and restore first: ``switch_s(h)`` more
seconds, at h's price for each instance it rents. A replan's stages never do: the run has
started, and a move off its current offer is charged as a move.

Billing (``billing_usd``). A provider bills the time an instance is held, from provisioning to
release, rounded up to its increment and at least its minimum (``Offer.billed_s``). A *hold* is
a contiguous run of stages on one offer, the move onto it included; the seconds billed beyond
it are charged with its last stage, at that stage's price and instance count. The program is
linear, so the rounding is applied after the solve (``bill_front``): the exact Pareto front is
computed for the linear cost, each of its schedules is re-costed with the rounding, and those
that pass the budget or are dominated once billed are dropped. The result is exact for the
linear cost and the true billed cost of every schedule offered, but not necessarily the exact
front of billed costs: a schedule the linear front dropped can be cheaper once billed (e.g. one
that stays on an offer whose minimum another schedule's short hold pays for nothing), and it is
not searched for. Holds far above their minimum and many increments long round by little, and
there the two fronts agree.

>>> from paretrain.planner.inputs.catalog import Offer
>>> from paretrain.planner.measure.fits import StepTimeModel
>>> from paretrain.planner.program.problem import Option
>>> from paretrain.planner.measure.throughput import StepModel, SyncModel
>>> step = StepModel(StepTimeModel(0.01, 0.0, 1, 1024), SyncModel(0.0, 1e15), 0.0, 0.0, False, {})
>>> offer = Offer("x", "test", "cpu", 3.6, memory_gib=1.0)
>>> c = stage_cost(work=1000.0, b_noise=1e9, option=Option("x", "fp32", 100), step=step, offer=offer,
...                instances=1, storage_bytes=0.0, first=False, eval_every=10**9, ckpt_every=1e9)
>>> round(c.samples), round(c.time_s, 6), round(c.cost_usd, 6)
(1000, 0.1, 0.0001)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from paretrain.planner.errors import InfeasiblePlan
from paretrain.planner.program.pareto import non_dominated

if TYPE_CHECKING:
    from paretrain.planner.inputs.catalog import Offer
    from paretrain.planner.measure.throughput import StepModel
    from paretrain.planner.program.problem import Option, Problem, Schedule

__all__ = [
    "SECONDS_PER_MONTH",
    "Held",
    "StageCost",
    "bill_front",
    "billing_usd",
    "entry_cost",
    "exit_usd",
    "memory_bytes",
    "option_fits",
    "schedule_billing",
    "stage_cost",
]

SECONDS_PER_MONTH = 730.0 * 3600.0


@dataclass(frozen=True, slots=True)
class StageCost:
    """What one stage needs under one option: samples, seconds, dollars, and its step times."""

    samples: float
    time_s: float
    cost_usd: float
    step_s: float  # seconds per step, the factor applied
    eval_s: float  # seconds per evaluation, the factor applied


def stage_cost(
    *,
    work: float,
    b_noise: float,
    option: Option,
    step: StepModel,
    offer: Offer,
    instances: int,
    storage_bytes: float,
    first: bool,
    eval_every: float,
    ckpt_every: float,
    price_usd_per_h: float | None = None,
    step_factor: float = 1.0,
    entry: bool = False,
    resumed: bool = False,
) -> StageCost:
    """The module docstring's stage: ``work`` ideal samples at ``b_noise`` under ``option``;
    ``entry``: it starts the run, so a non-local offer's provisioning is paid first;
    ``resumed``: it starts a run from a checkpoint, which evaluates after its first step (the
    level it starts at is known at once), one evaluation more than its samples' share. A run
    from a checkpoint one step short of its level is that step and that evaluation: without the
    evaluation, the plan put MNIST-1D's at 0.012 s, and it took 0.3."""
    B = option.global_batch
    t_step = step.predict(option.batch_size, option.workers) * step_factor
    t_eval = step.eval_s * step_factor
    s = work * (1.0 + B / b_noise)
    t0 = s / B * t_step + (s / eval_every + (1.0 if resumed else 0.0)) * t_eval
    t0 += step.ckpt_s * ((2 if first else 1) + t0 / ckpt_every)
    if first:  # a fresh run's first steps: allocator and kernel warm-up, measured by the profile
        t0 += getattr(step, "fixed_s", 0.0) * step_factor
    if first and option.workers > 1:  # the group forms: every worker's instance is held while it does
        t0 += step.sync.rendezvous_s
    rework = offer.interruption_per_h / 3600.0 * (ckpt_every / 2.0 + offer.switch_s)
    t = t0 * (1.0 + rework)
    price_h = offer.price_usd_per_h if price_usd_per_h is None else price_usd_per_h
    store_rate = offer.storage_usd_per_gb_month * (storage_bytes / 1e9) / SECONDS_PER_MONTH
    cost = t * ((price_h / 3600.0) * instances + store_rate)
    if entry and not offer.local:
        t += offer.switch_s
        cost += offer.switch_s * (price_h / 3600.0) * instances
    return StageCost(s, t, cost, t_step, t_eval)


def memory_bytes(offer: Offer, max_memory_mb: float | None = None) -> float:
    """The memory a step may use on ``offer``: the device's (a GPU's own, a CPU offer's RAM),
    and on a CPU offer at most ``runtime.max_memory_mb`` when the spec sets it."""
    limit = offer.memory_gib * 2**30
    if max_memory_mb is not None and offer.kind == "cpu":
        limit = min(limit, max_memory_mb * 2**20)
    return limit


def option_fits(
    option: Option, step: StepModel, offer: Offer, max_batch: int, max_memory_mb: float | None = None
) -> bool:
    """Whether an option may be planned: its global batch was measured to reach the level and
    its per-worker batch's profiled peak memory fits the offer (``memory_bytes``)."""
    if option.global_batch > max_batch:
        return False
    mem = step.memory_at(option.batch_size)
    return mem is None or mem <= memory_bytes(offer, max_memory_mb)


def entry_cost(offer: Offer, price_usd_per_h: float | None = None) -> tuple[float, float]:
    """Seconds and dollars to move a run onto ``offer`` between stages (provision and restore
    at its price); moving between local thread counts costs nothing."""
    if offer.local:
        return 0.0, 0.0
    price_h = offer.price_usd_per_h if price_usd_per_h is None else price_usd_per_h
    return offer.switch_s, offer.switch_s * (price_h / 3600.0)


def exit_usd(offer: Offer, egress_bytes: float) -> float:
    """Dollars to move a run off ``offer``: its checkpoint's egress."""
    return offer.egress_usd_per_gb * (egress_bytes / 1e9)


@dataclass(frozen=True, slots=True)
class Held:
    """One stage as billing sees it: its offer, the seconds it holds the offer (its time, and
    the move onto it when it starts a hold after another offer), its instances and price."""

    offer: Offer
    seconds: float
    instances: int = 1
    price_usd_per_h: float | None = None  # None: the offer's


def billing_usd(stages: Sequence[Held], held_before_s: float = 0.0) -> list[float]:
    """Per stage, the dollars billing adds to the linear cost (see the module docstring): non-zero
    only at the last stage of a hold. ``held_before_s``: seconds the first hold was already held
    before these stages (a replan that keeps the run on its offer).

    >>> from paretrain.planner.inputs.catalog import Offer
    >>> gpu = Offer("aws/x", "aws", "gpu", 3.6, 16.0, billing_increment_s=1.0, billing_minimum_s=60.0)
    >>> [round(x, 6) for x in billing_usd([Held(gpu, 10.0), Held(gpu, 20.0)])]  # 30 s held, 60 s billed
    [0.0, 0.03]
    """
    out = [0.0] * len(stages)
    start = 0
    for k, st in enumerate(stages):
        if k + 1 < len(stages) and stages[k + 1].offer.id == st.offer.id:
            continue
        held = sum(x.seconds for x in stages[start : k + 1]) + (held_before_s if start == 0 else 0.0)
        price_h = st.offer.price_usd_per_h if st.price_usd_per_h is None else st.price_usd_per_h
        out[k] = max(st.offer.billed_s(held) - held, 0.0) * (price_h / 3600.0) * st.instances
        start = k + 1
    return out


def schedule_billing(
    problem: Problem,
    sched: Schedule,
    offers: Mapping[str, Offer],
    instances: Mapping[tuple[str, int], int],
) -> list[float]:
    """``billing_usd`` of one schedule of ``problem`` (moves between stages from its arrays)."""
    held = []
    for k, o in enumerate(sched.options):
        opt, h = problem.options[o], problem.option_hw[o]
        move = float(problem.switch_s[h]) if k and h != problem.option_hw[sched.options[k - 1]] else 0.0
        held.append(
            Held(
                offers[opt.hardware],
                float(problem.time_s[sched.choice, k, o]) + move,
                int(instances[(opt.hardware, opt.workers)]),
            )
        )
    return billing_usd(held)


def bill_front(
    problem: Problem,
    schedules: Sequence[Schedule],
    offers: Mapping[str, Offer],
    instances: Mapping[tuple[str, int], int],
) -> tuple[list[tuple[Schedule, list[float]]], list[str]]:
    """The linear front re-costed as providers bill (module docstring): each kept schedule with
    its billed ``cost_usd`` and its per-stage billing dollars, and the notes on what was dropped.
    Raises ``InfeasiblePlan`` when every schedule passes the budget once billed."""
    billed = []
    for s in schedules:
        extra = schedule_billing(problem, s, offers, instances)
        billed.append((replace(s, cost_usd=s.cost_usd + sum(extra)), extra))
    fits = [b for b in billed if b[0].cost_usd <= problem.budget_usd * (1 + 1e-9)]
    notes = []
    if len(fits) < len(billed):
        notes.append(
            f"billing increments: {len(billed) - len(fits)} schedule(s) of the front pass the budget "
            f"${problem.budget_usd:.6g} once billed; not offered"
        )
    if not fits:
        least = min(b[0].cost_usd for b in billed)
        raise InfeasiblePlan(
            f"every schedule on the front passes the training budget ${problem.budget_usd:.6g} "
            f"once billed as its providers bill (increments, minimums, provisioning); the cheapest "
            f"is billed ${least:.6g}. To fix: raise budget.envelopes.train to at least ${least:.6g}, or "
            "allow offers billed by shorter increments",
            binding="budget",
            min_budget_usd=least,
        )
    keep = non_dominated([(s.cost_usd, s.wall_s, s.score) for s, _ in fits])
    if len(keep) < len(fits):
        notes.append(
            f"billing increments: {len(fits) - len(keep)} schedule(s) of the front are dominated once "
            "billed; not offered"
        )
    return [fits[i] for i in keep], notes
