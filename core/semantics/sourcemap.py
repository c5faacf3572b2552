"""Element semantics of the collectives, written once (DESIGN §2).

Each collective is a *source map*: for a device c (coordinates per axis) and a local
index i after the step, the device c' and local index i' before the step that the
value comes from. Sizes and layouts are concrete; coordinates and indices are values
of an Algebra (NumPy arrays, ints or z3 terms), so one definition serves the simulator,
the solver and the runtime's tests.
"""

from __future__ import annotations

from typing import Any

from redist.core.model.layout import Layout
from redist.core.model.mesh import Mesh
from redist.core.semantics.algebra import Algebra
from redist.core.semantics.collectives import (
    AllExchange,
    AllGather,
    AllPermute,
    AllSlice,
    AllToAll,
    Collective,
)

Coords = dict[str, Any]
Index = list[Any]


def mixed_radix(mesh: Mesh, axes: tuple[str, ...], coords: Coords) -> Any:
    """Σ_j c[a_j]·Π_{l>j}|a_l| — the block number of `coords` on `axes` (major first)."""
    v: Any = 0
    for a in axes:
        v = v * mesh.size(a) + coords[a]
    return v


def digits(mesh: Mesh, axes: tuple[str, ...], value: Any, alg: Algebra) -> Coords:
    """Inverse of mixed_radix for 0 <= value < Π|a|."""
    out: Coords = {}
    stride = 1
    for a in reversed(axes):
        out[a] = alg.mod(alg.div(value, stride), mesh.size(a))
        stride *= mesh.size(a)
    return out


def global_index(mesh: Mesh, shape: tuple[int, ...], layout: Layout, coords: Coords,
                 index: Index) -> Index:
    """g_d = b_d(c)·c_d + i_d for every dim d (c_d the padded local extent; the element is
    valid, not padding, iff g_d < N_d in every dim)."""
    local = layout.local_shape(mesh, shape)
    return [mixed_radix(mesh, layout.dims[d], coords) * local[d] + index[d]
            for d in range(layout.rank)]


def source(step: Collective, mesh: Mesh, shape: tuple[int, ...], before: Layout,
           after: Layout, coords: Coords, index: Index, alg: Algebra) -> tuple[Coords, Index]:
    """Where (device, local index) after `step` gets its value from, before `step`."""
    n_before = before.local_shape(mesh, shape)
    n_after = after.local_shape(mesh, shape)
    src_c = dict(coords)
    src_i = list(index)
    if isinstance(step, AllSlice):
        # Keep the sub-block picked by the new axes: offset by its position.
        for d, new in enumerate(step.axes):
            if new:
                src_i[d] = mixed_radix(mesh, new, coords) * n_after[d] + index[d]
    elif isinstance(step, AllGather):
        # Piece k of the gathered dim comes from the group member whose block is k.
        for d, gone in enumerate(step.axes):
            if gone:
                src_c.update(digits(mesh, gone, alg.div(index[d], n_before[d]), alg))
                src_i[d] = alg.mod(index[d], n_before[d])
    elif isinstance(step, AllToAll):
        s, t = step.src_dim, step.dst_dim
        # src_dim is gathered from the group; dst_dim keeps the piece named by our own
        # coordinates on the moved axes.
        src_c.update(digits(mesh, step.axes, alg.div(index[s], n_before[s]), alg))
        src_i[s] = alg.mod(index[s], n_before[s])
        src_i[t] = mixed_radix(mesh, step.axes, coords) * n_after[t] + index[t]
    elif isinstance(step, AllPermute):
        # Canonical holder of the block we need: its coordinates on the axes sharded
        # before are the digits of our new block; on axes replicated before, our own.
        # A device that already holds its new block is its own canonical holder.
        for d in range(after.rank):
            need = mixed_radix(mesh, after.dims[d], coords)
            src_c.update(digits(mesh, before.dims[d], need, alg))
    elif isinstance(step, AllExchange):
        # Element by element: the block holding global index g before is g // c_before;
        # its canonical holder as for a permute (our own coordinates on the axes replicated
        # before, so a device that held the element is its own source).
        for d in range(after.rank):
            g = mixed_radix(mesh, after.dims[d], coords) * n_after[d] + index[d]
            src_c.update(digits(mesh, before.dims[d], alg.div(g, n_before[d]), alg))
            src_i[d] = alg.mod(g, n_before[d])
    return src_c, src_i
