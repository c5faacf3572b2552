"""Verified plans inside JAX/XLA (DESIGN §12). Optional: `pip install 'redist[jax]'`; the
rest of redist never imports JAX.

    from redist.jax import reshard
    y = reshard(x, NamedSharding(mesh, P(None, "y")))     # == jax.device_put(x, ...)

A plan becomes one jitted `shard_map` over the mesh (refined into atoms when the plan
uses sub-axes) with one `jax.lax` collective per step: all_slice is a dynamic slice at
`axis_index`, all_gather an `all_gather`, all_to_all an `all_to_all` over the tuple of
axes in mixed-radix order, all_permute a `ppermute` with the DESIGN §2 pairing. Plans
that do not verify are refused before anything is compiled. Compiled programs are cached
per plan, mesh and donation. Uneven extents are padded to the blocks' padded extent
around the shard_map (XLA decides how to move the padding).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh as JaxMesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from redist.core.errors import RedistError
from redist.core.model.coerce import as_layout, as_mesh, layout_from_spec
from redist.core.model.layout import Layout
from redist.core.model.mesh import Mesh
from redist.core.model.problem import Problem
from redist.core.plans.plan import Plan
from redist.core.semantics.blocks import permute_sources
from redist.core.semantics.collectives import (
    AllExchange,
    AllGather,
    AllPermute,
    AllSlice,
    AllToAll,
)

__all__ = ["reshard", "plan_for", "compile_plan", "mesh_from_jax", "layout_from_spec",
           "to_partition_spec", "to_named_sharding", "to_jax_mesh"]


def mesh_from_jax(mesh: JaxMesh) -> Mesh:
    return as_mesh(mesh)


def to_partition_spec(layout: Layout) -> P:
    """None for a replicated dim, a name for one axis, a tuple (major first) for several."""
    return P(*[None if not d else d[0] if len(d) == 1 else tuple(d) for d in layout.dims])


def to_jax_mesh(mesh: Mesh, devices: Any = None) -> JaxMesh:
    """A jax Mesh with redist's row-major device order (devices[d] is device d)."""
    devs = np.asarray(jax.devices() if devices is None else devices, dtype=object)
    if devs.size != mesh.num_devices:
        raise RedistError(f"mesh {mesh} has {mesh.num_devices} devices, {devs.size} given")
    shape = tuple(s for _, s in mesh.axes) or (1,)
    names = mesh.names or ("_",)
    return JaxMesh(devs.reshape(shape), names)


def to_named_sharding(mesh: JaxMesh, layout: Layout) -> NamedSharding:
    return NamedSharding(mesh, to_partition_spec(layout))


def plan_for(x: jax.Array, dst: Any, method: str = "normal", budget: int | None = None
             ) -> Plan:
    """The verified plan that takes x's sharding to `dst` (a NamedSharding, PartitionSpec or
    layout on x's mesh); RedistError if no plan verifies."""
    from redist.api import synthesize

    src_sharding = x.sharding
    if not isinstance(src_sharding, NamedSharding):
        raise RedistError(f"x must have a NamedSharding, not {type(src_sharding).__name__}")
    jmesh = src_sharding.mesh
    if isinstance(dst, NamedSharding) and dst.mesh != jmesh:
        raise RedistError("the dst sharding must be on x's mesh")
    problem = Problem(mesh_from_jax(jmesh), tuple(x.shape), jnp.dtype(x.dtype).name,
                      layout_from_spec(src_sharding.spec, x.ndim), as_layout(dst, x.ndim))
    result = synthesize(problem, method=method, budget=budget)
    if not result.verified:
        failed = "; ".join(f"{r.claim} {r.status}" for r in result.verdict.results
                           if r.status != "proved")
        raise RedistError(f"refusing to compile an unverified plan ({failed})"
                          + (f": {result.reason}" if result.reason else ""))
    if any(isinstance(s, AllExchange) for s in result.plan.steps):
        raise RedistError("all_exchange is an MPI step; JAX runs portable plans only")
    return result.plan


def _atom_mesh(jmesh: JaxMesh, problem: Problem) -> JaxMesh:
    """x's mesh, or the same devices reshaped into the plan's atoms (sub-axes)."""
    if problem.mesh.axes == problem.base.axes:
        return jmesh
    shape = tuple(s for _, s in problem.mesh.axes) or (1,)
    names = problem.mesh.names or ("_",)
    return JaxMesh(np.asarray(jmesh.devices).reshape(shape), names)


def _spec(layout: Layout) -> P:
    return P(*[tuple(d) if d else None for d in layout.dims])


def _axis(axes: tuple[str, ...]) -> Any:
    return axes[0] if len(axes) == 1 else tuple(axes)


def _step_fn(plan: Plan, k: int, before: Layout, after: Layout):
    """The per-device function of one step (buffers padded to the local shape)."""
    p = plan.problem
    mesh, shape = p.mesh, p.shape
    step = plan.steps[k]
    n_before = before.local_shape(mesh, shape)
    n_after = after.local_shape(mesh, shape)
    if isinstance(step, AllSlice):
        def run(x):
            for d, new in enumerate(step.axes):
                if new:
                    idx = jax.lax.axis_index(_axis(new))
                    need = n_after[d] * math.prod(mesh.size(a) for a in new)
                    if x.shape[d] < need:        # a dim held whole: pad its last pieces
                        pad = [(0, 0)] * x.ndim
                        pad[d] = (0, need - x.shape[d])
                        x = jnp.pad(x, pad)
                    x = jax.lax.dynamic_slice_in_dim(x, idx * n_after[d], n_after[d], axis=d)
            return x
        return run
    if isinstance(step, AllGather):
        gathers = [(d, gone) for d, gone in enumerate(step.axes) if gone]
        sizes = [math.prod(mesh.size(a) for a in gone) for gone in step.axes]
        dims = [d for d, _ in gathers]
        axes = tuple(a for _, gone in gathers for a in gone)

        def run(x):
            if len(gathers) == 1:                      # straight into its dim
                d, gone = gathers[0]
                y = jax.lax.all_gather(x, _axis(gone), axis=d, tiled=True)
            else:
                # One all-gather over every gathered axis (dim order) into a new leading
                # axis, then each member's block to its place: its digits over the per-dim
                # groups give the block position in each dim.
                y = jax.lax.all_gather(x, _axis(axes), axis=0, tiled=False)
                y = y.reshape(tuple(sizes[d] for d in dims) + x.shape)
                order = []
                for d in range(x.ndim):
                    if d in dims:
                        order.append(dims.index(d))
                    order.append(len(dims) + d)
                y = jnp.transpose(y, order).reshape(
                    tuple(x.shape[d] * sizes[d] for d in range(x.ndim)))
            if y.shape != tuple(n_after):              # gathered into a dim held whole
                y = y[tuple(slice(0, n) for n in n_after)]
            return y
        return run
    if isinstance(step, AllToAll):
        s, t = step.src_dim, step.dst_dim
        g = math.prod(mesh.size(a) for a in step.axes)

        def run(x):
            if x.shape[t] < g * n_after[t]:           # dst_dim held whole: pad it
                pad = [(0, 0)] * x.ndim
                pad[t] = (0, g * n_after[t] - x.shape[t])
                x = jnp.pad(x, pad)
            y = jax.lax.all_to_all(x, _axis(step.axes), split_axis=t, concat_axis=s,
                                   tiled=True)
            if y.shape != tuple(n_after):          # src_dim held whole: keep N
                y = y[tuple(slice(0, n) for n in n_after)]
            return y
        return run
    if isinstance(step, AllPermute):
        sources = permute_sources(mesh, before, after)
        if all(src == dst for dst, src in enumerate(sources)):
            return lambda x: x
        # ppermute zeroes a device nobody sends to: a device keeping its block sends to
        # itself (XLA moves nothing for it).
        pairs = [(src, dst) for dst, src in enumerate(sources)]
        everyone = mesh.names

        def run(x):
            return jax.lax.ppermute(x, _axis(everyone), perm=pairs)
        return run
    del n_before
    raise RedistError(f"{step.op} has no portable JAX form")


def compile_plan(plan: Plan, jmesh: JaxMesh, donate: bool = False):
    """A jitted function taking the global array (x's sharding) to the dst array."""
    return _compiled(plan, jmesh, donate)


@lru_cache(maxsize=128)
def _compiled(plan: Plan, jmesh: JaxMesh, donate: bool):
    p = plan.problem
    lays = plan.layouts()
    amesh = _atom_mesh(jmesh, p)
    steps = [_step_fn(plan, k, lays[k], lays[k + 1]) for k in range(len(plan.steps))]
    src_pad = [c * p.src.shards(p.mesh, d) for d, c in
               enumerate(p.src.local_shape(p.mesh, p.shape))]
    dst_pad = [c * p.dst.shards(p.mesh, d) for d, c in
               enumerate(p.dst.local_shape(p.mesh, p.shape))]

    def local(x):
        for fn in steps:
            x = fn(x)
        return x
    body = jax.shard_map(local, mesh=amesh, in_specs=_spec(p.src), out_specs=_spec(p.dst),
                         check_vma=False)
    uneven = tuple(src_pad) != p.shape or tuple(dst_pad) != p.shape
    dst_sharding = NamedSharding(jmesh, to_partition_spec(p.show(p.dst)))

    def run(x):
        if uneven:
            x = jnp.pad(x, [(0, n - m) for n, m in zip(src_pad, p.shape, strict=True)])
        y = body(x)
        if uneven:
            y = y[tuple(slice(0, n) for n in p.shape)]
        return y
    return jax.jit(run, out_shardings=dst_sharding, donate_argnums=(0,) if donate else ())


def reshard(x: jax.Array, dst_sharding: Any, method: str = "normal", budget: int | None = None,
            donate: bool = False) -> jax.Array:
    """x with `dst_sharding` (values equal to jax.device_put(x, dst_sharding)), moved by a
    verified redist plan. donate=True lets XLA reuse x's buffers."""
    plan = plan_for(x, dst_sharding, method, budget)
    y = compile_plan(plan, x.sharding.mesh, donate)(x)
    if isinstance(dst_sharding, NamedSharding) and y.sharding != dst_sharding:
        y = jax.device_put(y, dst_sharding)   # an equivalent sharding object: no copy
    return y
from redist.audit import audit  # noqa: E402,F401  (DESIGN §16; module kept apart)
