"""`reduce_scatter` (DESIGN §14): each listed axis, a pending-sum axis before, leaves the
pending set and is appended minor-most to its dim; each device receives the sum over its
group of the piece its coordinates on the new axes select. (G−1)/G·L·s bytes received
per device, the bandwidth-optimal reduce-scatter."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
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
    describe_per_dim,
    flat,
    map_per_dim,
    mixed_radix,
    nest_error,
    nests,
    per_dim_from_json,
    per_dim_to_json,
)
from redist.core.ops.load import Load
from redist.core.semantics.algebra import Algebra
from redist.core.semantics.blocks import block_ranges
from redist.core.semantics.working import chunk_elements
from redist.core.smt import symvars as V


@dataclass(frozen=True)
class ReduceScatter:
    axes: PerDim
    op = "reduce_scatter"


def reshape(step: ReduceScatter, before: Layout) -> Layout:
    check_per_dim(step, before)
    for a in flat(step.axes):
        if a not in before.sum:
            where = (f"it shards dim {before.dim_of(a)}" if before.dim_of(a) is not None
                     else f"pending axes {braces(before.sum)}")
            raise TypingError(f"reduce_scatter: axis {a!r} is not a pending-sum axis ({where})")
    gone = set(flat(step.axes))
    return Layout(tuple(before.dims[d] + new for d, new in enumerate(step.axes)),
                  tuple(a for a in before.sum if a not in gone))


def check_extents(step: ReduceScatter, mesh: Mesh, shape: tuple[int, ...], before: Layout,
                  after: Layout, show: Any) -> None:
    """Each device's block splits into the G pieces the group reduces: locally, as a
    slice would (DESIGN §11)."""
    local = before.local_shape(mesh, shape)
    for d, new in enumerate(step.axes):
        g = math.prod(mesh.size(a) for a in new)
        if not nests(local[d], g, shape[d]):
            raise nest_error("reduce_scatter", "dim", d, local[d], g, shape[d])


def addend(step: ReduceScatter, mesh: Mesh, shape: tuple[int, ...], before: Layout,
           after: Layout, coords: Coords, index: Index, k: Coords,
           alg: Algebra) -> tuple[Coords, Index]:
    """Member k of the group (coordinates on the listed axes) contributes the element at
    the same place of the piece *this* device keeps."""
    n_after = after.local_shape(mesh, shape)
    src_i = list(index)
    for d, new in enumerate(step.axes):
        if new:
            src_i[d] = mixed_radix(mesh, new, coords) * n_after[d] + index[d]
    src_c = dict(coords)
    src_c.update({a: k[a] for a in flat(step.axes)})
    return src_c, src_i


def source(step: ReduceScatter, mesh: Mesh, shape: tuple[int, ...], before: Layout,
           after: Layout, coords: Coords, index: Index, alg: Algebra) -> tuple[Coords, Index]:
    """The device's own addend (the member k = its own coordinates)."""
    return addend(step, mesh, shape, before, after, coords, index, coords, alg)


def group(problem: Problem, axes: tuple[str, ...]) -> int:
    return math.prod(problem.mesh.size(a) for a in axes)


def volume(problem: Problem, step: ReduceScatter, before: Layout, after: Layout,
           valid: bool = True) -> int:
    """Each device receives G−1 pieces of its new block: padded pieces (what the runtime
    sends), or their valid elements."""
    g = group(problem, flat(step.axes))
    if valid:
        lo, hi = block_ranges(problem.mesh, problem.shape, after)
        held = int(np.prod(hi - lo, axis=1).sum())
    else:
        held = problem.mesh.num_devices * math.prod(after.local_shape(problem.mesh,
                                                                       problem.shape))
    return (g - 1) * held * problem.itemsize


def working_bytes(problem: Problem, step: ReduceScatter, before: Layout,
                  after: Layout) -> int:
    """The input (padded to G equal pieces), reduced in place: directly when the pieces
    are contiguous in group order, else through one chunk of scratch (runtime/reduce.py)."""
    padded = _padded(problem, step, after)
    if contiguous(problem, step, after):
        return padded * problem.itemsize
    lb = math.prod(before.local_shape(problem.mesh, problem.shape))
    return (padded + chunk_elements(lb)) * problem.itemsize


def contiguous(problem: Problem, step: ReduceScatter, after: Layout) -> bool:
    """Are the G pieces of the (padded) block contiguous, in group order? (One split dim,
    every dim before it of extent 1.)"""
    return split_contiguous(after.local_shape(problem.mesh, problem.shape), step.axes)


def split_contiguous(n_after: tuple[int, ...], axes: PerDim) -> bool:
    split = [d for d, new in enumerate(axes) if new]
    return len(split) == 1 and math.prod(n_after[: split[0]]) == 1


def _padded(problem: Problem, step: ReduceScatter, after: Layout) -> int:
    """Elements of the block cut into G equal pieces (the block itself unless a dim held
    whole does not divide)."""
    n_after = after.local_shape(problem.mesh, problem.shape)
    return math.prod(n * math.prod(problem.mesh.size(a) for a in new)
                     for n, new in zip(n_after, step.axes, strict=True))


def padding_bytes(problem: Problem, step: ReduceScatter, before: Layout,
                  after: Layout) -> int:
    """The pad up to G equal pieces, beyond both blocks."""
    lb = math.prod(before.local_shape(problem.mesh, problem.shape))
    return max(0, _padded(problem, step, after) - lb) * problem.itemsize


def smt_rule(mesh: Mesh, shape: tuple[int, ...], sv: V.StepVars, lv: V.LayoutVars,
             nx: V.LayoutVars) -> z3.BoolRef:
    return V.appended(mesh, shape, sv.reduce_dim, lv, nx, V.PENDING)


def smt_extents(mesh: Mesh, shape: tuple[int, ...], sv: V.StepVars, lv: V.LayoutVars,
                nx: V.LayoutVars) -> list[z3.BoolRef]:
    return V.appended_extents(mesh, shape, sv.reduce_dim, lv)


def smt_listed(mesh: Mesh, step: ReduceScatter, lv: V.LayoutVars, nx: V.LayoutVars,
               rank: int) -> list[z3.BoolRef]:
    return V.appended_listed(mesh, step.axes, lv, nx)


def smt_pin(mesh: Mesh, sv: V.StepVars, step: ReduceScatter | None) -> list[z3.BoolRef]:
    return V.appended_pin(mesh, sv.reduce_dim, step.axes if step else None)


def load(p: Problem, step: ReduceScatter, before: Layout, after: Layout) -> Load:
    """Cost model, in place (runtime/reduce.py): one Reduce_scatter_block where the pieces
    lie in group order, else one per chunk (each part of every piece packed into the
    scratch)."""
    g = math.prod(p.mesh.size(a) for a in flat(step.axes))
    n_after = after.local_shape(p.mesh, p.shape)
    out = math.prod(n_after)
    wire = (g - 1) * out * p.itemsize
    if split_contiguous(tuple(n_after), step.axes):
        return Load("reduce_scatter", g - 1, wire, group=g)
    per_call = max(1, chunk_elements(math.prod(before.local_shape(p.mesh, p.shape))) // g)
    calls = -(-out // per_call)
    return Load("reduce_scatter", calls * (g - 1), wire,
                copies=p.local_bytes(before) + p.local_bytes(after), group=g)


RULE = OpRule(
    name="reduce_scatter", cls=ReduceScatter, portable=True,
    named_axes=lambda step: flat(step.axes), names=lambda step: flat(step.axes),
    map_names=map_per_dim, reshape=reshape, check_extents=check_extents, source=source,
    volume=volume, working_bytes=working_bytes,
    padding_bytes=padding_bytes,
    to_json=per_dim_to_json, from_json=per_dim_from_json(ReduceScatter),
    describe=describe_per_dim, smt_kind=V.REDUCE_SCATTER, smt_rule=smt_rule,
    smt_extents=smt_extents, smt_listed=smt_listed, smt_pin=smt_pin, load=load,
    summed=lambda step: flat(step.axes), addend=addend)
