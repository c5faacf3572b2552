"""PyTorch DTensor specs to and from redist (optional: `pip install 'redist[torch]'`; the
rest of redist never imports torch).

    from redist.dtensor import layout_of, to_placements
    plan = redist.synthesize(mesh=device_mesh, shape=t.shape, dtype="float32",
                             src=[Shard(0), Replicate()], dst=[Replicate(), Shard(1)])

A DeviceMesh is a redist mesh with its dim names (m0, m1, ... when unnamed); placements
say, per mesh dim, which tensor dim it shards (Shard(d)) or none (Replicate()). Several
mesh dims on one tensor dim split it in mesh-dim order (DTensor's default) unless the
spec's `shard_order` gives another. Partial("sum") on a mesh dim is a pending sum over
that axis (DESIGN §14). Clear errors: other reductions, _StridedShard, and sub-axes
(DTensor cannot name part of a mesh dim).
"""

from __future__ import annotations

from typing import Any

from torch.distributed.tensor import Partial, Replicate, Shard

from redist.core.errors import RedistError
from redist.core.model.dtensor import layout_from_placements, mesh_from_device_mesh
from redist.core.model.layout import Layout
from redist.core.model.mesh import Mesh

__all__ = ["mesh_from_device_mesh", "layout_from_placements", "layout_of", "to_placements"]


def layout_of(dtensor: Any) -> Layout:
    """The layout of a DTensor (its placements and shard order on its mesh)."""
    spec = getattr(dtensor, "_spec", None)
    order = getattr(spec, "shard_order", None) or ()
    shard_order = {int(e.tensor_dim): tuple(int(m) for m in e.mesh_dims) for e in order}
    return layout_from_placements(dtensor.placements, dtensor.device_mesh, dtensor.ndim,
                                  shard_order or None)


def to_placements(layout: Layout, mesh: Mesh | Any) -> tuple[tuple, dict[int, tuple[int, ...]]]:
    """(placements, shard_order): one placement per mesh dim, and for each tensor dim whose
    mesh dims are not in mesh-dim order, that order (major first)."""
    m = mesh if isinstance(mesh, Mesh) else mesh_from_device_mesh(mesh)
    index = {a: i for i, a in enumerate(m.names)}
    placements: list[Any] = [Replicate()] * len(m.names)
    order: dict[int, tuple[int, ...]] = {}
    for d, dim in enumerate(layout.dims):
        for a in dim:
            if a not in index:
                raise RedistError(f"{a} is not a mesh dim (sub-axes have no DTensor placement)")
            placements[index[a]] = Shard(d)
        dims = tuple(index[a] for a in dim)
        if list(dims) != sorted(dims):
            order[d] = dims
    for a in layout.sum:
        if a not in index:
            raise RedistError(f"{a} is not a mesh dim (sub-axes have no DTensor placement)")
        placements[index[a]] = Partial("sum")
    return tuple(placements), order
