"""Verified plans inside JAX/XLA (DESIGN §12). Optional: `pip install 'redist[jax]'`; the
rest of redist never imports JAX.

    from redist.jax import reshard
    y = reshard(x, NamedSharding(mesh, P("y", "x")))     # == jax.device_put(x, ...)

`reshard` works on concrete arrays and inside the user's `jax.jit` / `jax.grad`: the plan
is proved once per problem (redist.plan_cache: in the process, and on disk with
REDIST_PLAN_CACHE), at trace time, and a repeated eager call on the same problem costs a
dictionary look-up beside the compiled program. Under `jax.grad` the cotangent goes back
dst -> src by a verified plan of the reverse problem (a custom VJP). The program itself
is one `shard_map` over the user's own mesh (redist.jax_program). Plans that do not
verify are refused before anything is compiled.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh as JaxMesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from redist import plan_cache
from redist.core.errors import RedistError
from redist.core.model.coerce import as_layout, layout_from_spec
from redist.core.model.layout import Layout
from redist.core.model.mesh import Mesh
from redist.core.model.problem import Problem
from redist.core.plans.plan import Plan
from redist.jax_program import check_mesh, partition_spec, program

__all__ = ["reshard", "plan_for", "compile_plan", "clear_caches", "mesh_from_jax",
           "layout_from_spec", "to_partition_spec", "to_named_sharding", "to_jax_mesh"]


def mesh_from_jax(mesh: Any) -> Mesh:
    """redist's Mesh of a jax Mesh or AbstractMesh (names and sizes, in order)."""
    return Mesh(tuple((str(n), int(s)) for n, s in zip(mesh.axis_names, mesh.axis_sizes,
                                                        strict=True)))


def to_partition_spec(layout: Layout) -> P:
    """None for a replicated dim, a name for one axis, a tuple (major first) for several."""
    return partition_spec(layout)


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


def _is_traced(x: Any) -> bool:
    return isinstance(x, jax.core.Tracer)


def _spec(value: Any, rank: int) -> P:
    """A PartitionSpec as the user wrote it (kept: Explicit meshes type arrays by it)."""
    if isinstance(value, NamedSharding):
        return value.spec
    if isinstance(value, P):
        return value
    return to_partition_spec(as_layout(value, rank))


def _source(x: Any, src: Any) -> tuple[Any, P]:
    """The mesh x lives on (concrete if known, else abstract) and its PartitionSpec."""
    if src is not None:
        if isinstance(src, NamedSharding):
            return src.mesh, src.spec
        mesh = _mesh_of(x)
        if mesh is None:
            raise RedistError("src= is a PartitionSpec but x's mesh is not known: pass a "
                              "NamedSharding")
        return mesh, _spec(src, x.ndim)
    if not _is_traced(x):
        sharding = x.sharding
        if not isinstance(sharding, NamedSharding):
            raise RedistError(f"x must have a NamedSharding, not {type(sharding).__name__} "
                              "(jax.device_put it onto a mesh first, or pass src=)")
        return sharding.mesh, sharding.spec
    sharding = jax.typeof(x).sharding
    mesh = sharding.mesh
    if not mesh.axis_names or not all(t == jax.sharding.AxisType.Explicit
                                       for t in mesh.axis_types):
        raise RedistError("x is traced and its sharding is not part of its type (the mesh "
                          "axes are not all Explicit): pass src=NamedSharding(mesh, spec)")
    return mesh, sharding.spec


def _mesh_of(x: Any) -> Any:
    if _is_traced(x):
        mesh = jax.typeof(x).sharding.mesh
        return mesh if mesh.axis_names else None
    sharding = getattr(x, "sharding", None)
    return sharding.mesh if isinstance(sharding, NamedSharding) else None


def _problem(x: Any, dst: Any, src: Any) -> tuple[Problem, Any, P, P]:
    """The problem of moving x to dst, the mesh to run it on, and the two specs."""
    mesh, src_spec = _source(x, src)
    if isinstance(dst, NamedSharding):
        if mesh_from_jax(dst.mesh) != mesh_from_jax(mesh) or (
                not _is_traced(x) and isinstance(mesh, JaxMesh) and dst.mesh != mesh):
            raise RedistError("the dst sharding must be on x's mesh")
        mesh = dst.mesh                     # concrete, where x's may be abstract
    dst_spec = _spec(dst, x.ndim)
    problem = Problem(mesh_from_jax(mesh), tuple(x.shape), jnp.dtype(x.dtype).name,
                      layout_from_spec(src_spec, x.ndim), layout_from_spec(dst_spec, x.ndim))
    return problem, mesh, src_spec, dst_spec


# Problems whose plan every process of the job has agreed on.
_agreed: set[tuple[Problem, str, int | None]] = set()
AGREE_TIMEOUT_MS = 300_000


def _plan(problem: Problem, method: str, budget: int | None, cache_dir: str | None) -> Plan:
    """The verified plan (proved once per process), portable, and the same on every
    process of a multi-process job."""
    plan = plan_cache.verified_plan(problem, method, budget, cache_dir)
    if any(s.op == "all_exchange" for s in plan.steps):
        raise RedistError("all_exchange is an MPI step; JAX runs portable plans only")
    key = (problem, method, budget)
    if key not in _agreed and jax.process_count() > 1:
        _agree(plan_cache.problem_id(problem, method, budget), plan_cache.plan_sha256(plan))
    _agreed.add(key)
    return plan


def _agree(problem_id: str, mine: str) -> None:
    """Each process proves its own plan; a job whose processes would run different
    programs must fail on every process, not hang in a collective. The plans' SHA-256
    are compared through the coordinator's key-value store (jax.distributed)."""
    from jax._src import distributed

    client = distributed.global_state.client
    if client is None:
        return
    me = jax.process_index()
    client.key_value_set(f"redist/plan/{problem_id}/{me}", mine, allow_overwrite=True)
    for k in range(jax.process_count()):
        try:
            theirs = client.blocking_key_value_get(f"redist/plan/{problem_id}/{k}",
                                                   AGREE_TIMEOUT_MS)
        except Exception as e:  # the client raises its own error type on a timeout
            raise RedistError(f"process {k} did not plan this reshard within "
                              f"{AGREE_TIMEOUT_MS // 1000} s ({e})") from None
        if theirs != mine:
            raise RedistError(f"process {k} planned a different program for this reshard "
                              f"(plan {theirs[:12]} vs {mine[:12]} here)")


def plan_for(x: Any, dst: Any, method: str = "normal", budget: int | None = None, *,
             src: Any = None, cache_dir: str | None = None) -> Plan:
    """The verified plan that takes x's sharding (or `src`) to `dst` (a NamedSharding,
    PartitionSpec or layout on x's mesh); RedistError if no plan verifies. Proved once per
    problem (redist.plan_cache)."""
    return _plan(_problem(x, dst, src)[0], method, budget, cache_dir)


def compile_plan(plan: Plan, jmesh: JaxMesh, donate: bool = False, *,
                 src_spec: P | None = None, dst_spec: P | None = None):
    """A jitted function taking the global array (src sharding) to the dst array. On an
    Explicit mesh, give the specs as the arrays carry them when they name a size-1 axis."""
    p = plan.problem
    return _jitted(plan, jmesh, src_spec or partition_spec(p.show(p.src)),
                   dst_spec or partition_spec(p.show(p.dst)), donate)


@lru_cache(maxsize=256)
def _jitted(plan: Plan, jmesh: JaxMesh, src_spec: P, dst_spec: P, donate: bool):
    check_mesh(plan, jmesh)
    return jax.jit(program(plan, jmesh, src_spec, dst_spec),
                   donate_argnums=(0,) if donate else (),
                   out_shardings=NamedSharding(jmesh, dst_spec))


def _reverse(problem: Problem) -> Problem:
    assert problem.base is not None
    return Problem(problem.base, problem.shape, problem.dtype, problem.show(problem.dst),
                   problem.show(problem.src))


@lru_cache(maxsize=256)
def _differentiable(plan: Plan, mesh: Any, src_spec: P, dst_spec: P, method: str,
                    budget: int | None, cache_dir: str | None) -> Callable[[Any], Any]:
    """The plan as a traceable function whose VJP moves the cotangent dst -> src by the
    verified plan of the reverse problem (proved when the backward pass is traced)."""
    forward = program(plan, mesh, src_spec, dst_spec)

    @jax.custom_vjp
    def move(x):
        return forward(x)

    def fwd(x):
        return forward(x), None

    def bwd(_, g):
        back = _plan(_reverse(plan.problem), method, budget, cache_dir)
        return (program(back, mesh, dst_spec, src_spec)(g),)

    move.defvjp(fwd, bwd)
    return move


# (shape, dtype, src sharding, dst, options) -> the compiled call: a hit proves nothing
# and traces nothing.
_calls: dict[tuple, Callable[[Any], Any]] = {}


def clear_caches() -> None:
    """Forget proved plans and compiled programs of this process."""
    _calls.clear()
    _jitted.cache_clear()
    _differentiable.cache_clear()
    _agreed.clear()
    plan_cache.clear()


def reshard(x: Any, dst: Any, *, src: Any = None, method: str = "normal",
            budget: int | None = None, donate: bool = False,
            cache_dir: str | None = None) -> Any:
    """x with sharding `dst` (a NamedSharding, or a PartitionSpec on x's mesh), moved by a
    verified redist plan; the values of jax.device_put(x, dst).

    Works on concrete arrays and on traced ones inside jax.jit / jax.grad (where x's
    sharding is read from its type on Explicit meshes; otherwise pass src=). donate=True
    lets XLA reuse x's buffers (eager calls). cache_dir keeps proved plans on disk (default:
    $REDIST_PLAN_CACHE, if set)."""
    if _is_traced(x):
        problem, mesh, src_spec, dst_spec = _problem(x, dst, src)
        plan = _plan(problem, method, budget, cache_dir)
        return _differentiable(plan, mesh, src_spec, dst_spec, method, budget, cache_dir)(x)
    try:
        key = (x.shape, x.dtype, x.sharding, dst, src, method, budget, donate, cache_dir)
        call = _calls.get(key)
    except TypeError:                       # an unhashable dst or src: plan below
        key, call = None, None
    if call is None:
        problem, mesh, src_spec, dst_spec = _problem(x, dst, src)
        if not isinstance(mesh, JaxMesh):
            raise RedistError("x's mesh has no devices (an abstract mesh): pass a concrete "
                              "NamedSharding")
        plan = _plan(problem, method, budget, cache_dir)
        call = _jitted(plan, mesh, src_spec, dst_spec, donate)
        if key is not None:
            _calls[key] = call
    return call(x)


from redist.audit import audit  # noqa: E402,F401  (DESIGN §16; module kept apart)
