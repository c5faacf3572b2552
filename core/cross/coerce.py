"""Placed meshes and two-mesh problems from what users have (DESIGN §15): text, redist
values, a jax.sharding.Mesh (its devices' ids are the ranks) or a torch DeviceMesh (its
mesh tensor holds the ranks), recognised by shape without importing either library."""

from __future__ import annotations

from typing import Any

from redist.core.errors import RedistError
from redist.core.model.coerce import as_layout, as_mesh, as_shape
from redist.core.model.mesh import Mesh

from .model import CrossProblem, PlacedMesh, parse_placed_mesh


def as_placed_mesh(value: Any) -> PlacedMesh:
    if isinstance(value, PlacedMesh):
        return value
    if isinstance(value, str):
        return parse_placed_mesh(value)
    if isinstance(value, Mesh):
        return PlacedMesh.default(value)
    if hasattr(value, "axis_names") and hasattr(value, "devices"):          # jax Mesh
        return PlacedMesh(as_mesh(value), tuple(int(d.id) for d in value.devices.flat))
    if hasattr(value, "mesh_dim_names") and hasattr(value, "mesh"):         # DeviceMesh
        # Its ranks in any order: that order is the placement (a one-mesh DeviceMesh must
        # be row-major, a placed one need not).
        from redist.core.model.dtensor import mesh_names
        shape = tuple(int(s) for s in value.mesh.shape)
        return PlacedMesh(Mesh(tuple(zip(mesh_names(value), shape, strict=True))),
                          tuple(int(r) for r in value.mesh.flatten().tolist()))
    raise RedistError(f"cannot use a {type(value).__name__} as a placed mesh ('x=2@0-1', a "
                      "PlacedMesh, a Mesh, a jax.sharding.Mesh or a torch DeviceMesh)")


def between(src_mesh: Any, dst_mesh: Any, shape: Any, dtype: Any, src: Any, dst: Any,
            world: int | None = None) -> CrossProblem:
    """A two-mesh problem from values in any accepted form; a bad one is a RedistError
    naming the argument."""
    a = _naming("src_mesh", as_placed_mesh, src_mesh)
    b = _naming("dst_mesh", as_placed_mesh, dst_mesh)
    shape = _naming("shape", as_shape, shape)
    src = _naming("src", lambda v: as_layout(v, len(shape), _placements_mesh(src_mesh, a)),
                  src)
    dst = _naming("dst", lambda v: as_layout(v, len(shape), _placements_mesh(dst_mesh, b)),
                  dst)
    return CrossProblem(a, b, shape, getattr(dtype, "name", dtype), src, dst, world)


def _naming(argument: str, fn: Any, value: Any) -> Any:
    try:
        return fn(value)
    except RedistError as e:
        raise RedistError(f"{argument}: {e}") from None


def _placements_mesh(value: Any, placed: PlacedMesh) -> Any:
    """What DTensor placements need to name their mesh dims: the DeviceMesh itself."""
    return value if hasattr(value, "mesh_dim_names") else placed.mesh
