"""`all_gather` (DESIGN §2): each dim's list, the minor-most suffix of that dim's axes, is
removed; each device receives the blocks of its group and concatenates them in
mixed-radix order. (G−1)·L·s bytes received per device."""

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
    braces,
    check_per_dim,
    counts_valid,
    describe_per_dim,
    digits,
    flat,
    map_per_dim,
    nest_error,
    nests,
    per_dim_from_json,
    per_dim_to_json,
    received_bytes,
    suffix_ok,
)
from redist.core.ops.load import GATHER_DIMS, GATHER_DIMS3, STRIDED_GATHER, Load, box_runs
from redist.core.semantics.algebra import Algebra
from redist.core.smt import symvars as V


@dataclass(frozen=True)
class AllGather:
    axes: PerDim
    op = "all_gather"


def reshape(step: AllGather, before: Layout) -> Layout:
    check_per_dim(step, before)
    for d, gone in enumerate(step.axes):
        if gone and not suffix_ok(before.dims[d], gone):
            raise TypingError(f"all_gather: {braces(gone)} is not the minor-most "
                              f"suffix of dim {d} {braces(before.dims[d])}")
    return Layout(tuple(dim[: len(dim) - len(gone)]
                        for dim, gone in zip(before.dims, step.axes, strict=True)))


def check_extents(step: AllGather, mesh: Mesh, shape: tuple[int, ...], before: Layout,
                  after: Layout, show: Any) -> None:
    coarse = after.local_shape(mesh, shape)
    for d, gone in enumerate(step.axes):
        g = math.prod(mesh.size(a) for a in gone)
        if gone and not nests(coarse[d], g, shape[d]):
            raise nest_error("all_gather", "dim", d, coarse[d], g, shape[d])


def source(step: AllGather, mesh: Mesh, shape: tuple[int, ...], before: Layout,
           after: Layout, coords: Coords, index: Index, alg: Algebra) -> tuple[Coords, Index]:
    # Piece k of the gathered dim comes from the group member whose block is k.
    n_before = before.local_shape(mesh, shape)
    src_c, src_i = dict(coords), list(index)
    for d, gone in enumerate(step.axes):
        if gone:
            src_c.update(digits(mesh, gone, alg.div(index[d], n_before[d]), alg))
            src_i[d] = alg.mod(index[d], n_before[d])
    return src_c, src_i


def _group(problem: Problem, step: AllGather) -> int:
    return math.prod(problem.mesh.size(a) for a in flat(step.axes))


def volume(problem: Problem, step: AllGather, before: Layout, after: Layout,
           valid: bool = True) -> int:
    if counts_valid(problem, before, after, valid):
        return received_bytes(problem, before, after)
    lb = math.prod(before.local_shape(problem.mesh, problem.shape)) * problem.itemsize
    return problem.mesh.num_devices * (_group(problem, step) - 1) * lb


def working_bytes(problem: Problem, step: AllGather, before: Layout, after: Layout) -> int:
    """The output, grown in place from the input (trimmed in place when the gathered dim
    is held whole)."""
    lb = math.prod(before.local_shape(problem.mesh, problem.shape))
    return lb * _group(problem, step) * problem.itemsize


def padding_bytes(problem: Problem, step: AllGather, before: Layout, after: Layout) -> int:
    """G equal (padded) pieces, trimmed after: what exceeds both blocks."""
    lb = math.prod(before.local_shape(problem.mesh, problem.shape))
    la = math.prod(after.local_shape(problem.mesh, problem.shape))
    return max(0, lb * _group(problem, step) - max(lb, la)) * problem.itemsize


def smt_rule(mesh: Mesh, shape: tuple[int, ...], sv: V.StepVars, lv: V.LayoutVars,
             nx: V.LayoutVars) -> z3.BoolRef:
    names = mesh.names
    return z3.And(
        z3.Or(*[sv.gathered[a] for a in names]),
        *V.suffix_closed(mesh, lv, sv.gathered),
        *[z3.If(sv.gathered[a], z3.And(lv.D[a] >= 0, nx.D[a] == -1, nx.P[a] == 0),
                V.same(lv, nx, a)) for a in names])


def smt_extents(mesh: Mesh, shape: tuple[int, ...], sv: V.StepVars, lv: V.LayoutVars,
                nx: V.LayoutVars) -> list[z3.BoolRef]:
    """Extents (§11): a gather splits, in reverse, the coarser layout after it."""
    return [V.nests(mesh, V.local_extent(mesh, shape[d], nx, d), shape[d],
                    {a: z3.And(sv.gathered[a], lv.D[a] == d) for a in mesh.names})
            for d in range(len(shape))]


def smt_listed(mesh: Mesh, step: AllGather, lv: V.LayoutVars, nx: V.LayoutVars,
               rank: int) -> list[z3.BoolRef]:
    """Each gathered list is the minor-most suffix of its dim, in order."""
    return [f for d, axes in enumerate(step.axes) for j, a in enumerate(axes)
            for f in (lv.D[a] == d, lv.P[a] == V.count_in(mesh, lv, d) - len(axes) + j)]


def smt_pin(mesh: Mesh, sv: V.StepVars, step: AllGather | None) -> list[z3.BoolRef]:
    gone = set(flat(step.axes)) if step else set()
    return [sv.gathered[a] == (a in gone) for a in mesh.names]


def load(p: Problem, step: AllGather, before: Layout, after: Layout) -> Load:
    """Cost model (runtime/execute.py _gather): one message per peer; the buffer grown to
    G blocks, this rank's block moved into its slot; strided slots are walked run by run,
    on the way out and in (MPI's derived datatypes). The G - 1 new slots are zero-filled
    only where some block is padded (even blocks: every element is received)."""
    g = math.prod(p.mesh.size(a) for a in flat(step.axes))
    local = before.local_shape(p.mesh, p.shape)
    dims = [d for d, gone in enumerate(step.axes) if gone]
    strided = len(dims) > 1 or bool(dims and math.prod(local[:dims[0]]) > 1)
    lb = p.local_bytes(before)
    full = after.local_shape(p.mesh, p.shape)
    runs = 2 * (g - 1) * box_runs(local, full) if strided else 0
    kind = ((GATHER_DIMS3 if sum(e > 1 for e in local) >= 3 else GATHER_DIMS)
            if len(dims) > 1 else STRIDED_GATHER if strided else "all_gather")
    even = all(local[d] * math.prod(p.mesh.size(a) for a in before.dims[d]) == p.shape[d]
               for d in range(len(local)))
    return Load(kind, g - 1, (g - 1) * lb, copies=(1 if even else g) * lb, group=g,
                runs=runs)


RULE = OpRule(
    name="all_gather", cls=AllGather, portable=True,
    named_axes=lambda step: flat(step.axes), names=lambda step: flat(step.axes),
    map_names=map_per_dim, reshape=reshape, check_extents=check_extents, source=source,
    volume=volume, working_bytes=working_bytes, padding_bytes=padding_bytes,
    to_json=per_dim_to_json, from_json=per_dim_from_json(AllGather), describe=describe_per_dim,
    smt_kind=V.GATHER, smt_rule=smt_rule, smt_extents=smt_extents, smt_listed=smt_listed,
    smt_pin=smt_pin, load=load)
