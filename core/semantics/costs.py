"""The lower bound of a problem's volume (DESIGN §3), exact Python integers. Each step's
bytes live with its op (core/ops)."""

from __future__ import annotations

from redist.core.model.problem import Problem
from redist.core.semantics.blocks import missing_total
from redist.core.semantics.reductions import pending_lower_bound

_LOWER: dict[tuple, int] = {}


def lower_bound_bytes(problem: Problem) -> int:
    """Σ over devices of the bytes of its dst block that its src block does not hold
    (valid elements only): what must cross the network whatever the plan; with pending
    sums to reduce, the bound of semantics/reductions.py. Kept per user
    problem, since every refinement of its atoms has the same lower bound."""
    key = (problem.base, problem.shape, problem.itemsize, problem.show(problem.src),
           problem.show(problem.dst))
    if key not in _LOWER:
        if len(_LOWER) > 256:
            _LOWER.clear()
        if set(problem.src.sum) - set(problem.dst.sum):
            # Reductions counted at their bandwidth-optimal bound (DESIGN §14).
            _LOWER[key] = pending_lower_bound(problem)
        else:
            _LOWER[key] = missing_total(problem.mesh, problem.shape, problem.src,
                                        problem.dst) * problem.itemsize
    return _LOWER[key]
