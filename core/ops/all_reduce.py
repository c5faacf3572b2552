"""`all_reduce` (DESIGN §14): the listed axes leave the pending set; the dims are unchanged;
every device receives the sum over its group of its whole block. 2(G−1)/G·L·s bytes
received per device, the bandwidth-optimal all-reduce (a reduce-scatter and an
all-gather)."""

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
    braces,
    expect,
    json_names,
)
from redist.core.ops.load import Load
from redist.core.semantics.algebra import Algebra
from redist.core.semantics.blocks import block_ranges
from redist.core.smt import symvars as V


@dataclass(frozen=True)
class AllReduce:
    axes: tuple[str, ...]
    op = "all_reduce"


def reshape(step: AllReduce, before: Layout) -> Layout:
    if not step.axes:
        raise TypingError("all_reduce: names no axes")
    if len(set(step.axes)) != len(step.axes):
        raise TypingError("all_reduce: an axis is listed twice")
    for a in step.axes:
        if a not in before.sum:
            raise TypingError(f"all_reduce: axis {a!r} is not a pending-sum axis (pending "
                              f"axes {braces(before.sum)})")
    return Layout(before.dims, tuple(a for a in before.sum if a not in step.axes))


def check_extents(step: AllReduce, mesh: Mesh, shape: tuple[int, ...], before: Layout,
                  after: Layout, show: Any) -> None:
    """Any extent: the block is reduced whole."""


def addend(step: AllReduce, mesh: Mesh, shape: tuple[int, ...], before: Layout,
           after: Layout, coords: Coords, index: Index, k: Coords,
           alg: Algebra) -> tuple[Coords, Index]:
    """Member k of the group contributes the element at the same local index."""
    src_c = dict(coords)
    src_c.update({a: k[a] for a in step.axes})
    return src_c, list(index)


def source(step: AllReduce, mesh: Mesh, shape: tuple[int, ...], before: Layout,
           after: Layout, coords: Coords, index: Index, alg: Algebra) -> tuple[Coords, Index]:
    return dict(coords), list(index)


def volume(problem: Problem, step: AllReduce, before: Layout, after: Layout,
           valid: bool = True) -> int:
    """2(G−1)/G of the block per device (counted as 2(G−1)·L/G, rounded down when G does
    not divide L: what a ring moves of the valid elements)."""
    g = math.prod(problem.mesh.size(a) for a in step.axes)
    if valid:
        lo, hi = block_ranges(problem.mesh, problem.shape, before)
        held = np.prod(hi - lo, axis=1)
        elements = int((2 * (g - 1) * held // g).sum())
    else:
        lb = math.prod(before.local_shape(problem.mesh, problem.shape))
        elements = problem.mesh.num_devices * (2 * (g - 1) * lb // g)
    return elements * problem.itemsize


def working_bytes(problem: Problem, step: AllReduce, before: Layout, after: Layout) -> int:
    """In place (MPI_IN_PLACE Allreduce): the block."""
    return math.prod(before.local_shape(problem.mesh, problem.shape)) * problem.itemsize


def smt_rule(mesh: Mesh, shape: tuple[int, ...], sv: V.StepVars, lv: V.LayoutVars,
             nx: V.LayoutVars) -> z3.BoolRef:
    names = mesh.names
    return z3.And(
        z3.Or(*[sv.allreduced[a] for a in names]),
        *[z3.If(sv.allreduced[a], z3.And(lv.D[a] == V.PENDING, nx.D[a] == -1, nx.P[a] == 0),
                V.same(lv, nx, a)) for a in names])


def smt_listed(mesh: Mesh, step: AllReduce, lv: V.LayoutVars, nx: V.LayoutVars,
               rank: int) -> list[z3.BoolRef]:
    return [lv.D[a] == V.PENDING for a in step.axes]


def smt_pin(mesh: Mesh, sv: V.StepVars, step: AllReduce | None) -> list[z3.BoolRef]:
    gone = set(step.axes) if step else set()
    return [sv.allreduced[a] == (a in gone) for a in mesh.names]


def to_json(step: AllReduce, problem: Problem) -> dict[str, Any]:
    return {"op": step.op, "axes": list(problem.show_axes(step.axes))}


def from_json(js: dict[str, Any], where: str) -> AllReduce:
    expect("axes" in js, f"{where} (all_reduce): missing 'axes'")
    return AllReduce(json_names(js["axes"], f"{where} (all_reduce) axes"))


def load(p: Problem, step: AllReduce, before: Layout, after: Layout) -> Load:
    """Cost model: a recursive-doubling-like reduction of the block (2 log2 g rounds,
    2 (g-1)/g of it on the wire)."""
    g = math.prod(p.mesh.size(a) for a in step.axes)
    rounds = 2 * math.ceil(math.log2(g)) if g > 1 else 0
    return Load("all_reduce", rounds, 2 * (g - 1) * p.local_bytes(before) // g, group=g)


RULE = OpRule(
    name="all_reduce", cls=AllReduce, portable=True,
    named_axes=lambda step: step.axes, names=lambda step: step.axes,
    map_names=lambda step, f: AllReduce(f(step.axes)), reshape=reshape,
    check_extents=check_extents, source=source, volume=volume,
    working_bytes=working_bytes, padding_bytes=lambda problem, step, before, after: 0,
    to_json=to_json, from_json=from_json,
    describe=lambda step, show: f"all_reduce {braces(show(step.axes))}",
    smt_kind=V.ALL_REDUCE, smt_rule=smt_rule, smt_extents=None, smt_listed=smt_listed,
    smt_pin=smt_pin, load=load, summed=lambda step: step.axes, addend=addend)
