"""`all_exchange` (DESIGN §2, the MPI extension): any layout of the same array, one
Alltoallv/Alltoallw over all devices, every element sent once by its canonical holder.
Not portable (XLA, NCCL and TPUs have no general exchange). Bytes received = the bytes of
each new block its old block lacks: the lower bound."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from redist.core.model.layout import Layout
from redist.core.model.mesh import Mesh
from redist.core.model.problem import Problem
from redist.core.ops.common import (
    Coords,
    Index,
    OpRule,
    check_target,
    describe_target,
    digits,
    layout_from_json,
    layout_to_json,
    map_target,
    mixed_radix,
    no_bytes,
    pin_nothing,
    received_bytes,
    retarget,
    smt_target,
)
from redist.core.semantics.algebra import Algebra
from redist.core.smt import symvars as V


@dataclass(frozen=True)
class AllExchange:
    """The MPI extension (DESIGN §2): any layout, one Alltoallv over all devices, every
    element sent once by its canonical holder. Not portable (no XLA/NCCL equivalent)."""
    layout: Layout
    op = "all_exchange"


def check_extents(step: AllExchange, mesh: Mesh, shape: tuple[int, ...], before: Layout,
                  after: Layout, show: Any) -> None:
    check_target(step, mesh, shape, after)


def source(step: AllExchange, mesh: Mesh, shape: tuple[int, ...], before: Layout,
           after: Layout, coords: Coords, index: Index, alg: Algebra) -> tuple[Coords, Index]:
    # Element by element: the block holding global index g before is g // c_before; its
    # canonical holder as for a permute (our own coordinates on the axes replicated
    # before, so a device that held the element is its own source).
    n_before = before.local_shape(mesh, shape)
    n_after = after.local_shape(mesh, shape)
    src_c, src_i = dict(coords), list(index)
    for d in range(after.rank):
        g = mixed_radix(mesh, after.dims[d], coords) * n_after[d] + index[d]
        src_c.update(digits(mesh, before.dims[d], alg.div(g, n_before[d]), alg))
        src_i[d] = alg.mod(g, n_before[d])
    return src_c, src_i


def volume(problem: Problem, step: AllExchange, before: Layout, after: Layout,
           valid: bool = True) -> int:
    return received_bytes(problem, before, after)


def working_bytes(problem: Problem, step: AllExchange, before: Layout, after: Layout) -> int:
    """Input + output (one Alltoallw)."""
    lb = math.prod(before.local_shape(problem.mesh, problem.shape))
    la = math.prod(after.local_shape(problem.mesh, problem.shape))
    return (lb + la) * problem.itemsize


RULE = OpRule(
    name="all_exchange", cls=AllExchange, portable=False,
    named_axes=lambda step: (), names=lambda step: step.layout.used_axes(),
    map_names=map_target, reshape=retarget, check_extents=check_extents, source=source,
    volume=volume, working_bytes=working_bytes, padding_bytes=no_bytes,
    to_json=layout_to_json, from_json=layout_from_json(AllExchange), describe=describe_target,
    # Any layout of the array: well-formedness is its whole symbolic rule.
    smt_kind=V.EXCHANGE, smt_rule=None, smt_extents=None, smt_listed=smt_target,
    smt_pin=pin_nothing)
