"""From the exact Pareto front to the choices a user is offered: intervals, confidence, merging.

1. Every candidate gets its prediction intervals (``paretrain.planner.measure.uncertainty``).
2. ``planner.confidence`` (default 0.9): the budget and the deadline apply to that quantile of
   cost and wall time. A candidate whose quantile passes either is not offered; the plan's notes
   name it. This filters the exact front computed at the point prediction (P50 model), so a
   schedule dominated there but safer at the quantile is not searched for: the filter is
   conservative, never optimistic. Candidates whose P90 passes the budget (possible when
   ``confidence`` is below 0.9) are marked in the table.
3. Points whose intervals overlap in every objective (cost, wall time, and the same level of the
   target metric) are one choice to a user: an epsilon-dominance filter at the prediction's own
   spread keeps, of each such group, the candidate with the lowest P50 cost (then wall time),
   and the plan's notes say how many were merged. ``planner.exact_front: true`` keeps every
   point of the exact front.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from paretrain.planner.plan.plan import Candidate

__all__ = ["filter_by_confidence", "merge_overlapping", "renumber"]


def filter_by_confidence(
    cands: Sequence[Candidate], confidence: float, budget_usd: float, deadline_s: float
) -> tuple[list[Candidate], list[str]]:
    """The candidates whose ``confidence`` quantile of cost and of time fit the budget and
    deadline, and a note for each one left out."""
    kept, notes = [], []
    for c in cands:
        if c.cost_interval is None or c.wall_interval is None:
            kept.append(c)
            continue
        cost_q, wall_q = c.cost_interval.quantile(confidence), c.wall_interval.quantile(confidence)
        if cost_q > budget_usd * (1 + 1e-9) or wall_q > deadline_s * (1 + 1e-9):
            what = (
                f"cost P{confidence * 100:.0f} ${cost_q:.6g} > budget ${budget_usd:.6g}"
                if cost_q > budget_usd * (1 + 1e-9)
                else f"wall P{confidence * 100:.0f} {wall_q:.1f} s > deadline {deadline_s:g} s"
            )
            notes.append(
                f"{c.config_id} {' | '.join(f'{s.hardware} b{s.batch_size}' for s in c.stages)}: "
                f"not offered, {what} (planner.confidence {confidence:g})"
            )
            continue
        kept.append(c)
    return kept, notes


def _overlap(a: Candidate, b: Candidate) -> bool:
    if a.level != b.level or a.config_id != b.config_id:
        return False
    ca, cb, wa, wb = a.cost_interval, b.cost_interval, a.wall_interval, b.wall_interval
    if ca is None or cb is None or wa is None or wb is None:
        return False
    return ca.p10 <= cb.p90 and cb.p10 <= ca.p90 and wa.p10 <= wb.p90 and wb.p10 <= wa.p90


def merge_overlapping(cands: Sequence[Candidate]) -> tuple[list[Candidate], list[str]]:
    """Keep one candidate of each group whose intervals overlap in every objective."""
    order = sorted(cands, key=lambda c: (c.cost_usd, c.wall_s, c.id))
    kept: list[Candidate] = []
    merged: dict[int, int] = {}  # position in ``kept`` -> candidates merged into it
    for c in order:
        home = next((i for i, k in enumerate(kept) if _overlap(k, c)), None)
        if home is None:
            kept.append(c)
        else:
            merged[home] = merged.get(home, 0) + 1
    notes = []
    for i, n in sorted(merged.items()):
        k = kept[i]
        stages = " | ".join(f"{s.hardware} b{s.batch_size}" for s in k.stages)
        notes.append(
            f"{n} candidate{'s' if n > 1 else ''} of {k.config_id} to {k.level:g} within the "
            f"prediction's spread of {stages} (cost and wall intervals overlap) merged into it; "
            "planner.exact_front: true lists them"
        )
    kept.sort(key=lambda c: (c.cost_usd, c.wall_s, c.id))
    return kept, notes


def renumber(cands: Sequence[Candidate]) -> list[Candidate]:
    """Ids p01, p02, ... in the order given (by cost)."""
    width = max(2, len(str(len(cands))))
    return [replace(c, id=f"p{i + 1:0{width}d}") for i, c in enumerate(cands)]
