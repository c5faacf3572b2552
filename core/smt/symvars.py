"""Symbolic layouts and steps for the SMT encodings (DESIGN §2, §11): the variables, and
the terms each op's symbolic rule (core/ops) and the checks built on them share.

A layout is encoded per mesh axis a as D[a] (its dim, -1 when replicated, -2 when a
pending-sum axis, DESIGN §14) and P[a] (its position in that dim, major = 0). A step is
encoded by its kind and per-axis parameters. Problems without pending sums never see -2
nor the reductions' kinds: their constraints are the ones they always were (certificates
hash them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from functools import lru_cache

import z3

from redist.core.model.layout import Layout
from redist.core.model.mesh import Mesh

NOOP, SLICE, GATHER, A2A, PERMUTE, EXCHANGE, REDUCE_SCATTER, ALL_REDUCE = range(8)
PENDING = -2                            # D[a] of a pending-sum axis


@dataclass(frozen=True)
class LayoutVars:
    D: dict[str, z3.ArithRef]
    P: dict[str, z3.ArithRef]
    # terms over these variables asked for again and again (count_in, local_extent): the
    # same terms either way, built once
    _memo: dict = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class StepVars:
    kind: z3.ArithRef
    slice_dim: dict[str, z3.ArithRef]     # -1: not sliced
    gathered: dict[str, z3.BoolRef]
    moved: dict[str, z3.BoolRef]
    src_dim: z3.ArithRef
    dst_dim: z3.ArithRef
    reduce_dim: dict[str, z3.ArithRef]    # -1: not reduce-scattered (DESIGN §14)
    allreduced: dict[str, z3.BoolRef]


def layout_vars(mesh: Mesh, tag: str) -> LayoutVars:
    return LayoutVars({a: z3.Int(f"D_{tag}_{a}") for a in mesh.names},
                      {a: z3.Int(f"P_{tag}_{a}") for a in mesh.names})


def step_vars(mesh: Mesh, tag: str) -> StepVars:
    return StepVars(z3.Int(f"kind_{tag}"),
                    {a: z3.Int(f"slice_{tag}_{a}") for a in mesh.names},
                    {a: z3.Bool(f"gather_{tag}_{a}") for a in mesh.names},
                    {a: z3.Bool(f"move_{tag}_{a}") for a in mesh.names},
                    z3.Int(f"src_{tag}"), z3.Int(f"dst_{tag}"),
                    {a: z3.Int(f"reduce_{tag}_{a}") for a in mesh.names},
                    {a: z3.Bool(f"allreduce_{tag}_{a}") for a in mesh.names})


def layout_facts(mesh: Mesh, lv: LayoutVars, layout: Layout) -> list[z3.BoolRef]:
    """Pin symbolic layout variables to a concrete layout."""
    out = []
    for a in mesh.names:
        d = layout.dim_of(a)
        out.append(lv.D[a] == (PENDING if a in layout.sum else -1 if d is None else d))
        out.append(lv.P[a] == (0 if d is None else layout.dims[d].index(a)))
    return out


def count_in(mesh: Mesh, lv: LayoutVars, d: z3.ArithRef | int) -> z3.ArithRef:
    key = ("count", mesh, d if isinstance(d, int) else d.get_id())
    if key not in lv._memo:
        lv._memo[key] = z3.Sum([z3.If(lv.D[a] == d, 1, 0) for a in mesh.names]) \
            if mesh.names else z3.IntVal(0)
    return lv._memo[key]


def local_extent(mesh: Mesh, extent: int, lv: LayoutVars, d: int) -> z3.ArithRef:
    """c_d = ceil(N_d / S_d) as a term: ceil division by one concrete axis size at a time
    (ceil(ceil(N/a)/b) = ceil(N/(a·b)), so the order does not matter), which keeps the
    arithmetic linear."""
    key = ("extent", mesh, extent, d)
    if key in lv._memo:
        return lv._memo[key]
    n: z3.ArithRef = z3.IntVal(extent)
    exact = extent % mesh.num_devices == 0      # every split exact: plain division
    for a, size in mesh.axes:
        if size > 1:
            n = z3.If(lv.D[a] == d, (n if exact else n + (size - 1)) / size, n)
    lv._memo[key] = n
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


# Rules are built once per mesh and shape over template variables, then instantiated per
# layout or step by z3.substitute (in C): the same terms as building them anew (z3 shares
# equal terms, so the SMT-LIB text is identical), without steps x axes^2 Python calls per
# plan.
TEMPLATE = "tmpl~"


def pairs(template, actual) -> list[tuple[z3.ExprRef, z3.ExprRef]]:
    """(template variable, actual variable) for z3.substitute, over LayoutVars/StepVars."""
    out = []
    for f in fields(template):
        if f.name.startswith("_"):
            continue
        t, a = getattr(template, f.name), getattr(actual, f.name)
        out += [(t[k], a[k]) for k in t] if isinstance(t, dict) else [(t, a)]
    return out


@lru_cache(maxsize=32)
def _wellformed_template(mesh: Mesh, shape: tuple[int, ...], pending: bool):
    lv = layout_vars(mesh, TEMPLATE)
    return lv, _wellformed(mesh, shape, lv, pending)


def wellformed(mesh: Mesh, shape: tuple[int, ...], lv: LayoutVars,
               pending: bool = False) -> list[z3.BoolRef]:
    """Axes in range, positions 0..m-1 in each dim (DESIGN §1). Any extent is allowed:
    uneven ones pad (§11). `pending`: an axis may also be a pending-sum axis (§14)."""
    tlv, rules = _wellformed_template(mesh, tuple(shape), pending)
    subst = pairs(tlv, lv)
    return [z3.substitute(r, *subst) if subst else r for r in rules]


def _wellformed(mesh: Mesh, shape: tuple[int, ...], lv: LayoutVars,
                pending: bool) -> list[z3.BoolRef]:
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
    (ops.common.nests): their product divides `coarse` (one exact division per axis), or
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


def same(lv: LayoutVars, nx: LayoutVars, a: str) -> z3.BoolRef:
    return z3.And(nx.D[a] == lv.D[a], nx.P[a] == lv.P[a])


def suffix_closed(mesh: Mesh, lv: LayoutVars, flag: dict[str, z3.BoolRef]) -> list[z3.BoolRef]:
    """The flagged axes of a dim form its minor-most suffix: an axis after a flagged one
    in the same dim is flagged."""
    names = mesh.names
    return [z3.Implies(z3.And(flag[a], lv.D[b] == lv.D[a], lv.P[b] > lv.P[a]), flag[b])
            for a in names for b in names if a != b]


# Steps that append axes minor-most to a dim (all_slice from replicated axes,
# reduce_scatter from pending ones): `target[a]` is the dim axis a lands in (-1: none),
# `was` the D value it must come from.

def appended(mesh: Mesh, shape: tuple[int, ...], target: dict[str, z3.ArithRef],
             lv: LayoutVars, nx: LayoutVars, was: int) -> z3.BoolRef:
    names, rank = mesh.names, len(shape)
    return z3.And(
        z3.Or(*[target[a] >= 0 for a in names]),
        *[z3.If(target[a] >= 0,
                z3.And(target[a] < rank, lv.D[a] == was, nx.D[a] == target[a],
                       *[z3.Implies(target[a] == d, nx.P[a] >= count_in(mesh, lv, d))
                         for d in range(rank)]),
                z3.And(target[a] == -1, same(lv, nx, a)))
          for a in names])


def appended_extents(mesh: Mesh, shape: tuple[int, ...], target: dict[str, z3.ArithRef],
                     lv: LayoutVars) -> list[z3.BoolRef]:
    """Extents (§11): the appended axes split the dim they land in."""
    return [nests(mesh, local_extent(mesh, shape[d], lv, d), shape[d],
                  {a: target[a] == d for a in mesh.names}) for d in range(len(shape))]


def appended_listed(mesh: Mesh, per_dim: tuple[tuple[str, ...], ...], lv: LayoutVars,
                    nx: LayoutVars) -> list[z3.BoolRef]:
    """The listed axes are appended to their dim, in order."""
    return [f for d, axes in enumerate(per_dim) for j, a in enumerate(axes)
            for f in (nx.D[a] == d, nx.P[a] == count_in(mesh, lv, d) + j)]


def appended_pin(mesh: Mesh, target: dict[str, z3.ArithRef],
                 per_dim: tuple[tuple[str, ...], ...] | None) -> list[z3.BoolRef]:
    where = {a: d for d, axes in enumerate(per_dim) for a in axes} if per_dim else {}
    return [target[a] == where.get(a, -1) for a in mesh.names]
