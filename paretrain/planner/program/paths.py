r"""Exact (cost, time) fronts as multi-objective shortest paths through the stages.

For a fixed choice m a schedule is a path: stage k picks an option o_k, pays C[m,k,o_k] and
T[m,k,o_k], and pays sw_c[h], sw_t[h] and out_c[h'] when it moves from hardware h' (stage k-1)
onto h != h' (stage k); the first stage pays no move (``Problem.evaluate``). Every term is >= 0
and the move depends only on the hardware of two consecutive stages, so a dynamic program over
the stages is exact when it keeps, at stage k and for each hardware h, every label (cost, time)
of a partial schedule ending on h that no other such label weakly dominates:

    L[0,h]   = front{ (C[m,0,o], T[m,0,o]) : h(o) = h }
    U[k-1]   = front{ (c + out_c[h'], t) : (c, t) in L[k-1,h'], all h' }          (leave h')
    L[k,h]   = front{ (l + (C[m,k,o], T[m,k,o])) : h(o) = h,
                      l in L[k-1,h]  or  l in U[k-1] + (sw_c[h], sw_t[h]) }       (stay or move)

A label moved "from h to h" through U is never better than the same label staying, so U needs
no exclusion. A partial label past the budget or the deadline is dropped (costs only grow).
The choice's front is front(union_h L[K-1,h]). Labels keep a parent pointer and an option, so
each survivor becomes a schedule whose totals ``Problem.evaluate`` recomputes exactly.

Options are first cut to the (cost, time) front of their hardware for each (m, k), as
``paretrain.planner.program.problem.prune_dominated`` does. One more exact cut: the choices are solved best
accuracy first, and a partial label whose cost and time plus the least any completion can add
(per-stage minima; moves are >= 0) is weakly matched by a schedule already found for an accuracy
at least as high can only end dominated or equal, so it is dropped. The union of the choices' fronts is filtered for 3-D
dominance by ``paretrain.planner.program.milp.pareto_front``, as the MILP sweep's is.

>>> # schedules = path_front(problem)  -> every schedule of the exact front (and maybe a few more)
"""

from __future__ import annotations

import numpy as np

from paretrain.planner.program.pareto import front2d
from paretrain.planner.program.problem import Problem, Schedule

__all__ = ["LabelLimit", "path_front"]

#: Labels of one stage past which ``path_front`` gives up (``paretrain.planner.program.milp`` then sweeps with the
#: MILP); at that size the front holds thousands of points and memory is the limit.
MAX_LABELS = 1_000_000
_CAP_SLACK = 1 + 2e-9  # partial labels are cut a hair above the caps ``Problem.feasible`` applies


class LabelLimit(Exception):
    """The dynamic program would keep more labels than allowed."""


class _Stage:
    """The labels of one stage: totals, last hardware, parent label and option."""

    __slots__ = ("c", "hw", "opt", "parent", "t")

    def __init__(self, c: np.ndarray, t: np.ndarray, hw: np.ndarray, parent: np.ndarray, opt: np.ndarray):
        self.c, self.t, self.hw, self.parent, self.opt = c, t, hw, parent, opt


def _options(problem: Problem, m: int, k: int) -> dict[int, np.ndarray]:
    """Per hardware, the options of (m, k) that no option on the same hardware dominates."""
    T, C = problem.time_s[m, k], problem.cost_usd[m, k]
    live = np.flatnonzero(np.isfinite(T) & np.isfinite(C))
    out: dict[int, np.ndarray] = {}
    for h in np.unique(problem.option_hw[live]):
        cols = live[problem.option_hw[live] == h]
        out[int(h)] = cols[front2d(C[cols], T[cols])]
    return out


class _Incumbent:
    """The (cost, time) staircase of the schedules found so far, for the bound test."""

    def __init__(self) -> None:
        self.c = np.zeros(0)
        self.t = np.zeros(0)

    def add(self, c: np.ndarray, t: np.ndarray) -> None:
        c, t = np.concatenate([self.c, c]), np.concatenate([self.t, t])
        keep = front2d(c, t)
        self.c, self.t = c[keep], t[keep]

    def matched(self, c: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Whether some schedule found costs <= c and takes <= t (per label)."""
        if self.c.size == 0:
            return np.zeros(c.shape, dtype=bool)
        i = np.searchsorted(self.c, c, side="right") - 1  # the dearest found point costing <= c
        ok = i >= 0
        return ok & (self.t[np.maximum(i, 0)] <= t)  # staircase: it is also the fastest of those


def _choice_front(problem: Problem, m: int, incumbent: _Incumbent, max_labels: int) -> list[Schedule]:
    """The exact (cost, time) front of choice ``m``: the labels stage by stage, then the paths
    of the last stage's front, evaluated exactly; the incumbent learns the feasible ones."""
    p = problem
    opts = [_options(p, m, k) for k in range(p.stages)]
    if any(not o for o in opts):
        return []
    least_c, least_t = _least_completion(p, m, opts)
    stages: list[_Stage] = []
    prev: _Stage | None = None
    for k in range(p.stages):
        bound = (least_c[k], least_t[k])
        prev = _next_stage(p, m, k, prev, opts[k], incumbent, bound, max_labels)
        if prev is None:
            return []
        stages.append(prev)
    out = [s for s in _schedules(p, m, stages) if p.feasible(s)]
    incumbent.add(np.array([s.cost_usd for s in out]), np.array([s.wall_s for s in out]))
    return out


def _least_completion(p: Problem, m: int, opts: list[dict[int, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """The least cost and time any completion after stage k adds (moves are >= 0), per k."""
    K = p.stages
    least_c = np.zeros(K)
    least_t = np.zeros(K)
    for k in range(K - 2, -1, -1):
        cols = np.concatenate(list(opts[k + 1].values()))
        least_c[k] = least_c[k + 1] + p.cost_usd[m, k + 1, cols].min()
        least_t[k] = least_t[k + 1] + p.time_s[m, k + 1, cols].min()
    return least_c, least_t


def _next_stage(
    p: Problem,
    m: int,
    k: int,
    prev: _Stage | None,
    opts: dict[int, np.ndarray],
    incumbent: _Incumbent,
    least: tuple[float, float],
    max_labels: int,
) -> _Stage | None:
    """L[k, h] for every hardware h from the labels of stage k-1 (None: no label survives)."""
    budget, deadline = p.budget_usd * _CAP_SLACK, p.deadline_s * _CAP_SLACK
    leaving = None if prev is None else _leave(p, prev)
    parts: list[tuple[np.ndarray, ...]] = []
    for h, cols in opts.items():
        bc, bt, bp = _entries(p, h, prev, leaving)
        if bc.size * cols.size > 8 * max_labels:
            raise LabelLimit(f"stage {k} of choice {m} would extend {bc.size} labels by {cols.size} options")
        cc = (bc[:, None] + p.cost_usd[m, k, cols][None, :]).ravel()
        tt = (bt[:, None] + p.time_s[m, k, cols][None, :]).ravel()
        ok = (cc <= budget) & (tt <= deadline)
        ok &= ~incumbent.matched(cc + least[0], tt + least[1])
        idx = np.flatnonzero(ok)
        if idx.size == 0:
            continue
        keep = idx[front2d(cc[idx], tt[idx])]
        parts.append(
            (cc[keep], tt[keep], np.full(keep.size, h), bp[keep // cols.size], cols[keep % cols.size])
        )
    if not parts:
        return None
    stage = _Stage(*(np.concatenate(a) for a in zip(*parts, strict=False)))
    if stage.c.size > max_labels:
        raise LabelLimit(f"stage {k} of choice {m} keeps {stage.c.size} labels (limit {max_labels})")
    return stage


def _leave(p: Problem, prev: _Stage) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """U[k-1]: the front of the labels that leave their hardware, as (index, cost, time)."""
    u = front2d(prev.c + p.leave_usd[prev.hw], prev.t)
    return u, prev.c[u] + p.leave_usd[prev.hw[u]], prev.t[u]


def _entries(
    p: Problem, h: int, prev: _Stage | None, leaving: tuple[np.ndarray, np.ndarray, np.ndarray] | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The labels a stage on hardware ``h`` extends, as (cost, time, parent): those that stay on
    ``h`` and those that move onto it, cut to their front (the first stage: one empty label)."""
    if prev is None or leaving is None:
        return np.zeros(1), np.zeros(1), np.full(1, -1)
    u, uc, ut = leaving
    stay = np.flatnonzero(prev.hw == h)
    bc = np.concatenate([prev.c[stay], uc + p.switch_usd[h]])
    bt = np.concatenate([prev.t[stay], ut + p.switch_s[h]])
    bp = np.concatenate([stay, u])
    keep = front2d(bc, bt)
    return bc[keep], bt[keep], bp[keep]


def _schedules(p: Problem, m: int, stages: list[_Stage]) -> list[Schedule]:
    """Each label of the last stage's front traced back to its options, evaluated exactly."""
    last = stages[-1]
    out = []
    for i in front2d(last.c, last.t):
        path = []
        j = int(i)
        for k in range(len(stages) - 1, -1, -1):
            path.append(int(stages[k].opt[j]))
            j = int(stages[k].parent[j])
        out.append(p.evaluate(m, path[::-1]))
    return out


def path_front(problem: Problem, max_labels: int | None = None, bound: bool = True) -> list[Schedule]:
    """The exact (cost, time) front of every choice at or above the accuracy floor, each
    schedule evaluated exactly and feasible; the union may hold points another choice
    dominates. ``bound=False`` turns off the cut by schedules already found (to measure it).
    Raises ``LabelLimit`` when a stage would keep more than ``max_labels`` (default
    ``MAX_LABELS``) labels."""
    limit = MAX_LABELS if max_labels is None else max_labels
    acc = problem.score
    order = sorted(
        (m for m in range(len(problem.choices)) if acc[m] >= problem.score_floor - 1e-12),
        key=lambda m: (-acc[m], m),
    )
    incumbent = _Incumbent()
    found: list[Schedule] = []
    for m in order:
        found.extend(_choice_front(problem, m, incumbent if bound else _Incumbent(), limit))
    return found
