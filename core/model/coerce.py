"""Meshes and layouts from what users already have: redist values, text, Python tuples,
and (recognised by shape, without importing either library) JAX's `Mesh`,
`PartitionSpec` and `NamedSharding`, and PyTorch DTensor's `DeviceMesh` with placements.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redist.core.errors import RedistError
from redist.core.model.layout import Layout
from redist.core.model.mesh import Mesh
from redist.core.model.problem import Problem
from redist.core.model.syntax import layout_from_value, parse_layout, parse_mesh, parse_shape


def _kind(value: Any) -> str:
    return type(value).__name__


def _is_partition_spec(value: Any) -> bool:
    t = type(value)
    return t.__name__ in ("PartitionSpec", "P") and t.__module__.startswith("jax")


def as_mesh(value: Any) -> Mesh:
    if isinstance(value, Mesh):
        return value
    if isinstance(value, str):
        return parse_mesh(value)
    if hasattr(value, "axis_names") and hasattr(value, "devices"):          # jax Mesh
        return Mesh(tuple((str(n), int(s)) for n, s in
                          zip(value.axis_names, value.devices.shape, strict=True)))
    if hasattr(value, "mesh_dim_names") and hasattr(value, "mesh"):         # DeviceMesh
        from redist.core.model.dtensor import mesh_from_device_mesh
        return mesh_from_device_mesh(value)
    if hasattr(value, "mesh") and hasattr(value, "spec"):                   # NamedSharding
        return as_mesh(value.mesh)
    raise RedistError(f"cannot use a {_kind(value)} as a mesh (a Mesh, 'x=2,y=4', a "
                      "jax.sharding.Mesh or a torch DeviceMesh)")


def layout_from_spec(spec: Any, rank: int | None = None) -> Layout:
    """A jax PartitionSpec: per dim None, an axis name, or a tuple of names (major first);
    missing trailing dims are replicated; its `unreduced` axes (JAX versions that have
    them) are the pending sum."""
    dims = []
    # A spec with unreduced axes refuses plain iteration: its dims are `partitions`.
    for d, entry in enumerate(getattr(spec, "partitions", spec)):
        if entry is None:
            dims.append(())
        elif isinstance(entry, str):
            dims.append((entry,))
        elif isinstance(entry, (tuple, list)) and all(isinstance(a, str) for a in entry):
            dims.append(tuple(entry))
        else:
            raise RedistError(f"PartitionSpec dim {d}: {entry!r:.40} is not None, an axis "
                              "name or a tuple of names (unconstrained dims are not "
                              "supported: name the axes)")
    if rank is not None:
        if len(dims) > rank:
            raise RedistError(f"PartitionSpec {spec} has {len(dims)} entries for an array of "
                              f"rank {rank}")
        dims += [()] * (rank - len(dims))
    pending = getattr(spec, "unreduced", None) or ()
    if not all(isinstance(a, str) for a in pending):
        raise RedistError(f"PartitionSpec unreduced {set(pending)!r:.40} is not a set of axis "
                          "names")
    return Layout(tuple(dims), tuple(pending))


def as_layout(value: Any, rank: int | None = None, mesh: Any = None) -> Layout:
    """A layout from any accepted form; `rank` pads a short PartitionSpec, `mesh` gives
    DTensor placements their mesh dims."""
    if isinstance(value, Layout):
        return value
    if isinstance(value, str):
        return parse_layout(value)
    if _is_partition_spec(value):
        return layout_from_spec(value, rank)
    if hasattr(value, "spec") and hasattr(value, "mesh"):                   # NamedSharding
        return layout_from_spec(value.spec, rank)
    if isinstance(value, Sequence) and value and all(
            _kind(p) in ("Shard", "Replicate", "Partial", "_StridedShard") for p in value):
        from redist.core.model.dtensor import layout_from_placements
        return layout_from_placements(value, mesh, rank)
    if isinstance(value, (list, tuple)):
        return layout_from_value(value)
    raise RedistError(f"cannot use a {_kind(value)} as a layout (a Layout, '[{{x}},{{}}]', a "
                      "tuple form, a jax PartitionSpec or NamedSharding, or DTensor placements)")


def as_shape(value: Any) -> tuple[int, ...]:
    """A shape from `"4096,4096"` or a sequence of integers (NumPy integers too)."""
    if isinstance(value, str):
        return parse_shape(value)
    if not isinstance(value, Sequence) or isinstance(value, (bytes, bytearray)):
        raise RedistError(f"cannot use a {_kind(value)} as a shape (a tuple of integers or "
                          "'4096,4096')")
    out = []
    for n in value:
        if isinstance(n, bool) or not hasattr(n, "__index__"):
            raise RedistError(f"shape entry {n!r:.40} is not an integer")
        out.append(n.__index__())
    return tuple(out)


def problem(mesh: Any, shape: Any, dtype: Any, src: Any, dst: Any) -> Problem:
    """A Problem from any accepted forms of mesh, shape and layouts (and a dtype name or
    object)."""
    m = _naming("mesh", as_mesh, mesh)
    dims = _naming("shape", as_shape, shape)
    name = getattr(dtype, "name", None) or (dtype if isinstance(dtype, str) else str(dtype))
    return Problem(m, dims, name, _naming("src", as_layout, src, len(dims), mesh),
                   _naming("dst", as_layout, dst, len(dims), mesh))


def _naming(argument: str, fn: Any, *args: Any) -> Any:
    """fn(*args), its error prefixed with the argument it is about."""
    try:
        return fn(*args)
    except RedistError as e:
        raise RedistError(f"{argument}: {e}") from None
