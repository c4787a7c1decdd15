r"""Truncated convergence runs under the profile's budget: how far each config trains.

The full measurement trains every config to the top level at three or more batch sizes, so
planning costs more than the job it plans. Here each config (that has no ``convergence:`` hint)
trains once, at the smallest of ``planner.convergence_batch_sizes`` ``B0``, in rounds; the lab
continues the same run from round to round (``Lab.measure_truncated``), evaluating up to ``EVALS``
times a round and taking one two-batch gradient-noise sample at each round's end.

After each round the run's learning curve (``paretrain.planner.measure.curves``) predicts the
samples to the goal at ``B0``; with the measured step time at ``B0`` that is the **job
estimate** ``J``: the seconds to train the cheapest config to the goal on the device the profile
measures. The rule, in the device's seconds (the profile and the job it estimates train on the
same local devices at the same price, so seconds stand for dollars):

- a config stops when its run reached the top level (nothing to extrapolate), reached
  ``target.max_samples``, or its samples to the top level are known to within ``NARROW`` (P90
  over P50 and P50 over P10, both): its interval is narrow enough to rank it;
- the profile stops measuring when the next round would take the seconds spent so far past
  ``planner.profile_fraction`` x ``J``.

While no curve predicts the goal yet, ``J`` is unknown and the rounds go on: a plan needs at
least one config whose samples to the goal are predicted, and a learning curve that has not
left its plateau (a recurrent net on MNIST-1D sits near 0.5 for its first 30k samples, then
climbs) predicts nothing. The rounds stop then at ``target.max_samples`` or at the profile
envelope (``budget.envelopes.profile``), the hard cap throughout: when it runs out while no
curve predicts the goal, profiling stops with exit 3 as the full measurement does; when one
does, the plan is made from the rounds completed. So the fraction holds from the round in which
the first curve predicts the goal; what the profile spent before that is its price of knowing
anything, and ``paretrain plan`` prints the profile's cost against its knee's either way.

Where the goal lies near the top of what a config reaches, whether a curve at the climb's start
predicts it is close to a coin toss. On the m job of ``benchmarks/cost_of_knowing.py`` (a GRU
of width 256 aiming at 0.98 on MNIST-1D), at 12,288 samples and an accuracy of 0.46, the
curve's median reached 0.98 at 152k samples in one profile and never in another of the same
seed, whose evaluations differed by 0.01 (a draw of the validation set instead of the whole):
that one trained on to 98,304 samples, and two other seeds to 49,152. The run starts from the
truncated run's checkpoint, so that training is not paid twice; what it costs beyond the run's
own is the rounds' evaluations and noise samples, at most ``EVAL_SHARE`` and ``NOISE_SHARE`` of
their training (net of the reused training, 0.25-0.65 of the run's whole training on those
four profiles). Planning from a curve whose median does not reach the goal would need a
prediction that the curve does not make.

What a round measures besides training is sized to its training, so that knowing stays a share of
the run it extends. A round evaluates ``EVALS`` times, fewer when its evaluations would take more
than ``EVAL_SHARE`` of its training time (at least ``MIN_ROUND_EVALS``): a first round of 48 steps
need not evaluate a large validation set six times. When even ``MIN_ROUND_EVALS`` evaluations of
the whole set would pass that share, they read a part of it sized to fit (``eval_share``; the lab
reads at least a few thousand examples, and evaluates the whole set where a part's value passes a
level: ``paretrain.runtime.train.lab_truncated``). On the l job of
``benchmarks/cost_of_knowing.py`` (a two-layer GRU of width 256, 10,000 validation examples on
one thread) an evaluation of the whole set took 7.0 s against 6.3 s for a first round's 48
steps: the two evaluations a round needs for its curve cost more than its training. Reading a
draw, that job's truncated runs cost 41% less ($0.00096 against $0.00163) for the same plan
(the same knee, its samples' P50 within a sample), and its whole profile 37% less. Its gradient-noise sample averages
``NOISE_REPEATS`` batch pairs, fewer when the pairs' samples would pass ``NOISE_SHARE`` of the
round's training samples (at least ``MIN_NOISE_REPEATS``): early in training the gradient is large
against its noise, so few pairs estimate ``B_simple`` well; later rounds, where it is small, are
long enough to afford every pair. The sample reuses the round's last evaluation (taken at the
same point) rather than evaluating again.

Rounds double the samples (``GROWTH``), from ``FIRST_STEPS`` steps of ``B0``. The first
``MIN_ROUNDS`` rounds run whatever the fraction says: a curve from one or two rounds is too
short to trust its estimate of ``J`` (and a job of a few seconds costs less than its first
rounds' fixed costs: evaluations, a noise sample). The profile's notes keep the job estimate,
the seconds spent and why it stopped (``budgeted_notes``). The rule counts the truncated runs'
seconds only: the step timing comes first and is the same whatever the rounds do. ``paretrain
plan`` then sets the whole profile (step timing included) against the predicted cost of the
*plan's knee* and prints the two side by side, so a profile that passed the fraction (its floor
rounds, or a curve slow to predict the goal) is seen, not hidden.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from paretrain.planner.errors import BudgetExhausted
from paretrain.planner.measure.curves import Curve, fit_curve
from paretrain.planner.measure.lab import NOISE_REPEATS, OutOfMemory
from paretrain.planner.measure.measurements import ConvergenceRun, NoiseSample, StepProfile

if TYPE_CHECKING:
    from paretrain.planner.inputs.space import Config
    from paretrain.planner.inputs.spec import Spec
    from paretrain.planner.measure.lab import Lab

__all__ = [
    "EVALS",
    "EVAL_SHARE",
    "FIRST_STEPS",
    "GROWTH",
    "MIN_NOISE_REPEATS",
    "MIN_ROUNDS",
    "MIN_ROUND_EVALS",
    "NARROW",
    "NOISE_REPEATS",
    "NOISE_SHARE",
    "Budgeted",
    "eval_share",
    "measure_budgeted",
    "noise_repeats",
    "round_evals",
]

FIRST_STEPS = 48
GROWTH = 2.0
MIN_ROUNDS = 3
EVALS = 6
MIN_ROUND_EVALS = 2
EVAL_SHARE = 0.25
MIN_NOISE_REPEATS = 4
NOISE_SHARE = 0.25
NARROW = 0.15

Progress = Callable[[str, int, int], None]


@dataclass
class _Run:
    config: Config
    device: str | None
    samples: int = 0
    run: ConvergenceRun | None = None
    noise: Sequence[NoiseSample] = ()
    done: str = ""  # why it stopped ("" while it goes on)
    fitted: tuple[int, Curve | None] | None = None  # (evaluations fitted, their curve)


@dataclass
class Budgeted:
    """What the truncated runs measured, and the profile's account of them."""

    runs: list[ConvergenceRun] = field(default_factory=list)
    noise: list[NoiseSample] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)


def _step_s(steps: Sequence[StepProfile], config_id: str, device: str | None, batch: int) -> float:
    """The measured fp32 step time of ``config_id`` nearest ``batch`` on ``device``."""
    best: tuple[int, float] | None = None
    for sp in steps:
        if sp.config_id != config_id or sp.precision != "fp32" or (device and sp.hardware != device):
            continue
        for s in sp.samples:
            if s.workers == 1 and (best is None or abs(s.batch_size - batch) < best[0]):
                best = (abs(s.batch_size - batch), s.step_s * batch / s.batch_size)
    return best[1] if best else math.nan


def _curve(r: _Run, spec: Spec) -> Curve | None:
    """The run's learning curve, fitted once per round."""
    assert r.run is not None
    if r.fitted is None or r.fitted[0] != len(r.run.curve):
        r.fitted = (len(r.run.curve), fit_curve(r.run.curve, spec.target.metric_obj.direction))
    return r.fitted[1]


def _to_goal(r: _Run, spec: Spec) -> tuple[float, float, float] | None:
    """P10, P50, P90 of the samples to the goal at the run's batch size (None: no curve yet),
    where the job's run stops: it goes on from the truncated run's last point, evaluates every
    ``runtime.eval_every_samples`` and trains ``target.max_samples`` at most."""
    curve = _curve(r, spec)
    if curve is None:
        return None
    every, cap = spec.runtime.eval_every_samples, spec.target.max_samples
    return curve.samples_to(spec.target.goal, going_on=True, every=every, cap=cap)


def _top_known(r: _Run, spec: Spec) -> bool:
    assert r.run is not None
    top = max(spec.target.levels, key=spec.target.metric_obj.score)
    curve = _curve(r, spec)
    if curve is None:  # the plan is made from the run's learning curve: too few evaluations yet
        return False
    if dict(r.run.reached).get(top) is not None:
        return True
    # known: the curve's own spread, not the evaluations' noise, which no more training narrows
    lo, mid, hi = curve.samples_to(top, going_on=True, cap=spec.target.max_samples)
    return bool(math.isfinite(hi) and mid > 0 and hi / mid <= 1 + NARROW and mid / max(lo, 1.0) <= 1 + NARROW)


def measure_budgeted(
    spec: Spec,
    lab: Lab,
    configs: Sequence[Config],
    steps: Sequence[StepProfile],
    device_for: Callable[[str, int], str | None],
    noise_batches: tuple[int, int],
    progress: Progress | None = None,
) -> Budgeted:
    """Truncated runs of ``configs`` under ``planner.profile_fraction`` (see the module docstring)."""
    b0 = min(spec.planner.convergence_batch_sizes)
    runs = [_Run(c, device_for(c.id, b0)) for c in configs]
    account = _Account(
        step={r.config.id: _step_s(steps, r.config.id, r.device, b0) for r in runs},
        eval_s={r.config.id: _eval_s(steps, r.config.id, r.device) for r in runs},
    )
    limit = spec.target.max_samples
    target = min(max(FIRST_STEPS * b0, b0 * EVALS), limit)
    while any(not r.done for r in runs):
        for i, r in enumerate(x for x in runs if not x.done):
            if progress:
                progress(f"truncated run of {r.config.id} to {target} samples", i, len(runs))
            try:
                _round(spec, lab, r, b0, target, noise_batches, account)
            except BudgetExhausted:
                if not math.isfinite(_budget(spec, runs, account.step, b0)[1]):
                    raise  # no curve predicts the goal: nothing to plan from
                account.why = "the profile envelope (budget.envelopes.profile)"
                for x in runs:
                    x.done = x.done or "the profile envelope"
                break
        else:
            target = _decide(spec, runs, account, b0, target)
    out = Budgeted()
    for r in runs:
        if r.run is not None:
            out.runs.append(r.run)
            out.noise.extend(r.noise)
    out.notes = {
        "convergence": "truncated",
        "batch_size": b0,
        "rounds": len(account.history) + 1,
        "history": account.history,
        "convergence_s": round(account.spent_s, 3),
        "budget_s": round(account.budget_s, 3) if math.isfinite(account.budget_s) else None,
        "job_estimate_s": round(account.job_s, 3) if math.isfinite(account.job_s) else None,
        "profile_fraction": spec.planner.profile_fraction,
        "stopped": account.why,
        "runs": {r.config.id: {"samples": r.samples, "stopped": r.done} for r in runs},
    }
    return out


@dataclass
class _Account:
    """The seconds the rounds spent and may spend, and why they stopped."""

    step: dict[str, float]
    eval_s: dict[str, float]
    spent_s: float = 0.0
    budget_s: float = math.inf
    job_s: float = math.inf
    why: str = "every config's run is known well enough"
    history: list[list[float | None]] = field(
        default_factory=list
    )  # [spent, next round's, budget (None: no J yet), a floor round]


def _finite(x: float) -> float | None:
    return round(x, 4) if math.isfinite(x) else None


def _eval_s(steps: Sequence[StepProfile], config_id: str, device: str | None) -> float:
    """An evaluation's time where the run trains (fp32: the truncated run's precision)."""
    for sp in steps:
        if (sp.config_id, sp.hardware, sp.precision) == (config_id, device, "fp32"):
            return sp.eval_s
    return 0.0


def _decide(spec: Spec, runs: Sequence[_Run], account: _Account, b0: int, target: int) -> int:
    """After a round: which runs are done, whether the next round fits the budget; its target."""
    limit = spec.target.max_samples
    account.spent_s = sum(r.run.seconds for r in runs if r.run is not None)
    account.budget_s, account.job_s = _budget(spec, runs, account.step, b0)
    for r in runs:
        if not r.done:
            r.done = _done(r, spec, limit)
    nxt = min(int(target * GROWTH), limit)
    left = [r for r in runs if not r.done]
    more_s = sum(_round_s(account, r.config.id, nxt - r.samples, b0) for r in left)
    floor = not math.isfinite(account.job_s) or len(account.history) + 1 < MIN_ROUNDS
    if left and account.spent_s + more_s > account.budget_s and not floor:
        account.why = f"the next round ({more_s:.2f} s) would pass profile_fraction of the job estimate"
        for r in left:
            r.done = "the profile's budget"
    elif left:
        account.history.append(
            [round(account.spent_s, 4), round(more_s, 4), _finite(account.budget_s), int(floor)]
        )
    return nxt


def round_evals(train_s: float, eval_s: float) -> int:
    """How many times a round of ``train_s`` seconds of training evaluates (``eval_s`` each):
    ``EVALS``, fewer when they would take more than ``EVAL_SHARE`` of its training, never fewer
    than ``MIN_ROUND_EVALS``."""
    if not (eval_s > 0 and math.isfinite(train_s)):
        return EVALS
    return max(MIN_ROUND_EVALS, min(EVALS, int(EVAL_SHARE * train_s / eval_s)))


def eval_share(train_s: float, eval_s: float, evals: int) -> float:
    """The share of the validation set that ``evals`` evaluations of ``eval_s`` seconds each
    (the whole set's) read in a round of ``train_s`` seconds of training: 1, less when they
    would take more than ``EVAL_SHARE`` of its training (the lab reads a least number of
    examples whatever the share)."""
    if not (eval_s > 0 and math.isfinite(train_s)) or evals * eval_s <= EVAL_SHARE * train_s:
        return 1.0
    return EVAL_SHARE * train_s / (evals * eval_s)


def noise_repeats(new_samples: int, noise_batches: tuple[int, int]) -> int:
    """How many batch pairs the gradient-noise sample of a round of ``new_samples`` averages:
    ``NOISE_REPEATS``, fewer when their samples would pass ``NOISE_SHARE`` of the round's, never
    fewer than ``MIN_NOISE_REPEATS``."""
    fit = int(NOISE_SHARE * new_samples / max(sum(noise_batches), 1))
    return max(MIN_NOISE_REPEATS, min(NOISE_REPEATS, fit))


def _round_evals(account: _Account, config_id: str, new_samples: int, b0: int) -> tuple[float, int, float]:
    """A round's predicted seconds of training, how many times it evaluates, and the share of
    the validation set each evaluation reads."""
    train_s = new_samples / b0 * account.step[config_id]
    n = round_evals(train_s, account.eval_s[config_id])
    return train_s, n, eval_share(train_s, account.eval_s[config_id], n)


def _round_s(account: _Account, config_id: str, new_samples: int, b0: int) -> float:
    """A round's predicted seconds of training and evaluation (the share's: a part the lab
    rounds up to its least number of examples takes a little longer)."""
    train_s, n, share = _round_evals(account, config_id, new_samples, b0)
    return train_s + n * share * account.eval_s[config_id]


def _round(
    spec: Spec, lab: Lab, r: _Run, b0: int, target: int, noise_batches: tuple[int, int], account: _Account
) -> None:
    start = r.samples
    _, n, share = _round_evals(account, r.config.id, target - start, b0)
    evals = [start + (target - start) * (k + 1) // n for k in range(n)]
    noise_at = [target]  # along the same run, whatever planner.noise says: it costs a few batches
    try:
        r.run, r.noise = lab.measure_truncated(
            r.config,
            b0,
            spec.target.levels,
            evals,
            noise_at,
            noise_batches,
            device=r.device,
            noise_repeats=noise_repeats(target - start, noise_batches),
            eval_share=share,
        )
    except OutOfMemory as err:  # its batch does not fit: nothing to extrapolate, not planned
        r.done, r.run, r.noise = f"out of memory ({err})", None, ()
        return
    r.samples = target


def _done(r: _Run, spec: Spec, limit: int) -> str:
    if r.run is not None and r.run.diverged:
        return "diverged"
    if r.samples >= limit:
        return "target.max_samples"
    if _top_known(r, spec):
        return "the top level known"
    return ""


def _budget(spec: Spec, runs: Sequence[_Run], step: dict[str, float], b0: int) -> tuple[float, float]:
    """(the seconds the convergence runs may take, the job estimate J in seconds); both
    infinite while no curve predicts the goal."""
    jobs = []
    for r in runs:
        to_goal = _to_goal(r, spec) if r.run is not None and not r.run.diverged else None
        if to_goal is not None and math.isfinite(to_goal[1]) and math.isfinite(step[r.config.id]):
            jobs.append(to_goal[1] / b0 * step[r.config.id])
    if jobs:
        job = min(jobs)
        return spec.planner.profile_fraction * job, job
    return math.inf, math.inf
