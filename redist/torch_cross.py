"""Between two DeviceMeshes of one torch.distributed world (DESIGN §15, §17): a DTensor on
mesh A -> a DTensor on mesh B with the given placements, by redist's verified two-mesh
plan. Optional: `pip install 'redist[torch]'`.

    from redist.torch_cross import redistribute_between
    y = redistribute_between(x, serve_mesh, [Replicate(), Shard(1)])

Collective over the world: every rank calls it with the same arguments (DTensor gives a
rank outside x's mesh an empty local block; a rank outside the dst mesh gets one back).
Rank 0 synthesizes the plan and proves its five claims (once per problem per process);
every rank gets it, after one small all_gather by which ranks asked for different moves
all fail instead of hanging. Then:

  1. each rank of A turns its block as DTensor holds it into its ceil block (DESIGN §11;
     rows move inside A's groups only where DTensor's nested chunks differ);
  2. the transfer: each pair (a, b) is one isend/irecv of the box of a's block that lies
     in b's block of the transfer's layout (a copy when a == b), all in one
     batch_isend_irecv; A's block is freed after it;
  3. the steps on B run as redist.torch runs one-mesh plans, and each B rank's block is
     turned back into what DTensor holds.

The result equals the full tensor laid out by DTensor's rule on mesh B. Pending sums
(Partial) are refused between meshes (reduce on A first).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor

from redist.core.cross.coerce import between
from redist.core.cross.model import CrossProblem
from redist.core.cross.plan import CrossPlan
from redist.core.cross.planjson import cross_plan_from_json, cross_plan_to_json
from redist.core.errors import RedistError
from redist.core.model.dtypes import dtype_name
from redist.core.ops import AllExchange, AllToAll
from redist.core.ops import transfer as T
from redist.dtensor import layout_from_placements, layout_of
from redist.torch import (
    _agree,
    _Context,
    run_steps,
    to_ceil_block,
    to_dtensor_block,
)

__all__ = ["redistribute_between", "plan_between"]

METHODS = ("normal", "optimal")
_plans: dict[tuple[CrossProblem, str], CrossPlan] = {}


def problem_between(dtensor: DTensor, dst_mesh: Any, placements: Sequence[Any]
                    ) -> CrossProblem:
    if not isinstance(dtensor, DTensor):
        raise RedistError(f"redistribute_between takes a DTensor, not "
                          f"{type(dtensor).__name__}")
    if not hasattr(dst_mesh, "mesh_dim_names"):
        raise RedistError(f"redistribute_between: dst_mesh must be a DeviceMesh, not "
                          f"{type(dst_mesh).__name__}")
    dst = layout_from_placements(tuple(placements), dst_mesh, dtensor.ndim)
    return between(dtensor.device_mesh, dst_mesh, tuple(int(n) for n in dtensor.shape),
                   dtype_name(str(dtensor.dtype).removeprefix("torch.")), layout_of(dtensor),
                   dst, dist.get_world_size())


def _key(cp: CrossProblem, method: str) -> bytes:
    text = json.dumps([list(cp.a.mesh.axes), cp.a.devices, list(cp.b.mesh.axes),
                       cp.b.devices, cp.shape, cp.dtype, str(cp.src), str(cp.dst), cp.world,
                       method])
    return hashlib.sha256(text.encode()).digest()


def _synthesize(cp: CrossProblem, method: str) -> CrossPlan:
    if method == "optimal":
        from redist.core.cross.optimal import optimal_cross
        result = optimal_cross(cp)
        plan, verdict = result.plan, result.verdict
    else:
        from redist.core.cross.synthesize import certified_cross
        plan, verdict, _ = certified_cross(cp)
    if not verdict.all_proved:
        raise RedistError("the two-mesh plan is not verified: " + "; ".join(
            f"{r.claim} {r.status}" for r in verdict.results if r.status != "proved"))
    return plan


def plan_between(dtensor: DTensor, dst_mesh: Any, placements: Sequence[Any],
                 method: str = "normal") -> CrossPlan:
    """The verified plan `redistribute_between` runs. Collective over the world."""
    if method not in METHODS:
        raise RedistError(f"redistribute_between: method must be one of {METHODS}, not "
                          f"{method!r:.40}")
    cp = problem_between(dtensor, dst_mesh, placements)
    world = tuple(range(dist.get_world_size()))
    have = (cp, method) in _plans
    if _agree(world, None, _key(cp, method), have, torch.device("cpu")):
        return _plans[(cp, method)]
    box: list[Any] = [None]
    if dist.get_rank() == 0:
        try:
            plan = _plans.get((cp, method)) or _synthesize(cp, method)
            box = [json.dumps(cross_plan_to_json(plan, with_figures=False))]
        except RedistError as e:
            box = ["!" + str(e)]
        except Exception as e:     # never leave the other ranks waiting in the broadcast
            box = [f"!synthesis failed on rank 0: {type(e).__name__}: {e}"]
    dist.broadcast_object_list(box, src=0)
    if box[0].startswith("!"):
        raise RedistError(box[0][1:])
    # Read as any plan file is (every check of the two-mesh reader), for this world.
    _plans[(cp, method)] = cross_plan_from_json(json.loads(box[0]), cp.world)
    return _plans[(cp, method)]


def _groups(plan: CrossPlan, ctx: _Context) -> None:
    """Every rank of the world creates the process groups the steps on B use, in one order
    (torch's new_group is collective over the world, members or not)."""
    for step in plan.b_plan.steps:
        if isinstance(step, AllToAll):
            ctx.group(step.axes)
        elif isinstance(step, AllExchange):
            ctx.group(ctx.mesh.names)


def _transfer(plan: CrossPlan, block: torch.Tensor | None, like: torch.Tensor,
              ctx_b: _Context | None) -> torch.Tensor | None:
    """This rank's pairs of the transfer; returns its padded block of the transfer's layout
    on B (None outside B)."""
    cp, mid = plan.problem, plan.mid
    me = dist.get_rank()
    out = None
    if me in cp.b:
        assert ctx_b is not None
        out = ctx_b.alloc(torch.zeros(tuple(mid.src.local_shape(mid.mesh, cp.shape)),
                                      dtype=like.dtype))
    ops, landing = [], []
    for a, b, at_a, at_b in T.pair_slices(cp, mid, plan.transfer):
        if me not in (a, b):
            continue
        src = block[at_a] if me == a else None
        dst = out[at_b] if me == b else None
        if a == b:
            dst.copy_(src)
        elif me == a:
            ops.append(dist.P2POp(dist.isend, src.contiguous(), b))
        else:
            piece = dst if dst.is_contiguous() else torch.empty(tuple(dst.shape),
                                                                dtype=like.dtype)
            landing.append((dst, piece))
            ops.append(dist.P2POp(dist.irecv, piece, a))
    for w in dist.batch_isend_irecv(ops) if ops else []:
        w.wait()
    for dst, piece in landing:
        if piece is not dst:
            dst.copy_(piece)
    return out


def redistribute_between(dtensor: DTensor, dst_mesh: Any, placements: Sequence[Any],
                         method: str = "normal") -> DTensor:
    """`dtensor` (on its DeviceMesh A) as a DTensor on `dst_mesh` (B, other ranks of the
    same world, disjoint or overlapping) with `placements`, moved by a verified two-mesh
    plan. Collective over the world (module doc)."""
    plan = plan_between(dtensor, dst_mesh, placements, method)
    cp = plan.problem
    me = dist.get_rank()
    ctx_b = _Context(plan.mid.mesh, cp.b.devices, cp.b.position.get(me, 0))
    _groups(plan, ctx_b)
    local = dtensor.to_local()
    with torch.no_grad():              # data movement only: the result is a new leaf
        block = None
        if me in cp.a:
            ctx_a = _Context(cp.a_problem.mesh, cp.a.devices, cp.a.position[me])
            block = to_ceil_block(ctx_a, local, cp.a_problem)
        x = _transfer(plan, block, local, ctx_b if me in cp.b else None)
        del block
        if x is None:
            out = torch.empty(0, dtype=local.dtype)
        else:
            out = to_dtensor_block(ctx_b, run_steps(ctx_b, plan.b_plan, x), plan.b_plan.problem)
    return DTensor.from_local(out, dst_mesh, tuple(placements), run_check=False,
                              shape=dtensor.shape, stride=dtensor.stride())
