"""Solver plumbing for ``paretrain.planner.program.formulation``: the PuLP solver objects, quieting HiGHS's banner, and
mapping a solve's status to an outcome or a named error."""

from __future__ import annotations

import os
import sys

import pulp

from paretrain.planner.errors import SolverError, SolverTimeout

__all__ = ["SOLVERS", "make_solver", "quiet_highs_banner", "solve_outcome"]

SOLVERS = ("highs", "cbc")


def make_solver(name: str, time_limit_s: float) -> pulp.LpSolver:
    """An exact solver (zero gap, tight tolerances) with a time limit."""
    if name == "cbc":
        return pulp.PULP_CBC_CMD(
            msg=False,
            gapRel=0.0,
            gapAbs=1e-10,
            timeLimit=time_limit_s,
            options=["primalTolerance 1e-9", "integerTolerance 1e-9"],
        )
    return pulp.HiGHS(
        msg=False,
        gapRel=0.0,
        gapAbs=1e-10,
        timeLimit=time_limit_s,
        mip_feasibility_tolerance=1e-9,
        primal_feasibility_tolerance=1e-9,
        presolve="off",
    )


_BANNER_DONE = False


def quiet_highs_banner() -> None:
    """HiGHS prints a banner on stdout the first time a model is made in a process, even with
    output off; make that first model with stdout pointed at /dev/null so the CLI's tables stay
    clean."""
    global _BANNER_DONE
    if _BANNER_DONE:
        return
    _BANNER_DONE = True
    try:
        import highspy
    except ImportError:  # pragma: no cover - highspy is a dependency
        return
    sys.stdout.flush()
    saved, null = os.dup(1), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(null)


def solve_outcome(status: int, sol_status: int, solver: str, time_limit_s: float) -> str:
    """Map PuLP's (status, sol_status) to "optimal", "feasible" (a limit stopped the solve with a
    schedule in hand: not proven optimal) or "infeasible"; raise the named errors otherwise.

    PuLP reports ``status`` Optimal even when HiGHS stopped at its time limit, so ``sol_status``
    is what tells the two apart.
    """
    if sol_status == pulp.LpSolutionOptimal:
        return "optimal"
    if sol_status == pulp.LpSolutionIntegerFeasible:
        return "feasible"
    if sol_status == pulp.LpSolutionInfeasible or status == pulp.LpStatusInfeasible:
        return "infeasible"
    if sol_status == pulp.LpSolutionUnbounded or status == pulp.LpStatusUnbounded:
        raise SolverError("the program is unbounded; this is a paretrain bug (all costs are >= 0)")
    raise SolverTimeout(
        f"the {solver} solver found no schedule within its {time_limit_s:g} s time "
        "limit; raise planner.time_limit_s or set planner.pareto_points"
    )
