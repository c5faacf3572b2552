"""The typing rules of DESIGN §2 and §11 as SMT constraints over symbolic layouts.

A layout is encoded per mesh axis a as D[a] (its dim, -1 when replicated, -2 when a
pending-sum axis, DESIGN §14) and P[a] (its position in that dim, major = 0). Problems
without pending sums never see -2: their constraints are the ones they always were. A
step is encoded by its kind and per-axis parameters. The same constraints check a
concrete plan (claim 1, parameters pinned to the plan's values) and synthesize plans
(`optimal`, parameters left free).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import z3

from redist.core.model.layout import Layout
from redist.core.model.mesh import Mesh
from redist.core.semantics.collectives import (
    AllExchange,
    AllGather,
    AllPermute,
    AllSlice,
    AllToAll,
    Collective,
)

NOOP, SLICE, GATHER, A2A, PERMUTE, EXCHANGE = range(6)
PENDING = -2                            # D[a] of a pending-sum axis


@dataclass(frozen=True)
class LayoutVars:
    D: dict[str, z3.ArithRef]
    P: dict[str, z3.ArithRef]


@dataclass(frozen=True)
class StepVars:
    kind: z3.ArithRef
    slice_dim: dict[str, z3.ArithRef]     # -1: not sliced
    gathered: dict[str, z3.BoolRef]
    moved: dict[str, z3.BoolRef]
    src_dim: z3.ArithRef
    dst_dim: z3.ArithRef


def layout_vars(mesh: Mesh, tag: str) -> LayoutVars:
    return LayoutVars({a: z3.Int(f"D_{tag}_{a}") for a in mesh.names},
                      {a: z3.Int(f"P_{tag}_{a}") for a in mesh.names})


def step_vars(mesh: Mesh, tag: str) -> StepVars:
    return StepVars(z3.Int(f"kind_{tag}"),
                    {a: z3.Int(f"slice_{tag}_{a}") for a in mesh.names},
                    {a: z3.Bool(f"gather_{tag}_{a}") for a in mesh.names},
                    {a: z3.Bool(f"move_{tag}_{a}") for a in mesh.names},
                    z3.Int(f"src_{tag}"), z3.Int(f"dst_{tag}"))


def layout_facts(mesh: Mesh, lv: LayoutVars, layout: Layout) -> list[z3.BoolRef]:
    """Pin symbolic layout variables to a concrete layout."""
    out = []
    for a in mesh.names:
        d = layout.dim_of(a)
        out.append(lv.D[a] == (PENDING if a in layout.sum else -1 if d is None else d))
        out.append(lv.P[a] == (0 if d is None else layout.dims[d].index(a)))
    return out


def step_facts(mesh: Mesh, rank: int, sv: StepVars, step: Collective | None) -> list[z3.BoolRef]:
    """Pin symbolic step variables to a concrete step (None = noop)."""
    names = mesh.names
    kind = {type(None): NOOP, AllSlice: SLICE, AllGather: GATHER, AllToAll: A2A,
            AllPermute: PERMUTE, AllExchange: EXCHANGE}[type(step)]
    out = [sv.kind == kind]
    sliced = {a: d for d, axes in enumerate(step.axes) for a in axes} \
        if isinstance(step, AllSlice) else {}
    gone = {a for axes in step.axes for a in axes} if isinstance(step, AllGather) else set()
    moved = set(step.axes) if isinstance(step, AllToAll) else set()
    out += [sv.slice_dim[a] == sliced.get(a, -1) for a in names]
    out += [sv.gathered[a] == (a in gone) for a in names]
    out += [sv.moved[a] == (a in moved) for a in names]
    out.append(sv.src_dim == (step.src_dim if isinstance(step, AllToAll) else 0))
    out.append(sv.dst_dim == (step.dst_dim if isinstance(step, AllToAll) else 0))
    return out


def count_in(mesh: Mesh, lv: LayoutVars, d: z3.ArithRef | int) -> z3.ArithRef:
    return z3.Sum([z3.If(lv.D[a] == d, 1, 0) for a in mesh.names]) if mesh.names else \
        z3.IntVal(0)


def local_extent(mesh: Mesh, extent: int, lv: LayoutVars, d: int) -> z3.ArithRef:
    """c_d = ceil(N_d / S_d) as a term: ceil division by one concrete axis size at a time
    (ceil(ceil(N/a)/b) = ceil(N/(a·b)), so the order does not matter), which keeps the
    arithmetic linear."""
    n: z3.ArithRef = z3.IntVal(extent)
    exact = extent % mesh.num_devices == 0      # every split exact: plain division
    for a, size in mesh.axes:
        if size > 1:
            n = z3.If(lv.D[a] == d, (n if exact else n + (size - 1)) / size, n)
    return n


def local_size(mesh: Mesh, shape: tuple[int, ...], lv: LayoutVars) -> z3.ArithRef:
    """Local (padded) elements. When every extent is divisible by every product of axes
    this is the total divided by each sharded axis (linear); otherwise the product of the
    per-dim padded extents."""
    total = math.prod(shape)
    if all(n % mesh.num_devices == 0 for n in shape):
        size: z3.ArithRef = z3.IntVal(total)
        for a, s in mesh.axes:
            if s > 1:
                size = z3.If(lv.D[a] >= 0, size / s, size)
        return size
    out: z3.ArithRef = z3.IntVal(1)
    for d, n in enumerate(shape):
        out = out * local_extent(mesh, n, lv, d)
    return out


def wellformed(mesh: Mesh, shape: tuple[int, ...], lv: LayoutVars,
               pending: bool = False) -> list[z3.BoolRef]:
    """Axes in range, positions 0..m-1 in each dim (DESIGN §1). Any extent is allowed:
    uneven ones pad (§11). `pending`: an axis may also be a pending-sum axis (§14)."""
    rank = len(shape)
    out = []
    names = mesh.names
    for a in names:
        out.append(z3.And(lv.D[a] >= (PENDING if pending else -1), lv.D[a] < rank))
        in_range = [z3.Implies(lv.D[a] == d, z3.And(lv.P[a] >= 0, lv.P[a] < count_in(mesh, lv, d)))
                    for d in range(rank)]
        if pending:
            in_range.append(z3.Implies(lv.D[a] == PENDING, lv.P[a] == 0))
        out.append(z3.And(z3.Implies(lv.D[a] == -1, lv.P[a] == 0), *in_range))
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            out.append(z3.Implies(z3.And(lv.D[a] == lv.D[b], lv.D[a] >= 0), lv.P[a] != lv.P[b]))
    return out


def nests(mesh: Mesh, coarse: z3.ArithRef, extent: int,
          split: dict[str, z3.BoolRef]) -> z3.BoolRef:
    """The blocks of padded extent `coarse` split locally by the axes flagged in `split`
    (collectives.nests): their product divides `coarse` (one exact division per axis), or
    the dim is held whole. Always true when the extent is divisible by every product."""
    if extent % mesh.num_devices == 0:
        return z3.BoolVal(True)
    exact = []
    n = coarse
    for a, size in mesh.axes:
        if size > 1:
            exact.append(z3.Implies(split[a], n % size == 0))
            n = z3.If(split[a], n / size, n)
    return z3.Or(z3.And(*exact), coarse >= extent)


def _same(lv: LayoutVars, nx: LayoutVars, a: str) -> z3.BoolRef:
    return z3.And(nx.D[a] == lv.D[a], nx.P[a] == lv.P[a])


def transition(mesh: Mesh, shape: tuple[int, ...], sv: StepVars, lv: LayoutVars,
               nx: LayoutVars) -> z3.BoolRef:
    """The typing rule of the step `sv` relating layout `lv` to the next layout `nx`
    (both assumed well-formed, which carries the divisibility side conditions)."""
    names = mesh.names
    rank = len(shape)
    if not names or rank == 0:
        # Nothing can be sliced, gathered or moved; a permute or exchange is the identity.
        return z3.And(z3.Or(sv.kind == NOOP, sv.kind == PERMUTE, sv.kind == EXCHANGE),
                      *[_same(lv, nx, a) for a in names])
    noop = z3.And(*[_same(lv, nx, a) for a in names])
    sl = z3.And(
        z3.Or(*[sv.slice_dim[a] >= 0 for a in names]),
        *[z3.If(sv.slice_dim[a] >= 0,
                z3.And(sv.slice_dim[a] < rank, lv.D[a] == -1, nx.D[a] == sv.slice_dim[a],
                       *[z3.Implies(sv.slice_dim[a] == d, nx.P[a] >= count_in(mesh, lv, d))
                         for d in range(rank)]),
                z3.And(sv.slice_dim[a] == -1, _same(lv, nx, a)))
          for a in names])

    def suffix_closed(flag: dict[str, z3.BoolRef]) -> list[z3.BoolRef]:
        return [z3.Implies(z3.And(flag[a], lv.D[b] == lv.D[a], lv.P[b] > lv.P[a]), flag[b])
                for a in names for b in names if a != b]

    ga = z3.And(
        z3.Or(*[sv.gathered[a] for a in names]),
        *suffix_closed(sv.gathered),
        *[z3.If(sv.gathered[a], z3.And(lv.D[a] >= 0, nx.D[a] == -1, nx.P[a] == 0),
                _same(lv, nx, a)) for a in names])
    m = z3.Sum([z3.If(sv.moved[a], 1, 0) for a in names])
    a2a = z3.And(
        sv.src_dim >= 0, sv.src_dim < rank, sv.dst_dim >= 0, sv.dst_dim < rank,
        sv.src_dim != sv.dst_dim, m >= 1,
        *suffix_closed(sv.moved),
        *[z3.If(sv.moved[a],
                z3.And(lv.D[a] == sv.src_dim, nx.D[a] == sv.dst_dim,
                       nx.P[a] == count_in(mesh, lv, sv.dst_dim) + lv.P[a]
                       - (count_in(mesh, lv, sv.src_dim) - m)),
                _same(lv, nx, a)) for a in names])
    # Extents (§11): every split must nest. Slices split the dim they land in; gathers
    # split (in reverse) the coarser layout after them; an all-to-all both.
    sl = z3.And(sl, *[nests(mesh, local_extent(mesh, shape[d], lv, d), shape[d],
                            {a: sv.slice_dim[a] == d for a in names}) for d in range(rank)])
    ga = z3.And(ga, *[nests(mesh, local_extent(mesh, shape[d], nx, d), shape[d],
                            {a: z3.And(sv.gathered[a], lv.D[a] == d) for a in names})
                      for d in range(rank)])
    a2a = z3.And(a2a, *[z3.Implies(
        sv.src_dim == d, nests(mesh, local_extent(mesh, shape[d], nx, d), shape[d],
                               sv.moved)) for d in range(rank)],
        *[z3.Implies(sv.dst_dim == d, nests(mesh, local_extent(mesh, shape[d], lv, d),
                                            shape[d], sv.moved)) for d in range(rank)])
    # A permute keeps the number of blocks per dim: compare the extents a virtual array of
    # one element per device would have (exact divisions, so equal iff equal products).
    devices = mesh.num_devices
    perm = z3.And(*[local_extent(mesh, devices, lv, d) == local_extent(mesh, devices, nx, d)
                    for d in range(rank)])
    return z3.And(z3.Implies(sv.kind == NOOP, noop), z3.Implies(sv.kind == SLICE, sl),
                  z3.Implies(sv.kind == GATHER, ga), z3.Implies(sv.kind == A2A, a2a),
                  z3.Implies(sv.kind == PERMUTE, perm),
                  sv.kind >= NOOP, sv.kind <= EXCHANGE)


def same_layout(mesh: Mesh, lv: LayoutVars, nx: LayoutVars) -> z3.BoolRef:
    return z3.And(*[_same(lv, nx, a) for a in mesh.names])


def listed_order(mesh: Mesh, step: Collective, lv: LayoutVars,
                 nx: LayoutVars, rank: int) -> list[z3.BoolRef]:
    """What a concrete step's axis *lists* add to its rule: the dim each list names and the
    order within it (a gathered or moved list is the minor-most suffix in order; sliced
    axes are appended in order); a permute or exchange names its target layout."""
    if isinstance(step, (AllPermute, AllExchange)):
        target = step.layout
        used = target.used_axes()
        if target.rank != rank or len(set(used)) != len(used) or \
                any(a not in nx.D for a in used):
            return [z3.BoolVal(False)]      # no layout of this array and mesh
        return layout_facts(mesh, nx, target)
    named = [a for axes in step.axes for a in (axes if isinstance(axes, tuple) else (axes,))] \
        if isinstance(step, (AllGather, AllSlice, AllToAll)) else []
    if any(a not in lv.D for a in named):
        return [z3.BoolVal(False)]          # an axis the mesh lacks satisfies no rule
    out = []
    if isinstance(step, (AllGather, AllSlice)):
        for d, axes in enumerate(step.axes):
            m = len(axes)
            for j, a in enumerate(axes):
                if isinstance(step, AllGather):
                    out += [lv.D[a] == d, lv.P[a] == count_in(mesh, lv, d) - m + j]
                else:
                    out += [nx.D[a] == d, nx.P[a] == count_in(mesh, lv, d) + j]
    elif isinstance(step, AllToAll):
        m = len(step.axes)
        for j, a in enumerate(step.axes):
            out += [lv.D[a] == step.src_dim,
                    lv.P[a] == count_in(mesh, lv, step.src_dim) - m + j]
    return out
