"""A verified plan as one `shard_map` over the user's own JAX mesh (DESIGN §12).

The program runs on the mesh exactly as the user built it (`jax.make_mesh` with Explicit
axes, Auto axes, `jax.sharding.Mesh`, or the abstract mesh of a traced array): no second
mesh is made for sub-axes, since an array typed on Explicit axes cannot cross into a mesh
with other axis names. Every collective names all of the mesh's axes and selects its
groups with `axis_index_groups`: the groups of §2 over the plan's atoms, each ordered by
the mixed-radix number of the step's axes, in device ids (row-major over the mesh, which
is the linear index of the tuple of all axis names).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from redist.core.errors import RedistError
from redist.core.model.layout import Layout
from redist.core.model.mesh import Mesh
from redist.core.ops import AllGather, AllPermute, AllSlice, AllToAll
from redist.core.ops.common import mixed_radix
from redist.core.plans.plan import Plan
from redist.core.semantics.blocks import device_coords, permute_sources


def partition_spec(layout: Layout) -> P:
    """None for a replicated dim, a name for one axis, a tuple (major first) for several."""
    return P(*[None if not d else d[0] if len(d) == 1 else tuple(d) for d in layout.dims])


@lru_cache(maxsize=1024)
def groups(mesh: Mesh, axes: tuple[str, ...]) -> tuple[tuple[int, ...], ...]:
    """The device groups of a collective over `axes` (atoms), each in mixed-radix order."""
    rank = _block_table(mesh, axes)
    color = _block_table(mesh, tuple(a for a in mesh.names if a not in axes))
    size = math.prod(mesh.size(a) for a in axes)
    out = [[0] * size for _ in range(mesh.num_devices // size)]
    for dev in range(mesh.num_devices):
        out[int(color[dev])][int(rank[dev])] = dev
    return tuple(tuple(g) for g in out)


def _block_table(mesh: Mesh, axes: tuple[str, ...]) -> np.ndarray:
    """Every device's block number on `axes` (its place in its group)."""
    table = mixed_radix(mesh, axes, device_coords(mesh))     # 0 when axes is empty
    return np.broadcast_to(np.asarray(table, dtype=np.int32), (mesh.num_devices,))


def _pad_to(x: Any, d: int, n: int) -> Any:
    if x.shape[d] >= n:
        return x
    pad = [(0, 0)] * x.ndim
    pad[d] = (0, n - x.shape[d])
    return jnp.pad(x, pad)


def _jax_slice(step: AllSlice, mesh: Mesh, names: tuple[str, ...], before: Layout,
               after: Layout, n_after: tuple[int, ...], me: Callable[[], Any]):
    cuts = [(d, _block_table(mesh, new)) for d, new in enumerate(step.axes) if new]

    def run(x):
        for d, table in cuts:
            # A dim held whole may be shorter than its pieces: pad its last ones.
            x = _pad_to(x, d, n_after[d] * (int(table.max()) + 1))
            at = jnp.asarray(table)[me()] * n_after[d]
            x = jax.lax.dynamic_slice_in_dim(x, at, n_after[d], axis=d)
        return x
    return run


def _jax_gather(step: AllGather, mesh: Mesh, names: tuple[str, ...], before: Layout,
                after: Layout, n_after: tuple[int, ...], me: Callable[[], Any]):
    # One tiled gather per dim, straight into that dim, minor dims first (as XLA
    # does): no full-size temporary and no transpose of the gathered array.
    gathers = [(d, groups(mesh, gone)) for d, gone in enumerate(step.axes) if gone]

    def run(x):
        for d, grp in reversed(gathers):
            x = jax.lax.all_gather(x, names, axis=d, tiled=True,
                                   axis_index_groups=[list(g) for g in grp])
            if x.shape[d] > n_after[d]:          # gathered into a dim held whole
                x = jax.lax.slice_in_dim(x, 0, n_after[d], axis=d)
        return x
    return run


def _jax_all_to_all(step: AllToAll, mesh: Mesh, names: tuple[str, ...], before: Layout,
                    after: Layout, n_after: tuple[int, ...], me: Callable[[], Any]):
    s, t = step.src_dim, step.dst_dim
    grp = groups(mesh, step.axes)
    g = len(grp[0])

    def run(x):
        x = _pad_to(x, t, g * n_after[t])        # dst_dim held whole: pad it
        # dst_dim as (member, piece); exchange along the member axis; then the member
        # axis goes major into src_dim. XLA fuses that reorder with the concatenation
        # of the received pieces and writes the output once, as in its own reshard
        # (a tiled all_to_all leaves a full-size concatenation temporary: 4.00x the
        # bound per device instead of XLA's 3.88x on 8 devices).
        shp = x.shape
        y = x.reshape(shp[:t] + (g, shp[t] // g) + shp[t + 1:])
        y = jax.lax.all_to_all(y, names, split_axis=t, concat_axis=t, tiled=False,
                               axis_index_groups=[list(gr) for gr in grp])
        y = jnp.moveaxis(y, t, s)                # just before src_dim's own axis
        merged = list(shp)
        merged[t] //= g
        merged[s] *= g
        y = y.reshape(merged)
        if y.shape[s] > n_after[s]:              # src_dim held whole: keep N
            y = jax.lax.slice_in_dim(y, 0, n_after[s], axis=s)
        return y
    return run


def _jax_permute(step: AllPermute, mesh: Mesh, names: tuple[str, ...], before: Layout,
                 after: Layout, n_after: tuple[int, ...], me: Callable[[], Any]):
    sources = permute_sources(mesh, before, after)
    if all(src == dst for dst, src in enumerate(sources)):
        return lambda x: x
    # ppermute zeroes a device nobody sends to: a device keeping its block sends to
    # itself (XLA moves nothing for it).
    pairs = [(src, dst) for dst, src in enumerate(sources)]
    return lambda x: jax.lax.ppermute(x, names, perm=pairs)


# One function per op (core/ops), returning the per-device function of the step; None:
# the op has no portable JAX form (plans for JAX use --collectives portable).
STEPS: dict[str, Callable[..., Callable[[Any], Any]] | None] = {
    "all_slice": _jax_slice,
    "all_gather": _jax_gather,
    "all_to_all": _jax_all_to_all,
    "all_permute": _jax_permute,
    "all_exchange": None,
}


def _step_fn(plan: Plan, k: int, names: tuple[str, ...], before: Layout, after: Layout):
    """The per-device function of step k (buffers padded to the local shape)."""
    mesh, shape = plan.problem.mesh, plan.problem.shape
    step = plan.steps[k]
    run = STEPS[step.op]
    if run is None:
        raise RedistError(f"{step.op} has no portable JAX form")

    def me():
        return jax.lax.axis_index(names)

    return run(step, mesh, names, before, after, after.local_shape(mesh, shape), me)


def check_mesh(plan: Plan, mesh: Any) -> None:
    """The plan's mesh must be the JAX mesh's axes, in order (names and sizes)."""
    base = plan.problem.base
    assert base is not None
    have = tuple((str(n), int(s)) for n, s in zip(mesh.axis_names, mesh.axis_sizes,
                                                   strict=True))
    if have != base.axes:
        raise RedistError(f"the plan is for mesh {base}, not for the JAX mesh "
                          f"{','.join(f'{n}={s}' for n, s in have)}")


def program(plan: Plan, mesh: Any, in_spec: P | None = None, out_spec: P | None = None):
    """The global function src -> dst: a shard_map over `mesh` (a jax Mesh or
    AbstractMesh) whose body runs the plan's steps, one collective per gathered dim or
    step; traceable inside the user's jit and grad. `in_spec`/`out_spec` are the user's
    own PartitionSpecs of src and dst when they differ in form only (a size-1 axis named):
    an Explicit mesh types arrays by the spec as written."""
    check_mesh(plan, mesh)
    p = plan.problem
    lays = plan.layouts()
    names = tuple(mesh.axis_names)
    steps = [_step_fn(plan, k, names, lays[k], lays[k + 1]) for k in range(len(plan.steps))]

    def local(x):
        for fn in steps:
            x = fn(x)
        return x
    return jax.shard_map(local, mesh=mesh,
                         in_specs=in_spec or partition_spec(p.show(p.src)),
                         out_specs=out_spec or partition_spec(p.show(p.dst)), check_vma=False)
