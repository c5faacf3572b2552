"""Bytes each step moves (DESIGN §2 table, §11), exact Python integers throughout.

Padding is never data (issue 18): a step's volume counts the valid elements each device
receives — those of its new block it did not hold — like the exchange and the lower
bound. When neither layout of the step pads, that is the table's formula, computed from
sizes alone; otherwise it is counted device by device.
"""

from __future__ import annotations

import math

from redist.core.model.layout import Layout
from redist.core.model.problem import Problem
from redist.core.semantics.blocks import changed_count, missing_elements
from redist.core.semantics.collectives import (
    AllExchange,
    AllGather,
    AllPermute,
    AllSlice,
    AllToAll,
    Collective,
    group_size,
)
from redist.core.semantics.reductions import pending_lower_bound


def step_volume(problem: Problem, step: Collective, before: Layout, after: Layout,
                valid: bool = True) -> int:
    """Bytes received in one step, summed over all devices: valid bytes, or (valid=False,
    the search's fast upper bound) the padded buffers' bytes."""
    mesh, shape, item = problem.mesh, problem.shape, problem.itemsize
    devices = mesh.num_devices
    if isinstance(step, AllSlice):
        return 0
    if isinstance(step, AllExchange) or (valid and (_pads(problem, before)
                                                    or _pads(problem, after))):
        return int(sum(missing_elements(mesh, shape, before, after).tolist())) * item
    local = before.local_shape(mesh, shape)
    lb = math.prod(local) * item
    if isinstance(step, AllPermute):
        return changed_count(mesh, before, after) * lb
    g = group_size(step, mesh)
    if isinstance(step, AllGather):
        return devices * (g - 1) * lb
    assert isinstance(step, AllToAll)
    # Each device keeps one of its g pieces and receives g - 1; a piece is the block with
    # dst_dim cut to its (padded) extent after the step.
    piece = lb // local[step.dst_dim] * after.local_shape(mesh, shape)[step.dst_dim]
    return devices * (g - 1) * piece


def _pads(problem: Problem, layout: Layout) -> bool:
    return any(n % layout.shards(problem.mesh, d) for d, n in enumerate(problem.shape))


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
            missing = missing_elements(problem.mesh, problem.shape, problem.src,
                                       problem.dst)
            _LOWER[key] = int(sum(missing.tolist())) * problem.itemsize
    return _LOWER[key]
