r"""The mixed-integer program (PuLP) (the docs: concepts, the program), built once and re-solved with new caps.

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

Time and cost are scaled to O(1) inside the model; every reported figure is recomputed
exactly from the chosen options (``Problem.evaluate``), never read from the solver.
"""

from __future__ import annotations

import math

import numpy as np
import pulp

from paretrain.planner.errors import SolverError
from paretrain.planner.program.problem import Problem, Schedule
from paretrain.planner.program.solvers import SOLVERS, make_solver, quiet_highs_banner, solve_outcome

__all__ = ["Formulation"]

_BIG = 1e20  # "no cap" on a scaled row: both solvers treat >= 1e20 as infinite
_AUGMENT = 1e-4  # weight of scaled time in an augmented cost objective (grid sweeps)
_STEP = 1e-5  # relative step below the last time found; well above the solvers' tolerances


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
            z.upBound = 1 if p.choices[m].score >= floor - 1e-12 else 0
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
        fl = self.p.score_floor if floor is None else floor
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
        fl = self.p.score_floor if floor is None else floor
        s = self._run(self.TIME, time_cap, cost_cap, fl)
        if s is None or not lexicographic:
            return s
        s2 = self._run(
            self.COST,
            s.wall_s + self.time_tol(s.wall_s),
            min(cost_cap, s.cost_usd * (1 + _STEP) + 1e-15),
            fl,
        )
        return _better(s, s2, by_time=True)

    def time_tol(self, t: float) -> float:
        """How far below ``t`` a time counts as strictly faster (well above solver tolerances)."""
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
