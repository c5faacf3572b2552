"""`all_slice` (DESIGN §2, the paper's dynslice): each listed axis, replicated before, is
appended minor-most to its dim; each device keeps the sub-block its coordinates on the
new axes select. No communication."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import z3

from redist.core.errors import TypingError
from redist.core.model.layout import Layout
from redist.core.model.mesh import Mesh
from redist.core.model.problem import Problem
from redist.core.ops.common import (
    Coords,
    Index,
    OpRule,
    PerDim,
    check_per_dim,
    describe_per_dim,
    flat,
    map_per_dim,
    mixed_radix,
    nest_error,
    nests,
    no_bytes,
    per_dim_from_json,
    per_dim_to_json,
)
from redist.core.semantics.algebra import Algebra
from redist.core.smt import symvars as V


@dataclass(frozen=True)
class AllSlice:
    axes: PerDim
    op = "all_slice"


def reshape(step: AllSlice, before: Layout) -> Layout:
    check_per_dim(step, before)
    used = set(before.used_axes())
    for a in flat(step.axes):
        if a in used:
            raise TypingError(f"all_slice: axis {a!r} is not replicated "
                              f"(it shards dim {before.dim_of(a)})")
    return Layout(tuple(before.dims[d] + new for d, new in enumerate(step.axes)))


def check_extents(step: AllSlice, mesh: Mesh, shape: tuple[int, ...], before: Layout,
                  after: Layout, show: Any) -> None:
    local = before.local_shape(mesh, shape)
    for d, new in enumerate(step.axes):
        g = math.prod(mesh.size(a) for a in new)
        if not nests(local[d], g, shape[d]):
            raise nest_error("all_slice", "dim", d, local[d], g, shape[d])


def source(step: AllSlice, mesh: Mesh, shape: tuple[int, ...], before: Layout,
           after: Layout, coords: Coords, index: Index, alg: Algebra) -> tuple[Coords, Index]:
    # Keep the sub-block picked by the new axes: offset by its position.
    n_after = after.local_shape(mesh, shape)
    src_i = list(index)
    for d, new in enumerate(step.axes):
        if new:
            src_i[d] = mixed_radix(mesh, new, coords) * n_after[d] + index[d]
    return dict(coords), src_i


def volume(problem: Problem, step: AllSlice, before: Layout, after: Layout,
           valid: bool = True) -> int:
    return 0


def working_bytes(problem: Problem, step: AllSlice, before: Layout, after: Layout) -> int:
    """The input: a view, or compacted and padded in place."""
    return math.prod(before.local_shape(problem.mesh, problem.shape)) * problem.itemsize


def smt_rule(mesh: Mesh, shape: tuple[int, ...], sv: V.StepVars, lv: V.LayoutVars,
             nx: V.LayoutVars) -> z3.BoolRef:
    names, rank = mesh.names, len(shape)
    return z3.And(
        z3.Or(*[sv.slice_dim[a] >= 0 for a in names]),
        *[z3.If(sv.slice_dim[a] >= 0,
                z3.And(sv.slice_dim[a] < rank, lv.D[a] == -1, nx.D[a] == sv.slice_dim[a],
                       *[z3.Implies(sv.slice_dim[a] == d, nx.P[a] >= V.count_in(mesh, lv, d))
                         for d in range(rank)]),
                z3.And(sv.slice_dim[a] == -1, V.same(lv, nx, a)))
          for a in names])


def smt_extents(mesh: Mesh, shape: tuple[int, ...], sv: V.StepVars, lv: V.LayoutVars,
                nx: V.LayoutVars) -> list[z3.BoolRef]:
    """Extents (§11): a slice splits the dim it lands in."""
    return [V.nests(mesh, V.local_extent(mesh, shape[d], lv, d), shape[d],
                    {a: sv.slice_dim[a] == d for a in mesh.names}) for d in range(len(shape))]


def smt_listed(mesh: Mesh, step: AllSlice, lv: V.LayoutVars, nx: V.LayoutVars,
               rank: int) -> list[z3.BoolRef]:
    """Sliced axes are appended to their dim, in order."""
    return [f for d, axes in enumerate(step.axes) for j, a in enumerate(axes)
            for f in (nx.D[a] == d, nx.P[a] == V.count_in(mesh, lv, d) + j)]


def smt_pin(mesh: Mesh, sv: V.StepVars, step: AllSlice | None) -> list[z3.BoolRef]:
    sliced = {a: d for d, axes in enumerate(step.axes) for a in axes} if step else {}
    return [sv.slice_dim[a] == sliced.get(a, -1) for a in mesh.names]


RULE = OpRule(
    name="all_slice", cls=AllSlice, portable=True,
    named_axes=lambda step: flat(step.axes), names=lambda step: flat(step.axes),
    map_names=map_per_dim, reshape=reshape, check_extents=check_extents, source=source,
    volume=volume, working_bytes=working_bytes, padding_bytes=no_bytes,
    to_json=per_dim_to_json, from_json=per_dim_from_json(AllSlice), describe=describe_per_dim,
    smt_kind=V.SLICE, smt_rule=smt_rule, smt_extents=smt_extents, smt_listed=smt_listed,
    smt_pin=smt_pin)
