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
from redist.core.ops.load import Load
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
    return V.appended(mesh, shape, sv.slice_dim, lv, nx, -1)


def smt_extents(mesh: Mesh, shape: tuple[int, ...], sv: V.StepVars, lv: V.LayoutVars,
                nx: V.LayoutVars) -> list[z3.BoolRef]:
    return V.appended_extents(mesh, shape, sv.slice_dim, lv)


def smt_listed(mesh: Mesh, step: AllSlice, lv: V.LayoutVars, nx: V.LayoutVars,
               rank: int) -> list[z3.BoolRef]:
    return V.appended_listed(mesh, step.axes, lv, nx)


def smt_pin(mesh: Mesh, sv: V.StepVars, step: AllSlice | None) -> list[z3.BoolRef]:
    return V.appended_pin(mesh, sv.slice_dim, step.axes if step else None)


def load(p: Problem, step: AllSlice, before: Layout, after: Layout) -> Load:
    """Cost model: the kept sub-block compacted to the start of the (handed-over)
    buffer."""
    return Load("all_slice", 0, 0, copies=p.local_bytes(after))


RULE = OpRule(
    name="all_slice", cls=AllSlice, portable=True,
    named_axes=lambda step: flat(step.axes), names=lambda step: flat(step.axes),
    map_names=map_per_dim, reshape=reshape, check_extents=check_extents, source=source,
    volume=volume, working_bytes=working_bytes, padding_bytes=no_bytes,
    to_json=per_dim_to_json, from_json=per_dim_from_json(AllSlice), describe=describe_per_dim,
    smt_kind=V.SLICE, smt_rule=smt_rule, smt_extents=smt_extents, smt_listed=smt_listed,
    smt_pin=smt_pin, load=load)
