"""`all_to_all` (DESIGN §2): `axes`, the minor-most suffix of `src_dim`, move in order to
the minor-most end of `dst_dim`; the group gathers src_dim and splits dst_dim.
(G−1)/G·L·s bytes received per device."""

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
    Names,
    OpRule,
    braces,
    counts_valid,
    digits,
    expect,
    json_int,
    json_names,
    mixed_radix,
    nest_error,
    nests,
    received_bytes,
    suffix_ok,
)
from redist.core.ops.load import Load, chunk_messages
from redist.core.semantics.algebra import Algebra
from redist.core.semantics.working import chunk_elements
from redist.core.smt import symvars as V


@dataclass(frozen=True)
class AllToAll:
    src_dim: int
    dst_dim: int
    axes: tuple[str, ...]
    op = "all_to_all"


def reshape(step: AllToAll, before: Layout) -> Layout:
    s, t = step.src_dim, step.dst_dim
    for name, d in (("src_dim", s), ("dst_dim", t)):
        if not 0 <= d < before.rank:
            raise TypingError(f"all_to_all: {name} {d} is out of range for rank "
                              f"{before.rank}")
    if s == t:
        raise TypingError("all_to_all: src_dim and dst_dim must differ")
    if len(set(step.axes)) != len(step.axes):
        raise TypingError("all_to_all: an axis is listed twice")
    if not suffix_ok(before.dims[s], step.axes):
        raise TypingError(f"all_to_all: {braces(step.axes)} is not the minor-most "
                          f"suffix of src_dim {s} {braces(before.dims[s])}")
    dims = list(before.dims)
    dims[s] = before.dims[s][: len(before.dims[s]) - len(step.axes)]
    dims[t] = before.dims[t] + step.axes
    return Layout(tuple(dims))


def check_extents(step: AllToAll, mesh: Mesh, shape: tuple[int, ...], before: Layout,
                  after: Layout, show: Any) -> None:
    g = math.prod(mesh.size(a) for a in step.axes)
    s, t = step.src_dim, step.dst_dim
    coarse_src = after.local_shape(mesh, shape)[s]
    if not nests(coarse_src, g, shape[s]):
        raise nest_error("all_to_all", "src_dim", s, coarse_src, g, shape[s])
    local_dst = before.local_shape(mesh, shape)[t]
    if not nests(local_dst, g, shape[t]):
        raise nest_error("all_to_all", "dst_dim", t, local_dst, g, shape[t])


def source(step: AllToAll, mesh: Mesh, shape: tuple[int, ...], before: Layout,
           after: Layout, coords: Coords, index: Index, alg: Algebra) -> tuple[Coords, Index]:
    n_before = before.local_shape(mesh, shape)
    n_after = after.local_shape(mesh, shape)
    s, t = step.src_dim, step.dst_dim
    src_c, src_i = dict(coords), list(index)
    # src_dim is gathered from the group; dst_dim keeps the piece named by our own
    # coordinates on the moved axes.
    src_c.update(digits(mesh, step.axes, alg.div(index[s], n_before[s]), alg))
    src_i[s] = alg.mod(index[s], n_before[s])
    src_i[t] = mixed_radix(mesh, step.axes, coords) * n_after[t] + index[t]
    return src_c, src_i


def _sizes(problem: Problem, step: AllToAll, before: Layout,
           after: Layout) -> tuple[int, int, int]:
    """(G, elements of the block before, elements of the padded exchange buffer)."""
    n_b = before.local_shape(problem.mesh, problem.shape)
    n_a = after.local_shape(problem.mesh, problem.shape)
    g = math.prod(problem.mesh.size(a) for a in step.axes)
    lb, t = math.prod(n_b), step.dst_dim
    return g, lb, (lb // n_b[t] * (g * n_a[t]) if n_b[t] else 0)


def volume(problem: Problem, step: AllToAll, before: Layout, after: Layout,
           valid: bool = True) -> int:
    if counts_valid(problem, before, after, valid):
        return received_bytes(problem, before, after)
    # Each device keeps one of its g pieces and receives g - 1; a piece is the block with
    # dst_dim cut to its (padded) extent after the step.
    local = before.local_shape(problem.mesh, problem.shape)
    lb = math.prod(local) * problem.itemsize
    g = math.prod(problem.mesh.size(a) for a in step.axes)
    piece = lb // local[step.dst_dim] * after.local_shape(problem.mesh,
                                                          problem.shape)[step.dst_dim]
    return problem.mesh.num_devices * (g - 1) * piece


def working_bytes(problem: Problem, step: AllToAll, before: Layout, after: Layout) -> int:
    """The block (padded in place when dst_dim is held whole) + one chunk."""
    _, lb, padded = _sizes(problem, step, before, after)
    return (max(lb, padded) + chunk_elements(padded)) * problem.itemsize


def padding_bytes(problem: Problem, step: AllToAll, before: Layout, after: Layout) -> int:
    """G equal (padded) pieces into a dim held whole, trimmed after."""
    _, lb, padded = _sizes(problem, step, before, after)
    la = math.prod(after.local_shape(problem.mesh, problem.shape))
    return max(0, padded - max(lb, la)) * problem.itemsize


def to_json(step: AllToAll, problem: Problem) -> dict[str, Any]:
    return {"op": step.op, "src_dim": step.src_dim, "dst_dim": step.dst_dim,
            "axes": list(problem.show_axes(step.axes))}


def from_json(js: dict[str, Any], where: str) -> AllToAll:
    for key in ("src_dim", "dst_dim", "axes"):
        expect(key in js, f"{where} (all_to_all): missing {key!r}")
    return AllToAll(json_int(js["src_dim"], f"{where} src_dim"),
                    json_int(js["dst_dim"], f"{where} dst_dim"),
                    json_names(js["axes"], f"{where} (all_to_all) axes"))


def map_names(step: AllToAll, f: Names) -> AllToAll:
    return AllToAll(step.src_dim, step.dst_dim, f(step.axes))


def describe(step: AllToAll, show: Names) -> str:
    return f"all_to_all {braces(show(step.axes))} dim {step.src_dim}->{step.dst_dim}"


def smt_rule(mesh: Mesh, shape: tuple[int, ...], sv: V.StepVars, lv: V.LayoutVars,
             nx: V.LayoutVars) -> z3.BoolRef:
    names, rank = mesh.names, len(shape)
    m = z3.Sum([z3.If(sv.moved[a], 1, 0) for a in names])
    return z3.And(
        sv.src_dim >= 0, sv.src_dim < rank, sv.dst_dim >= 0, sv.dst_dim < rank,
        sv.src_dim != sv.dst_dim, m >= 1,
        *V.suffix_closed(mesh, lv, sv.moved),
        *[z3.If(sv.moved[a],
                z3.And(lv.D[a] == sv.src_dim, nx.D[a] == sv.dst_dim,
                       nx.P[a] == V.count_in(mesh, lv, sv.dst_dim) + lv.P[a]
                       - (V.count_in(mesh, lv, sv.src_dim) - m)),
                V.same(lv, nx, a)) for a in names])


def smt_extents(mesh: Mesh, shape: tuple[int, ...], sv: V.StepVars, lv: V.LayoutVars,
                nx: V.LayoutVars) -> list[z3.BoolRef]:
    """Extents (§11): the coarser src_dim after it and the dst_dim before it both split."""
    rank = len(shape)
    return [z3.Implies(sv.src_dim == d, V.nests(mesh, V.local_extent(mesh, shape[d], nx, d),
                                                shape[d], sv.moved)) for d in range(rank)] + \
        [z3.Implies(sv.dst_dim == d, V.nests(mesh, V.local_extent(mesh, shape[d], lv, d),
                                             shape[d], sv.moved)) for d in range(rank)]


def smt_listed(mesh: Mesh, step: AllToAll, lv: V.LayoutVars, nx: V.LayoutVars,
               rank: int) -> list[z3.BoolRef]:
    """The moved list is the minor-most suffix of src_dim, in order."""
    m = len(step.axes)
    return [f for j, a in enumerate(step.axes)
            for f in (lv.D[a] == step.src_dim,
                      lv.P[a] == V.count_in(mesh, lv, step.src_dim) - m + j)]


def smt_pin(mesh: Mesh, sv: V.StepVars, step: AllToAll | None) -> list[z3.BoolRef]:
    moved = set(step.axes) if step else set()
    return [sv.moved[a] == (a in moved) for a in mesh.names] + \
        [sv.src_dim == (step.src_dim if step else 0), sv.dst_dim == (step.dst_dim if step else 0)]


def load(p: Problem, step: AllToAll, before: Layout, after: Layout) -> Load:
    """Cost model, in place (runtime/execute.py _all_to_all_inplace): a block transpose
    into send order, g - 1 pairwise swaps of a piece in chunk messages, a transpose into
    output order."""
    g = math.prod(p.mesh.size(a) for a in step.axes)
    s, t = step.src_dim, step.dst_dim
    shape = list(before.local_shape(p.mesh, p.shape))
    piece_t = after.local_shape(p.mesh, p.shape)[t]
    shape[t] = g * piece_t                      # dst_dim held whole: padded to g pieces
    block = math.prod(shape)
    piece = block // g
    piece_shape = shape[:t] + [piece_t] + shape[t + 1:]
    # A transpose is a no-op where the pieces already lie in order (one row of them).
    passes = (math.prod(shape[:t]) > 1) + (math.prod(piece_shape[:s]) > 1)
    wire = (g - 1) * piece * p.itemsize
    # Each swap ends with a memmove of what it received (one chunk down).
    return Load("all_to_all", (g - 1) * chunk_messages(piece, block), wire, copies=wire,
                transposes=passes * block * p.itemsize, group=g)


RULE = OpRule(
    name="all_to_all", cls=AllToAll, portable=True,
    named_axes=lambda step: step.axes, names=lambda step: step.axes,
    map_names=map_names, reshape=reshape, check_extents=check_extents, source=source,
    volume=volume, working_bytes=working_bytes, padding_bytes=padding_bytes,
    to_json=to_json, from_json=from_json, describe=describe,
    smt_kind=V.A2A, smt_rule=smt_rule, smt_extents=smt_extents, smt_listed=smt_listed,
    smt_pin=smt_pin, load=load)
