"""The lower bound of a problem's volume (DESIGN §3), exact Python integers. Each step's
bytes live with its op (core/ops)."""

from __future__ import annotations

from redist.core.model.problem import Problem
from redist.core.semantics.blocks import missing_elements

_LOWER: dict[tuple, int] = {}


def lower_bound_bytes(problem: Problem) -> int:
    """Σ over devices of the bytes of its dst block that its src block does not hold
    (valid elements only): what must cross the network whatever the plan. Kept per user
    problem, since every refinement of its atoms has the same lower bound."""
    key = (problem.base, problem.shape, problem.itemsize, problem.show(problem.src),
           problem.show(problem.dst))
    if key not in _LOWER:
        if len(_LOWER) > 256:
            _LOWER.clear()
        missing = missing_elements(problem.mesh, problem.shape, problem.src, problem.dst)
        _LOWER[key] = int(sum(missing.tolist())) * problem.itemsize
    return _LOWER[key]
