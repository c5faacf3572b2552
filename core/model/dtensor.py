"""PyTorch DTensor specs as redist meshes and layouts, recognised by shape (no torch import).

A DeviceMesh of shape (s_0, s_1, ...) with dim names (or m0, m1, ... when unnamed) is the
mesh; placements give one entry per mesh dim: Shard(d) puts that mesh dim on tensor dim d,
Replicate() on none. Several mesh dims on one tensor dim split it in mesh-dim order (the
first is major), DTensor's default, unless a `shard_order` says otherwise. Partial("sum")
on a mesh dim makes it a pending-sum axis (DESIGN §14); other reductions and
_StridedShard are not supported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from redist.core.errors import RedistError
from redist.core.model.layout import Layout
from redist.core.model.mesh import Mesh


def mesh_names(device_mesh: Any) -> tuple[str, ...]:
    names = getattr(device_mesh, "mesh_dim_names", None)
    ndim = len(tuple(device_mesh.mesh.shape))
    return tuple(names) if names else tuple(f"m{i}" for i in range(ndim))


def mesh_from_device_mesh(device_mesh: Any) -> Mesh:
    ranks = device_mesh.mesh.flatten().tolist()
    if ranks != sorted(ranks) or ranks != list(range(ranks[0], ranks[0] + len(ranks))):
        raise RedistError("DeviceMesh ranks must be numbered row-major (torch.arange(n) "
                          f"reshaped); this one is {ranks[:8]}...")
    shape = tuple(int(s) for s in device_mesh.mesh.shape)
    return Mesh(tuple(zip(mesh_names(device_mesh), shape, strict=True)))


def layout_from_placements(placements: Sequence[Any], device_mesh: Any, rank: int | None,
                           shard_order: Mapping[int, Sequence[int]] | None = None) -> Layout:
    """`shard_order`: for a tensor dim, the mesh dims that shard it, major first (when it
    is not mesh-dim order)."""
    if device_mesh is None:
        raise RedistError("DTensor placements need their DeviceMesh (pass mesh=...)")
    names = mesh_names(device_mesh) if not isinstance(device_mesh, Mesh) else device_mesh.names
    if len(placements) != len(names):
        raise RedistError(f"{len(placements)} placements for a mesh of {len(names)} dims")
    by_dim: dict[int, list[int]] = {}
    pending: list[str] = []
    for i, p in enumerate(placements):
        kind = type(p).__name__
        if kind == "Replicate":
            continue
        if kind == "Shard":
            by_dim.setdefault(int(p.dim), []).append(i)
            continue
        if kind == "Partial":
            op = str(getattr(p, "reduce_op", "sum"))
            if op != "sum":
                raise RedistError(f"placement {i} is Partial({op!r}): only pending sums "
                                  "(Partial('sum')) are supported")
            pending.append(names[i])
            continue
        raise RedistError(f"placement {i} is {kind}: not supported yet (Shard, Replicate)")
    if rank is None:
        rank = max(by_dim, default=-1) + 1
    for d, mesh_dims in (shard_order or {}).items():
        if sorted(mesh_dims) != sorted(by_dim.get(int(d), [])):
            raise RedistError(f"shard_order for tensor dim {d} names mesh dims {list(mesh_dims)}"
                              f", the placements shard it over {by_dim.get(int(d), [])}")
        by_dim[int(d)] = list(mesh_dims)
    dims = []
    for d in range(rank):
        dims.append(tuple(names[i] for i in by_dim.get(d, [])))
    extra = [d for d in by_dim if not 0 <= d < rank]
    if extra:
        raise RedistError(f"Shard({extra[0]}) is out of range for a tensor of rank {rank}")
    return Layout(tuple(dims), tuple(pending))


def placements_of(layout: Layout, mesh: Mesh) -> tuple[tuple[str, int | None], ...]:
    """Per mesh axis, ("shard", tensor dim), ("partial", None) or ("replicate", None) (raises
    if a dim or the pending sum uses sub-axes)."""
    out = []
    for a in mesh.names:
        d = layout.dim_of(a)
        out.append(("partial", None) if a in layout.sum else
                   ("replicate", None) if d is None else ("shard", d))
    for dim in (*layout.dims, layout.sum):
        for a in dim:
            if not mesh.has(a):
                raise RedistError(f"{a} is a sub-axis: DTensor placements cannot express it")
    return tuple(out)
