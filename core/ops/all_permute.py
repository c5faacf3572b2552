"""`all_permute` (DESIGN §2, generalising the paper's allpermute): any layout with the
same local shape; each device sends its whole block to one device and receives one; a
device that already holds its new block keeps it. L·s bytes if its block changes."""

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
    check_target,
    counts_valid,
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
from redist.core.ops.load import Load, chunk_messages
from redist.core.semantics.algebra import Algebra
from redist.core.semantics.blocks import changed_count
from redist.core.semantics.working import chunk_elements
from redist.core.smt import symvars as V


@dataclass(frozen=True)
class AllPermute:
    layout: Layout
    op = "all_permute"


def check_extents(step: AllPermute, mesh: Mesh, shape: tuple[int, ...], before: Layout,
                  after: Layout, show: Any) -> None:
    check_target(step, mesh, shape, after)
    # Same number of blocks per dim (with divisible extents: the same local shape), so
    # every block is held and needed by equally many devices: a permutation.
    have = tuple(before.shards(mesh, d) for d in range(before.rank))
    want = tuple(after.shards(mesh, d) for d in range(after.rank))
    if have != want:
        fmt = show or (lambda lay: lay)
        raise TypingError(f"all_permute: {fmt(after)} has {want} blocks per dim, "
                          f"{fmt(before)} has {have}: local shapes "
                          f"{after.local_shape(mesh, shape)} and "
                          f"{before.local_shape(mesh, shape)}")


def source(step: AllPermute, mesh: Mesh, shape: tuple[int, ...], before: Layout,
           after: Layout, coords: Coords, index: Index, alg: Algebra) -> tuple[Coords, Index]:
    # Canonical holder of the block we need: its coordinates on the axes sharded before
    # are the digits of our new block; on axes replicated before, our own. A device that
    # already holds its new block is its own canonical holder.
    src_c = dict(coords)
    for d in range(after.rank):
        need = mixed_radix(mesh, after.dims[d], coords)
        src_c.update(digits(mesh, before.dims[d], need, alg))
    return src_c, list(index)


def volume(problem: Problem, step: AllPermute, before: Layout, after: Layout,
           valid: bool = True) -> int:
    if counts_valid(problem, before, after, valid):
        return received_bytes(problem, before, after)
    lb = math.prod(before.local_shape(problem.mesh, problem.shape)) * problem.itemsize
    return changed_count(problem.mesh, before, after) * lb


def working_bytes(problem: Problem, step: AllPermute, before: Layout, after: Layout) -> int:
    """The block + one chunk (if any device's block changes)."""
    lb = math.prod(before.local_shape(problem.mesh, problem.shape))
    moves = changed_count(problem.mesh, before, after) > 0
    return (lb + chunk_elements(lb) if moves else lb) * problem.itemsize


def smt_extents(mesh: Mesh, shape: tuple[int, ...], sv: V.StepVars, lv: V.LayoutVars,
                nx: V.LayoutVars) -> list[z3.BoolRef]:
    """A permute keeps the number of blocks per dim: compare the extents a virtual array of
    one element per device would have (exact divisions, so equal iff equal products). Any
    well-formed layout may follow otherwise."""
    devices = mesh.num_devices
    return [V.local_extent(mesh, devices, lv, d) == V.local_extent(mesh, devices, nx, d)
            for d in range(len(shape))]


def load(p: Problem, step: AllPermute, before: Layout, after: Layout) -> Load:
    """Cost model, in place (runtime/execute.py _permute): the block in chunk messages, a
    memmove after."""
    if not changed_count(p.mesh, before, after):
        return Load("all_permute", 0, 0, group=p.mesh.num_devices, steps=0)
    n = math.prod(before.local_shape(p.mesh, p.shape))
    lb = p.local_bytes(before)
    return Load("all_permute", chunk_messages(n, n), lb, copies=lb, group=p.mesh.num_devices)


RULE = OpRule(
    name="all_permute", cls=AllPermute, portable=True,
    named_axes=lambda step: (), names=lambda step: step.layout.used_axes() + step.layout.sum,
    map_names=map_target, reshape=retarget, check_extents=check_extents, source=source,
    volume=volume, working_bytes=working_bytes, padding_bytes=no_bytes,
    to_json=layout_to_json, from_json=layout_from_json(AllPermute), describe=describe_target,
    smt_kind=V.PERMUTE, smt_rule=None, smt_extents=smt_extents, smt_listed=smt_target,
    smt_pin=pin_nothing, load=load)
