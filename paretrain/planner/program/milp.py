r"""The mixed-integer program (PuLP) and the epsilon-constraint Pareto sweep (DESIGN §5).

Sets
    M   choices m: a model configuration trained to an accuracy level acc[m]
    K   stages k = 0..K-1, each 1/K of the ideal progress E_min(m)
    O   options o = (hardware h(o), precision, per-worker batch size, workers)
    H   hardware offers h
Parameters (``paretrain.planner.program.problem.Problem``)
    T[m,k,o], C[m,k,o]   seconds and dollars of stage k of m under option o (absent: no x)
    sw_t[h], sw_c[h]     seconds and dollars to move the run onto h between stages
    out_c[h]             dollars to move the run off h (egress of the checkpoint)
    budget, deadline, acc_floor
Variables
    x[m,k,o] in {0,1}    stage k of choice m uses option o
    z[m]     in {0,1}    choice m is made
    w[k,h]   in [0,1]    the run moves onto hardware h at stage k (k >= 1)
    v[k,h]   in [0,1]    the run leaves hardware h at stage k (k >= 1)
Expressions
    y[k,h] = sum_{m, o: h(o)=h} x[m,k,o]                    (hardware of stage k)
    COST   = sum C[m,k,o] x[m,k,o] + sum sw_c[h] w[k,h] + sum out_c[h] v[k,h]
    TIME   = sum T[m,k,o] x[m,k,o] + sum sw_t[h] w[k,h]
Constraints
    assign:  sum_o x[m,k,o] = z[m]              for all m, k
    one:     sum_m z[m] = 1
    switch:  w[k,h] >= y[k,h] - y[k-1,h]        for all k >= 1, h
             v[k,h] >= y[k-1,h] - y[k,h]        for all k >= 1, h
    budget:  COST <= min(budget, cost_cap)
    time:    TIME <= min(deadline, time_cap)
    floor:   z[m] = 0 where acc[m] < acc_floor  (as a bound)
    memory and quotas: options that break them have no x variable at all.
Objectives
    min COST (then min TIME with COST <= COST*: a lexicographic step, so no point returned is
    weakly dominated), or min TIME (then min COST).

Pareto set. The exact front (``points`` unset) comes from ``paretrain.planner.program.paths``: for a fixed choice
a schedule is a path through the stages, and a multi-objective shortest path over (stage, last
hardware) labels gives every non-dominated (cost, time) schedule exactly, in milliseconds where
the sweep below takes minutes. This program stays the reference (tests check that both give
the same front) and the fallback when the labels outgrow ``paths.MAX_LABELS``. With ``points``
set the exact front is thinned to that many points.

The MILP sweep (``method="milp"``, or the fallback; AUGMECON-style epsilon constraint): for each
accuracy floor A, minimize cost with TIME <= t_cap, tighten t_cap to just below the time found,
and repeat until infeasible; the union over all floors, filtered for 3-D dominance, is the
exact front. With ``points`` set, t_cap instead walks a grid of that many values between the
fastest and the cheapest schedule, jumping past grid values that the last solution already
beats (AUGMECON's bypass), and the front is thinned to ``points``.

Time and cost are scaled to O(1) inside the model; every reported figure is recomputed
exactly from the chosen options (``Problem.evaluate``), never read from the solver.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pulp

from paretrain.planner.errors import InfeasiblePlan, SolverError
from paretrain.planner.program.pareto import sorted_non_dominated
from paretrain.planner.program.paths import LabelLimit, path_front
from paretrain.planner.program.problem import Problem, Schedule
from paretrain.planner.program.solvers import SOLVERS, make_solver, quiet_highs_banner, solve_outcome

__all__ = [
    "METHODS",
    "SOLVERS",
    "Formulation",
    "Front",
    "explain_infeasible",
    "pareto_front",
    "solve_outcome",
]

#: How ``pareto_front`` finds the front: the label DP with the MILP as fallback, or one of them.
METHODS = ("auto", "paths", "milp")

_BIG = 1e20  # "no cap" on a scaled row: both solvers treat >= 1e20 as infinite
_AUGMENT = 1e-4  # weight of scaled time in an augmented cost objective (grid sweeps)
_STEP = 1e-5  # relative step below the last time found; well above the solvers' tolerances


@dataclass
class Front:
    """The Pareto schedules and how they were found."""

    schedules: list[Schedule]
    proven_optimal: bool = True
    solves: int = 0
    notes: list[str] = field(default_factory=list)
    method: str = "milp"  # "paths" (the label DP of paretrain.planner.program.paths) or "milp" (the sweep)


class Formulation:
    """The program of the module docstring, built once and re-solved with new caps.

    >>> # f = Formulation(problem); f.min_cost(time_cap=600.0)  -> Schedule or None
    """

    def __init__(self, problem: Problem, solver: str = "highs", time_limit_s: float = 60.0) -> None:
        if solver not in SOLVERS:
            raise ValueError(f"`solver` must be one of {SOLVERS}, but got {solver!r}")
        if solver == "highs":
            quiet_highs_banner()
        self.p = problem
        self.budget_usd = problem.budget_usd  # explain_infeasible lifts these one at a time
        self.deadline_s = problem.deadline_s
        self.solver_name = solver
        self.time_limit_s = time_limit_s
        self.solves = 0
        self.proven_optimal = True
        M, K, _O = problem.time_s.shape
        finite = np.isfinite(problem.time_s) & np.isfinite(problem.cost_usd)
        self.t_scale = _scale(problem.time_s, finite)
        self.c_scale = _scale(problem.cost_usd, finite)
        lp = pulp.LpProblem("paretrain", pulp.LpMinimize)
        self.z = [pulp.LpVariable(f"z_{m}", cat="Binary") for m in range(M)]
        self.idx = np.argwhere(finite)  # rows (m, k, o) that get an x variable
        self.x = [pulp.LpVariable(f"x_{m}_{k}_{o}", cat="Binary") for m, k, o in self.idx]
        t_terms = [
            (v, problem.time_s[m, k, o] / self.t_scale)
            for v, (m, k, o) in zip(self.x, self.idx, strict=False)
        ]
        c_terms = [
            (v, problem.cost_usd[m, k, o] / self.c_scale)
            for v, (m, k, o) in zip(self.x, self.idx, strict=False)
        ]
        # assign: sum_o x[m,k,o] - z[m] = 0
        by_mk: dict[tuple[int, int], list[pulp.LpVariable]] = {}
        for v, (m, k, _o) in zip(self.x, self.idx, strict=False):
            by_mk.setdefault((int(m), int(k)), []).append(v)
        for m in range(M):
            for k in range(K):
                terms = [(v, 1.0) for v in by_mk.get((m, k), [])] + [(self.z[m], -1.0)]
                lp += pulp.LpConstraint(
                    pulp.LpAffineExpression(terms), pulp.LpConstraintEQ, f"assign_{m}_{k}", 0.0
                )
        lp += pulp.LpConstraint(
            pulp.LpAffineExpression([(v, 1.0) for v in self.z]), pulp.LpConstraintEQ, "one", 1.0
        )
        self._add_switches(lp, t_terms, c_terms)
        self.TIME = pulp.LpAffineExpression(t_terms)
        self.COST = pulp.LpAffineExpression(c_terms)
        self.budget_row = pulp.LpConstraint(self.COST, pulp.LpConstraintLE, "budget", _BIG)
        self.time_row = pulp.LpConstraint(self.TIME, pulp.LpConstraintLE, "time", _BIG)
        lp += self.budget_row
        lp += self.time_row
        self.lp = lp

    def _add_switches(self, lp: pulp.LpProblem, t_terms: list, c_terms: list) -> None:
        """Hardware-change indicators and their time and cost terms (see the docstring)."""
        p = self.p
        K = p.time_s.shape[1]
        # switch: w[k,h] - y[k,h] + y[k-1,h] >= 0 (onto h) and v[k,h] - y[k-1,h] + y[k,h] >= 0
        # (off h), only where moving costs something
        self.w: dict[tuple[int, int], pulp.LpVariable] = {}
        self.v: dict[tuple[int, int], pulp.LpVariable] = {}
        leave = p.leave_usd
        if K > 1:
            by_kh: dict[tuple[int, int], list[pulp.LpVariable]] = {}
            for v, (_m, k, o) in zip(self.x, self.idx, strict=False):
                by_kh.setdefault((int(k), int(p.option_hw[o])), []).append(v)
            for k in range(1, K):
                for h in range(len(p.hardware)):
                    y_now = by_kh.get((k, h), [])
                    y_before = by_kh.get((k - 1, h), [])
                    if p.switch_s[h] > 0 or p.switch_usd[h] > 0:
                        w = pulp.LpVariable(f"w_{k}_{h}", lowBound=0, upBound=1)
                        self.w[(k, h)] = w
                        terms = [(w, 1.0)] + [(x, -1.0) for x in y_now] + [(x, 1.0) for x in y_before]
                        lp += pulp.LpConstraint(
                            pulp.LpAffineExpression(terms), pulp.LpConstraintGE, f"switch_in_{k}_{h}", 0.0
                        )
                        t_terms.append((w, p.switch_s[h] / self.t_scale))
                        c_terms.append((w, p.switch_usd[h] / self.c_scale))
                    if leave[h] > 0:
                        u = pulp.LpVariable(f"v_{k}_{h}", lowBound=0, upBound=1)
                        self.v[(k, h)] = u
                        terms = [(u, 1.0)] + [(x, -1.0) for x in y_before] + [(x, 1.0) for x in y_now]
                        lp += pulp.LpConstraint(
                            pulp.LpAffineExpression(terms), pulp.LpConstraintGE, f"switch_out_{k}_{h}", 0.0
                        )
                        c_terms.append((u, leave[h] / self.c_scale))

    # -- solving ------------------------------------------------------------------------
    def _solver(self) -> pulp.LpSolver:
        return make_solver(self.solver_name, self.time_limit_s)

    def _run(
        self, objective: pulp.LpAffineExpression, time_cap: float, cost_cap: float, floor: float
    ) -> Schedule | None:
        p = self.p
        t = min(time_cap, self.deadline_s)
        c = min(cost_cap, self.budget_usd)
        if t < 0 or c < 0:
            return None
        self.time_row.changeRHS(t / self.t_scale if math.isfinite(t) else _BIG)
        self.budget_row.changeRHS(c / self.c_scale if math.isfinite(c) else _BIG)
        for m, z in enumerate(self.z):
            z.upBound = 1 if p.choices[m].accuracy >= floor - 1e-12 else 0
        self.lp.setObjective(objective)
        self.lp.sense = pulp.LpMinimize
        self.solves += 1
        try:
            self.lp.solve(self._solver())
        except pulp.PulpSolverError as err:
            raise SolverError(f"the {self.solver_name} solver failed: {err}") from None
        outcome = solve_outcome(self.lp.status, self.lp.sol_status, self.solver_name, self.time_limit_s)
        if outcome == "infeasible":
            return None
        if outcome == "feasible":
            self.proven_optimal = False  # stopped by the time limit: feasible, not proven optimal
        return self._read()

    def _read(self) -> Schedule:
        p = self.p
        m = int(np.argmax([z.varValue or 0.0 for z in self.z]))
        K = p.stages
        best = np.full(K, -1)
        best_val = np.zeros(K)
        for v, (mm, k, o) in zip(self.x, self.idx, strict=False):
            if mm != m:
                continue
            val = v.varValue or 0.0
            if val > best_val[k]:
                best_val[k], best[k] = val, o
        if np.any(best < 0):
            raise SolverError("the solver returned a schedule with an empty stage; this is a paretrain bug")
        return p.evaluate(m, [int(o) for o in best])

    def min_cost(
        self,
        time_cap: float = math.inf,
        cost_cap: float = math.inf,
        floor: float | None = None,
        lexicographic: bool = True,
        augment: bool = False,
    ) -> Schedule | None:
        """The cheapest schedule within the caps (then the fastest among the cheapest)."""
        fl = self.p.accuracy_floor if floor is None else floor
        s = self._run(self.COST + _AUGMENT * self.TIME if augment else self.COST, time_cap, cost_cap, fl)
        if s is None or not lexicographic:
            return s
        s2 = self._run(
            self.TIME,
            min(time_cap, s.wall_s * (1 + _STEP) + 1e-12),
            s.cost_usd + self._cost_tol(s.cost_usd),
            fl,
        )
        return _better(s, s2)

    def min_time(
        self,
        time_cap: float = math.inf,
        cost_cap: float = math.inf,
        floor: float | None = None,
        lexicographic: bool = True,
    ) -> Schedule | None:
        """The fastest schedule within the caps (then the cheapest among the fastest)."""
        fl = self.p.accuracy_floor if floor is None else floor
        s = self._run(self.TIME, time_cap, cost_cap, fl)
        if s is None or not lexicographic:
            return s
        s2 = self._run(
            self.COST,
            s.wall_s + self._time_tol(s.wall_s),
            min(cost_cap, s.cost_usd * (1 + _STEP) + 1e-15),
            fl,
        )
        return _better(s, s2, by_time=True)

    def _time_tol(self, t: float) -> float:
        return _STEP * max(self.t_scale, t)

    def _cost_tol(self, c: float) -> float:
        return _STEP * max(self.c_scale, c)


def _better(a: Schedule, b: Schedule | None, by_time: bool = False) -> Schedule:
    if b is None:
        return a
    ka = (a.wall_s, a.cost_usd) if by_time else (a.cost_usd, a.wall_s)
    kb = (b.wall_s, b.cost_usd) if by_time else (b.cost_usd, b.wall_s)
    if kb[0] <= ka[0] * (1 + 1e-9) + 1e-15 and kb[1] < ka[1]:
        return b
    return a


def _scale(values: np.ndarray, finite: np.ndarray) -> float:
    v = values[finite]
    if v.size == 0:
        return 1.0
    s = float(np.median(v)) * values.shape[1]
    return s if s > 0 else 1.0


def pareto_front(
    problem: Problem,
    solver: str = "highs",
    time_limit_s: float = 60.0,
    points: int | None = None,
    formulation: Formulation | None = None,
    method: str = "auto",
) -> Front:
    """The (cost, wall time, accuracy) Pareto set of ``problem`` (see the module docstring).

    Raises ``InfeasiblePlan`` (with the smallest feasible budget and deadline) when no schedule
    meets the accuracy floor within the budget and the deadline.
    """
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {METHODS}, but got {method!r}")
    notes: list[str] = []
    found: list[Schedule] | None = None
    f = formulation
    if method != "milp":
        try:
            found = path_front(problem)
        except LabelLimit as err:
            if method == "paths":
                raise
            notes.append(f"front found by the MILP sweep: {err}")
    if found is None:
        f = f or Formulation(problem, solver, time_limit_s)
        floors = sorted({c.accuracy for c in problem.choices if c.accuracy >= problem.accuracy_floor - 1e-12})
        per_floor = None if points is None else max(3, math.ceil(points / max(1, len(floors))) + 1)
        found = []
        for floor in floors:
            found.extend(_sweep_exact(f, floor) if per_floor is None else _sweep_grid(f, floor, per_floor))
    if not found:
        raise explain_infeasible(problem, f or Formulation(problem, solver, time_limit_s))
    found.sort(key=lambda s: (s.cost_usd, s.wall_s, -s.accuracy, s.choice, s.options))
    front = [found[i] for i in sorted_non_dominated([(s.cost_usd, s.wall_s, s.accuracy) for s in found])]
    if points is not None and len(front) > points:
        front = _thin(front, points)
        notes.append(f"front thinned to planner.pareto_points={points} points")
    if f is None:
        return Front(front, True, 0, notes, "paths")
    return Front(front, f.proven_optimal, f.solves, notes, "milp")


def _sweep_exact(f: Formulation, floor: float) -> list[Schedule]:
    out: list[Schedule] = []
    cap = math.inf
    while True:
        s = f.min_cost(time_cap=cap, floor=floor)
        if s is None:
            return out
        out.append(s)
        # min() guards against a solution that meets the cap only within solver tolerance
        cap = min(cap, s.wall_s) - f._time_tol(s.wall_s)
        if cap <= 0:
            return out


def _sweep_grid(f: Formulation, floor: float, points: int) -> list[Schedule]:
    cheap = f.min_cost(floor=floor)
    if cheap is None:
        return []
    fast = f.min_time(floor=floor)
    assert fast is not None  # the cheapest schedule exists, so some fastest one does
    out = [cheap, fast]
    hi, lo = cheap.wall_s, fast.wall_s
    if hi - lo <= f._time_tol(hi):
        return out
    grid = [hi - (hi - lo) * j / (points - 1) for j in range(1, points - 1)]
    cap = math.inf
    for g in grid:
        if g >= cap:
            continue  # bypass: the last solution already beats this grid value
        # one augmented solve (cost + a sliver of time) instead of a lexicographic pair; a
        # weakly dominated result is removed by the final dominance filter
        s = f.min_cost(time_cap=g, floor=floor, lexicographic=False, augment=True)
        if s is None:
            break
        out.append(s)
        cap = s.wall_s
    return out


def _thin(front: Sequence[Schedule], n: int) -> list[Schedule]:
    """Keep ``n`` points spread evenly along the cost order, extremes always kept."""
    ordered = sorted(front, key=lambda s: (s.cost_usd, s.wall_s))
    picks = sorted({round(i * (len(ordered) - 1) / (n - 1)) for i in range(n)})
    fastest = min(ordered, key=lambda s: (s.wall_s, s.cost_usd))
    chosen = [ordered[i] for i in picks]
    if fastest not in chosen:
        chosen[-1] = fastest
    return chosen


def explain_infeasible(problem: Problem, f: Formulation) -> InfeasiblePlan:
    """Why no schedule fits: the binding constraint and the smallest budget and deadline that
    would each make the program feasible, found by solving with that constraint removed."""
    floor = problem.accuracy_floor
    try:
        f.budget_usd = math.inf
        cheapest_in_time = f.min_cost(floor=floor, lexicographic=False)
        f.deadline_s = math.inf
        cheapest_any = f.min_cost(floor=floor, lexicographic=False)
        fastest_any = f.min_time(floor=floor, lexicographic=False)
        f.budget_usd = problem.budget_usd
        fastest_in_budget = f.min_time(floor=floor, lexicographic=False)
    finally:
        f.budget_usd, f.deadline_s = problem.budget_usd, problem.deadline_s
    budget, deadline = problem.budget_usd, problem.deadline_s
    head = (
        f"no schedule reaches val_accuracy >= {floor:g} within the training budget "
        f"${budget:.6g} and the deadline {deadline:.6g} s"
    )
    if cheapest_any is None:
        return InfeasiblePlan(
            f"{head}: no measured configuration reaches that accuracy at any "
            "allowed batch size. To fix: lower target.goal, allow more batch sizes "
            "or raise target.max_samples",
            binding="accuracy",
        )
    min_budget = cheapest_in_time.cost_usd if cheapest_in_time else None
    min_deadline = fastest_in_budget.wall_s if fastest_in_budget else None
    if min_budget is not None and min_deadline is not None:
        binding = "budget and deadline (either one alone)"
        fix = (
            f"raise budget.train_usd to at least ${min_budget:.6g} (keeping the deadline), or "
            f"deadline_s to at least {math.ceil(min_deadline)} s (keeping the budget)"
        )
    elif min_budget is not None:
        binding = "budget"
        fix = f"raise budget.train_usd to at least ${min_budget:.6g} (the deadline can stay)"
    elif min_deadline is not None:
        binding = "deadline"
        fix = f"raise deadline_s to at least {math.ceil(min_deadline)} s (the budget can stay)"
    else:
        binding = "budget and deadline (both)"
        assert fastest_any is not None
        min_budget, min_deadline = cheapest_any.cost_usd, fastest_any.wall_s
        fix = (
            f"raise both: the cheapest schedule costs ${cheapest_any.cost_usd:.6g} and takes "
            f"{math.ceil(cheapest_any.wall_s)} s; the fastest takes {math.ceil(fastest_any.wall_s)} s "
            f"and costs ${fastest_any.cost_usd:.6g}"
        )
    return InfeasiblePlan(
        f"{head}. Binding: {binding}. To fix: {fix}",
        binding=binding,
        min_budget_usd=min_budget,
        min_deadline_s=min_deadline,
    )
