"""Verified plans on PyTorch DTensors (DESIGN §17). Optional: `pip install 'redist[torch]'`;
the rest of redist never imports torch.

    from redist.torch import redistribute
    y = redistribute(x, [Replicate(), Shard(1)])     # == x.redistribute(mesh, placements)

Every rank of the DTensor's DeviceMesh calls it with the same placements. The problem is
read off the DTensor (mesh, shape, dtype, placements); rank 0 synthesizes a plan and
proves it (once per problem per process), every rank gets the plan, and each step runs
as one torch.distributed collective on the groups of its axes:

  all_slice    a local slice (no communication)
  all_gather   batch_isend_irecv straight into the output (gloo's all_gather would hold
               a second output-sized buffer)
  all_to_all   all_to_all_single
  all_permute  batch_isend_irecv, paired as DESIGN §2 says
  all_exchange all_to_all_single with split sizes over the whole mesh, each element from
               its canonical holder (used only when no portable plan is within the
               memory bound, as on some uneven extents)
  reduce_scatter  a ring of batch_isend_irecv rounds (sum) (gloo's reduce_scatter_single
               holds a second input-sized buffer)
  all_reduce   all_reduce (sum), in place (on a copy when the block is the caller's)

A group's process group ranks its members in mesh order (torch sorts a group's ranks);
the steps reorder pieces into the plan's mixed-radix order where the two differ.

Uneven shards hold what DTensor holds (torch.chunk sizes); inside a plan buffers are
padded to DESIGN §11's ceil block. DTensor splits a tensor dim that several mesh dims
shard by chunking the chunks, which differs from §11's blocks on some uneven extents:
there the rows move between the two before the first step and after the last, point to
point inside each group (core/model/nested.py checks the moves exactly; they are outside
the proved plan). `Partial("sum")` is a pending sum (DESIGN §14), reduced by the plan's
reduce_scatter and all_reduce steps in the tensor's dtype; other reductions are refused.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor

from redist import plan_cache
from redist.core.errors import RedistError
from redist.core.model.dtypes import dtype_name
from redist.core.model.layout import Layout
from redist.core.model.mesh import Mesh
from redist.core.model.nested import Regrid, group_devices, regrids
from redist.core.model.problem import Problem
from redist.core.ops import (
    AllExchange,
    AllGather,
    AllPermute,
    AllReduce,
    AllSlice,
    AllToAll,
    ReduceScatter,
)
from redist.core.ops.common import mixed_radix
from redist.core.plans.plan import Plan
from redist.core.plans.planjson import plan_from_json, plan_to_json
from redist.core.semantics.blocks import block_ranges, permute_sources
from redist.dtensor import layout_from_placements, layout_of, mesh_from_device_mesh

__all__ = ["redistribute", "redistribute_with_stats", "plan_for", "problem_of", "RunStats"]

# Problems per DTensor spec and target placements.
_problems: dict[tuple, tuple[Problem, tuple[int, ...]]] = {}
# Process groups per (global ranks of the mesh, mesh of atoms, ordered axes).
_groups: dict[tuple[tuple[int, ...], Mesh, tuple[str, ...]], Any] = {}


@dataclass(frozen=True)
class RunStats:
    peak_bytes: int        # this rank: its input block plus every buffer the steps allocated
    steps: int
    cached: bool           # the plan came from the cache (no synthesis, no proof)


# ---- groups ---------------------------------------------------------------------------

@dataclass
class _Context:
    mesh: Mesh                     # the plan's mesh of atoms
    ranks: tuple[int, ...]         # global rank of each device, in device order
    me: int                        # this rank's device id
    live: int = 0
    peak: int = 0
    held: dict[int, int] = field(default_factory=dict)
    pinned: int = -1               # the caller's block: its DTensor keeps it alive

    @property
    def coords(self) -> dict[str, int]:
        return self.mesh.coords(self.me)

    def members(self, axes: tuple[str, ...], coords: dict[str, int] | None = None
                ) -> list[int]:
        """Global ranks of the group on `axes` of the device at `coords` (this one by
        default), in the mixed-radix order of their coordinates on `axes` (DESIGN §7)."""
        dev = self.me if coords is None else self.mesh.device(coords)
        return [self.ranks[d] for d in group_devices(self.mesh, axes, dev)]

    def group(self, axes: tuple[str, ...]) -> Any:
        """The process group of this device's group on `axes`. Every rank creates every
        group of the partition, in device order (new_group is collective); torch ranks a
        group's members in mesh order (see _in_mesh_order)."""
        key = (self.ranks, self.mesh, axes)
        if key not in _groups:
            mine = None
            for dev in range(self.mesh.num_devices):
                c = self.mesh.coords(dev)
                if any(c[a] for a in axes):
                    continue                           # not the group's first member
                members = self.members(axes, c)
                pg = dist.new_group(members)
                if dist.get_rank() in members:    # a rank outside the mesh joins none
                    mine = pg
            _groups[key] = mine
        return _groups[key]

    # Byte accounting: the buffers this module allocates, and the input throughout.
    def alloc(self, t: torch.Tensor) -> torch.Tensor:
        key = t.untyped_storage().data_ptr()
        if key not in self.held:
            self.held[key] = t.untyped_storage().nbytes()
            self.live += self.held[key]
            self.peak = max(self.peak, self.live)
        return t

    def free(self, t: torch.Tensor) -> None:
        key = t.untyped_storage().data_ptr()
        if key != self.pinned:
            self.live -= self.held.pop(key, 0)


def _empty(ctx: _Context, shape: Sequence[int], like: torch.Tensor) -> torch.Tensor:
    return ctx.alloc(torch.empty(tuple(shape), dtype=like.dtype, device=like.device))


def _contiguous(ctx: _Context, x: torch.Tensor) -> torch.Tensor:
    if x.is_contiguous():
        return x
    y = _empty(ctx, x.shape, x)
    y.copy_(x)
    return y


def _padded(ctx: _Context, x: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """x inside a zero buffer of `shape` (x itself when it has that shape already)."""
    if tuple(x.shape) == tuple(shape):
        return x
    y = ctx.alloc(torch.zeros(tuple(shape), dtype=x.dtype, device=x.device))
    y[tuple(slice(0, n) for n in x.shape)] = x
    return y


def _trim(ctx: _Context, x: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """The first `shape` of x (a dim gathered whole keeps N of its padded pieces)."""
    if tuple(x.shape) == tuple(shape):
        return x
    y = _contiguous(ctx, x[tuple(slice(0, n) for n in shape)])
    if y.untyped_storage().data_ptr() != x.untyped_storage().data_ptr():
        ctx.free(x)
    return y


# ---- one function per op ----------------------------------------------------------------

def _slice(ctx: _Context, step: AllSlice, x: torch.Tensor, before: Layout, after: Layout,
           shape: tuple[int, ...]) -> torch.Tensor:
    n_after = after.local_shape(ctx.mesh, shape)
    coords = ctx.coords
    need = list(x.shape)
    for d, new in enumerate(step.axes):
        if new:        # a dim held whole splits into pieces reaching past its end
            need[d] = max(need[d], n_after[d] * math.prod(ctx.mesh.size(a) for a in new))
    src = x
    x = padded = _padded(ctx, x, need)
    for d, new in enumerate(step.axes):
        if new:
            x = x.narrow(d, mixed_radix(ctx.mesh, new, coords) * n_after[d], n_after[d])
    y = _contiguous(ctx, x)
    kept = y.untyped_storage().data_ptr()
    for t in {id(src): src, id(padded): padded}.values():
        if t.untyped_storage().data_ptr() != kept:
            ctx.free(t)
    return y


def _in_mesh_order(mesh: Mesh, axes: tuple[str, ...]) -> tuple[str, ...]:
    """The order of a group's members in its process group: torch sorts a group's ranks,
    and ranks are row-major over the mesh, so group rank r is the mixed-radix number of
    the members' coordinates on `axes` taken in mesh order."""
    return tuple(sorted(axes, key=mesh.names.index))


def _arranged(ctx: _Context, x: torch.Tensor, order: list[int], shape: tuple[int, ...]
              ) -> torch.Tensor:
    """x permuted by `order` and viewed as `shape` (no copy when the order is the
    identity)."""
    if order == sorted(order):
        return x.view(shape)
    y = _contiguous(ctx, x.permute(order)).view(shape)
    ctx.free(x)
    return y


def _gather(ctx: _Context, step: AllGather, x: torch.Tensor, before: Layout, after: Layout,
            shape: tuple[int, ...]) -> torch.Tensor:
    """Point to point straight into the output: gloo's all_gather collects into a flat
    buffer of the output's size and copies out of it, twice the output. Member k's block
    goes to its digits over each dim's gathered axes; a block that is not contiguous in
    the output (a gather along a later dim) is received into one scratch block per round
    and copied into place."""
    n_after = after.local_shape(ctx.mesh, shape)
    axes = tuple(a for gone in step.axes for a in gone)
    sizes = [math.prod(ctx.mesh.size(a) for a in gone) for gone in step.axes]
    members = ctx.members(axes)
    g = len(members)
    me = members.index(ctx.ranks[ctx.me])
    out = _empty(ctx, tuple(n * k for n, k in zip(x.shape, sizes, strict=True)), x)

    def box(k: int) -> tuple[slice, ...]:
        digits = []
        for size in reversed(sizes):
            digits.append(k % size)
            k //= size
        return tuple(slice(i * n, (i + 1) * n)
                     for i, n in zip(reversed(digits), x.shape, strict=True))

    out[box(me)] = x
    if all(out[box(k)].is_contiguous() for k in range(g)):
        ops = [dist.P2POp(dist.isend, x, members[k]) for k in range(g) if k != me]
        ops += [dist.P2POp(dist.irecv, out[box(k)], members[k]) for k in range(g) if k != me]
        for w in dist.batch_isend_irecv(ops) if ops else []:
            w.wait()
    else:
        scratch = _empty(ctx, x.shape, x)
        for r in range(1, g):
            to, frm = (me + r) % g, (me - r) % g
            for w in dist.batch_isend_irecv([dist.P2POp(dist.isend, x, members[to]),
                                             dist.P2POp(dist.irecv, scratch, members[frm])]):
                w.wait()
            out[box(frm)] = scratch
        ctx.free(scratch)
    ctx.free(x)
    return _trim(ctx, out, n_after)


def _all_to_all(ctx: _Context, step: AllToAll, x: torch.Tensor, before: Layout,
                after: Layout, shape: tuple[int, ...]) -> torch.Tensor:
    n_after = after.local_shape(ctx.mesh, shape)
    s, t = step.src_dim, step.dst_dim
    sizes = tuple(ctx.mesh.size(a) for a in step.axes)
    ranked = _in_mesh_order(ctx.mesh, step.axes)
    g = math.prod(sizes)
    piece = n_after[t]
    need = list(x.shape)
    need[t] = g * piece                        # dst_dim held whole: pad it to g pieces
    src = x
    x = _padded(ctx, x, need)
    if x is not src:
        ctx.free(src)
    del src
    # Piece m of dst_dim (m: digits over step.axes) goes to that member: lay the pieces
    # out in group-rank order (digits over the axes in mesh order), each contiguous.
    k = len(sizes)
    cut = x.view(tuple(x.shape[:t]) + sizes + (piece,) + tuple(x.shape[t + 1:]))
    order = [t + step.axes.index(a) for a in ranked]
    order += [d for d in range(cut.dim()) if d not in order]
    send = _arranged(ctx, cut, order, (g * math.prod(cut.shape[t + k:]) *
                                       math.prod(x.shape[:t]),))
    del x, cut
    recv = _empty(ctx, send.shape, send)
    dist.all_to_all_single(recv, send, group=ctx.group(step.axes))
    ctx.free(send)
    del send
    # Member r's piece is block (its digits over step.axes) of src_dim.
    piece_shape = list(need)
    piece_shape[t] = piece
    order = []
    for d in range(len(piece_shape)):
        if d == s:
            order += [ranked.index(a) for a in step.axes]
        order.append(k + d)
    merged = tuple(n * (g if d == s else 1) for d, n in enumerate(piece_shape))
    y = _arranged(ctx, recv.view(tuple(ctx.mesh.size(a) for a in ranked) + tuple(piece_shape)),
                  order, merged)
    return _trim(ctx, y, n_after)


def _permute(ctx: _Context, step: AllPermute, x: torch.Tensor, before: Layout,
             after: Layout, shape: tuple[int, ...]) -> torch.Tensor:
    sources = permute_sources(ctx.mesh, before, after)
    if sources[ctx.me] == ctx.me:
        return x                                # this device keeps its block
    dest = sources.index(ctx.me)
    out = _empty(ctx, x.shape, x)
    works = dist.batch_isend_irecv([
        dist.P2POp(dist.isend, x, ctx.ranks[dest]),
        dist.P2POp(dist.irecv, out, ctx.ranks[sources[ctx.me]])])
    for w in works:
        w.wait()
    ctx.free(x)
    return out


def _exchange(ctx: _Context, step: AllExchange, x: torch.Tensor, before: Layout,
              after: Layout, shape: tuple[int, ...]) -> torch.Tensor:
    """One all_to_all_single with split sizes over every device (DESIGN §2 all_exchange):
    each element of the new block comes from its canonical holder (the holder whose
    coordinates on the axes replicated before are ours). Boxes are packed per peer."""
    mesh, me = ctx.mesh, ctx.me
    lo_b, hi_b = block_ranges(mesh, shape, before)
    lo_a, hi_a = block_ranges(mesh, shape, after)
    replicated = [a for a in mesh.names if a not in before.used_axes()]
    mine = mesh.coords(me)
    out = ctx.alloc(torch.zeros(after.local_shape(mesh, shape), dtype=x.dtype,
                                device=x.device))

    def box(lo_h, hi_h, lo_n, hi_n, origin) -> tuple[slice, ...] | None:
        lo, hi = np.maximum(lo_h, lo_n), np.minimum(hi_h, hi_n)
        if not np.all(hi > lo):
            return None
        return tuple(slice(int(a - o), int(b - o)) for a, b, o in zip(lo, hi, origin,
                                                                       strict=True))

    sends, recvs = [], []
    for peer in range(mesh.num_devices):
        pc = mesh.coords(peer)
        # I send to peer what it needs of my block if I am its canonical holder ...
        give = box(lo_b[me], hi_b[me], lo_a[peer], hi_a[peer], lo_b[me]) if all(
            pc[a] == mine[a] for a in replicated) else None
        # ... and receive from peer what I need of its block if it is mine.
        take = box(lo_b[peer], hi_b[peer], lo_a[me], hi_a[me], lo_a[me]) if all(
            pc[a] == mine[a] for a in replicated) else None
        if peer == me:
            if give is not None:
                out[box(lo_b[me], hi_b[me], lo_a[me], hi_a[me], lo_a[me])] = x[give]
            give = take = None
        sends.append(give)
        recvs.append(take)
    counts_in = [0 if b is None else math.prod(s.stop - s.start for s in b) for b in sends]
    counts_out = [0 if b is None else math.prod(s.stop - s.start for s in b) for b in recvs]
    packed = _empty(ctx, (sum(counts_in),), x)
    at = 0
    for b, n in zip(sends, counts_in, strict=True):
        if n:
            packed[at:at + n].view(x[b].shape).copy_(x[b])
            at += n
    ctx.free(x)
    del x
    got = _empty(ctx, (sum(counts_out),), out)
    dist.all_to_all_single(got, packed, counts_out, counts_in,
                           group=ctx.group(mesh.names))
    ctx.free(packed)
    at = 0
    for b, n in zip(recvs, counts_out, strict=True):
        if n:
            out[b] = got[at:at + n].view(out[b].shape)
            at += n
    ctx.free(got)
    return out


# ---- DTensor's nested pieces <-> the plan's ceil blocks (core/model/nested.py) ----------

def _regrid(ctx: _Context, base: Mesh, x: torch.Tensor, rg: Regrid, valid: Sequence[int],
            out_shape: Sequence[int]) -> torch.Tensor:
    """This rank's block after moving rows of dim rg.dim inside its group on rg.axes: x
    holds rows rg.frm[k] (from its row 0) and `valid` extents in the other dims (the
    same on every member: they share their other coordinates); the result, of
    `out_shape` (zeros past the valid extents), holds rows rg.to[k]. Point to point with
    the few members whose rows overlap; pieces that are not contiguous in x or in the
    result go through one scratch buffer each."""
    d = rg.dim
    group = group_devices(base, rg.axes, ctx.me)
    k = group.index(ctx.me)
    if rg.frm[k] == rg.to[k] and tuple(out_shape) == tuple(x.shape):
        return x                        # its rows stay: nothing to send or receive
    full = tuple(out_shape) == tuple(n if i != d else rg.to[k][1] - rg.to[k][0]
                                     for i, n in enumerate(valid))
    out = ctx.alloc((torch.empty if full else torch.zeros)(
        tuple(out_shape), dtype=x.dtype, device=x.device))

    def rows(t: torch.Tensor, first: int, lo: int, hi: int) -> torch.Tensor:
        index = [slice(0, n) for n in valid]
        index[d] = slice(lo - first, hi - first)
        return t[tuple(index)]

    if math.prod(n for i, n in enumerate(valid) if i != d) == 0:
        ctx.free(x)
        return out                      # empty in another dim (on every member alike)
    ops, landing, scratch = [], [], []
    for s, r, lo, hi in rg.moves:
        if k not in (s, r):
            continue
        src, dst = rows(x, rg.frm[s][0], lo, hi), rows(out, rg.to[r][0], lo, hi)
        if s == r:
            dst.copy_(src)
        elif s == k:
            piece = src if src.is_contiguous() else ctx.alloc(src.contiguous())
            scratch.append(piece)
            ops.append(dist.P2POp(dist.isend, piece, ctx.ranks[group[r]]))
        else:
            piece = dst if dst.is_contiguous() else _empty(ctx, dst.shape, x)
            scratch.append(piece)
            landing.append((dst, piece))
            ops.append(dist.P2POp(dist.irecv, piece, ctx.ranks[group[s]]))
    for w in dist.batch_isend_irecv(ops) if ops else []:
        w.wait()
    for dst, piece in landing:
        if piece is not dst:
            dst.copy_(piece)
    for t in scratch:
        if t.untyped_storage().data_ptr() not in (x.untyped_storage().data_ptr(),
                                                  out.untyped_storage().data_ptr()):
            ctx.free(t)
    ctx.free(x)
    return out


def _owned(ctx: _Context, x: torch.Tensor) -> torch.Tensor:
    """x, or a copy of it when it is the caller's block (a reduction writes in place)."""
    if x.untyped_storage().data_ptr() != ctx.pinned:
        return x
    y = _empty(ctx, x.shape, x)
    y.copy_(x)
    return y


def _reduce_scatter(ctx: _Context, step: ReduceScatter, x: torch.Tensor, before: Layout,
                    after: Layout, shape: tuple[int, ...]) -> torch.Tensor:
    """A ring reduce-scatter on the group of the step's axes, point to point: gloo's
    reduce_scatter_single holds a second input-sized buffer (measured), this one piece.
    The block is cut, per reduced dim, into its G pieces (padded with zeros to G equal
    pieces where the dim is held whole and G does not divide it); the piece of the member
    whose digits over the dim's new axes are k (major first) is piece k, as in
    runtime/reduce.py. The pieces are laid out contiguous in the members' order (digits
    over the axes in mesh order); in G-1 rounds each member sends a partial sum of one
    piece to the next member and adds its own addend of that piece to the one it
    receives, ending with the full sum of its own piece: (G-1)/G of the block received,
    as reduce_scatter, through two piece-sized buffers (the input is only read)."""
    n_after = after.local_shape(ctx.mesh, shape)
    axes = tuple(a for new in step.axes for a in new)
    ranked = _in_mesh_order(ctx.mesh, axes)
    full = [n * math.prod(ctx.mesh.size(a) for a in new)
            for n, new in zip(n_after, step.axes, strict=True)]
    src = x
    x = _padded(ctx, x, full)
    if x is not src:
        ctx.free(src)
    del src
    # Each dim as (its new axes' sizes ..., its piece): one view dim per axis.
    split: list[int] = []
    where: dict[str, int] = {}
    rest: list[int] = []
    for new, n in zip(step.axes, n_after, strict=True):
        for a in new:
            where[a] = len(split)
            split.append(ctx.mesh.size(a))
        rest.append(len(split))
        split.append(n)
    order = [where[a] for a in ranked] + rest
    flat_x = _arranged(ctx, x.view(tuple(split)), order, (math.prod(full),))
    del x
    members = ctx.members(ranked)
    g = len(members)
    me = members.index(ctx.ranks[ctx.me])
    pieces = flat_x.view(g, -1)             # read only: it may be the caller's block
    nxt, prv = members[(me + 1) % g], members[(me - 1) % g]
    cur, spare = pieces[(me - 1) % g], None
    if g == 1:
        cur = _empty(ctx, pieces[0].shape, flat_x)
        cur.copy_(pieces[0])
    for r in range(g - 1):
        into = spare if spare is not None else _empty(ctx, pieces[0].shape, flat_x)
        for w in dist.batch_isend_irecv([dist.P2POp(dist.isend, cur, nxt),
                                         dist.P2POp(dist.irecv, into, prv)]):
            w.wait()
        into.add_(pieces[(me - r - 2) % g])
        spare = cur if r else None          # the first piece sent is the input's
        cur = into
    if spare is not None:
        ctx.free(spare)
    ctx.free(flat_x)
    return cur.view(n_after)


def _all_reduce(ctx: _Context, step: AllReduce, x: torch.Tensor, before: Layout,
                after: Layout, shape: tuple[int, ...]) -> torch.Tensor:
    """One all_reduce of the block on the group of the step's axes, in place (on a copy
    when the block is the caller's)."""
    x = _owned(ctx, x)
    dist.all_reduce(x, op=dist.ReduceOp.SUM, group=ctx.group(tuple(step.axes)))
    return x


# One function per op (core/ops): (ctx, step, x, before, after, shape) -> the new block.
RUNNERS: dict[str, Callable[..., torch.Tensor] | None] = {
    "all_slice": _slice,
    "all_gather": _gather,
    "all_to_all": _all_to_all,
    "all_permute": _permute,
    "all_exchange": _exchange,
    "reduce_scatter": _reduce_scatter,
    "all_reduce": _all_reduce,
}


# ---- plans ------------------------------------------------------------------------------

def _mesh_ranks(device_mesh: Any) -> tuple[int, ...]:
    return tuple(int(r) for r in device_mesh.mesh.flatten().tolist())


def problem_of(dtensor: DTensor, placements: Sequence[Any]) -> Problem:
    """The redistribution problem of `dtensor` to `placements` on its mesh, in DESIGN
    §11's ceil blocks (raises a clear RedistError for reductions other than
    Partial("sum") and for _StridedShard)."""
    if not isinstance(dtensor, DTensor):
        raise RedistError(f"redistribute takes a DTensor, not {type(dtensor).__name__}")
    mesh = mesh_from_device_mesh(dtensor.device_mesh)
    src = layout_of(dtensor)
    dst = layout_from_placements(tuple(placements), dtensor.device_mesh, dtensor.ndim)
    shape = tuple(int(n) for n in dtensor.shape)
    return Problem(mesh, shape, dtype_name(str(dtensor.dtype).removeprefix("torch.")),
                   src, dst)


@lru_cache(maxsize=1024)
def _problem_key(problem: Problem, method: str) -> bytes:
    return bytes.fromhex(plan_cache.problem_id(problem, method, None, True))


def _agree(ranks: tuple[int, ...], group: Any, key: bytes, have: bool, device: Any) -> bool:
    """Collective: every rank learns whether all ranks asked for the same problem, so a
    rank that differs raises on every rank instead of leaving the others waiting; and
    whether every rank holds the plan already (else rank 0 sends it to all)."""
    mine = torch.frombuffer(bytearray(key + bytes([have])), dtype=torch.uint8).to(device)
    every = torch.empty(len(ranks) * mine.numel(), dtype=torch.uint8, device=device)
    dist.all_gather_into_tensor(every, mine, group=group)
    rows = every.view(len(ranks), -1)
    differ = [ranks[i] for i in range(len(ranks)) if not torch.equal(rows[i, :-1],
                                                                     rows[0, :-1])]
    if differ:
        raise RedistError(f"ranks {differ} asked for a different redistribution (mesh, "
                          f"shape, dtype or placements) than rank {ranks[0]}; no data moved")
    return bool(rows[:, -1].all())


def _from_rank_0(problem: Problem, method: str, ctx: _Context, group: Any,
                 cache_dir: str | None) -> Plan:
    """Rank 0 of the mesh takes the verified plan from redist.plan_cache (this process,
    the authenticated disk cache, or synthesis and proof); every rank gets it (or the
    error) and keeps it in its own plan_cache."""
    text = None
    if ctx.me == 0:
        try:
            plan = plan_cache.verified_plan(problem, method, None, cache_dir,
                                            exchange_fallback=True)
            text = json.dumps(plan_to_json(plan, with_figures=False))
        except RedistError as e:
            text = "!" + str(e)
        except Exception as e:     # never leave the other ranks waiting in the broadcast
            text = f"!synthesis failed on rank 0: {type(e).__name__}: {e}"
    box = [text]
    dist.broadcast_object_list(box, src=ctx.ranks[0], group=group)
    if box[0].startswith("!"):
        raise RedistError(box[0][1:])
    if ctx.me == 0:
        return plan_cache.cached(problem, method, None, True)
    plan = plan_from_json(json.loads(box[0]))
    plan_cache.remember(plan, problem, method, None, True)
    return plan


def plan_for(dtensor: DTensor, placements: Sequence[Any], method: str = "normal",
             check: bool = True, *, cache_dir: str | None = None) -> Plan:
    """The verified plan (redist.plan_cache) that `redistribute` would run. Collective:
    every rank of the DTensor's mesh calls it."""
    return _plan_and_context(dtensor, placements, method, check, cache_dir)[0]


def _problem_and_ranks(dtensor: DTensor, placements: Sequence[Any]
                       ) -> tuple[Problem, tuple[int, ...]]:
    """problem_of and the mesh's ranks, remembered per DTensor spec (a repeated call
    costs a dict lookup, not a Problem's checks)."""
    try:
        spec = dtensor._spec
        key = (dtensor.device_mesh, spec.placements, getattr(spec, "shard_order", None),
               tuple(dtensor.shape), dtensor.dtype, tuple(placements))
        hash(key)
    except (AttributeError, TypeError):
        key = None
    if key is None or key not in _problems:
        value = (problem_of(dtensor, placements), _mesh_ranks(dtensor.device_mesh))
        if key is None:
            return value
        _problems[key] = value
    return _problems[key]


def _plan_and_context(dtensor: DTensor, placements: Sequence[Any], method: str,
                      check: bool = True, cache_dir: str | None = None
                      ) -> tuple[Plan, _Context, bool]:
    problem, ranks = _problem_and_ranks(dtensor, placements)
    me = ranks.index(dist.get_rank())
    base = _Context(problem.base, ranks, me)
    everyone = base.group(problem.base.names)
    plan = plan_cache.cached(problem, method, None, True)
    hit = plan is not None
    if check:
        hit = _agree(ranks, everyone, _problem_key(problem, method), hit, dtensor.device)
    if not hit:
        plan = _from_rank_0(problem, method, base, everyone, cache_dir)
    assert plan is not None
    return plan, _Context(plan.problem.mesh, ranks, me), hit


def execute(local: torch.Tensor, plan: Plan, ctx: _Context) -> torch.Tensor:
    """Run a plan's steps on this rank's block (DTensor's valid extent); no checks
    (callers gate on the plan's proof). Returns the dst block as DTensor holds it. Where
    DTensor's nested pieces are not the plan's ceil blocks, rows move between the two
    before the first step and after the last (core/model/nested.py)."""
    return to_dtensor_block(ctx, run_steps(ctx, plan, to_ceil_block(ctx, local,
                                                                    plan.problem)),
                            plan.problem)


def to_ceil_block(ctx: _Context, local: torch.Tensor, p: Problem) -> torch.Tensor:
    """This rank's src block as DTensor holds it -> its ceil block of p.src, padded (the
    caller's tensor is pinned: counted, never freed)."""
    base = p.base if p.base is not None else p.mesh
    ctx.alloc(local)
    ctx.pinned = local.untyped_storage().data_ptr()
    x = _contiguous(ctx, local)
    padded = p.src.local_shape(p.mesh, p.shape)
    into = regrids(base, p.shape, p.show(p.src), to_dtensor=False)
    for i, rg in enumerate(into):
        k = group_devices(base, rg.axes, ctx.me).index(ctx.me)
        shape = padded if i == len(into) - 1 else tuple(
            n if j != rg.dim else rg.to[k][1] - rg.to[k][0] for j, n in enumerate(x.shape))
        x = _regrid(ctx, base, x, rg, x.shape, shape)
    return _padded(ctx, x, padded)


def run_steps(ctx: _Context, plan: Plan, x: torch.Tensor) -> torch.Tensor:
    """The plan's steps on this rank's padded ceil block of its src."""
    layouts = plan.layouts()
    for k, step in enumerate(plan.steps):
        run = RUNNERS[step.op]
        if run is None:
            raise RedistError(f"{step.op}: the PyTorch engine does not run it (use the MPI "
                              "runtime)")
        x = run(ctx, step, x, layouts[k], layouts[k + 1], plan.problem.shape)
    return x


def to_dtensor_block(ctx: _Context, x: torch.Tensor, p: Problem) -> torch.Tensor:
    """This rank's padded ceil block of p.dst -> the block DTensor holds (valid extent)."""
    base = p.base if p.base is not None else p.mesh
    valid = list(p.dst.valid_shape(p.mesh, p.shape, ctx.me))
    back = regrids(base, p.shape, p.show(p.dst), to_dtensor=True)
    for rg in back:
        k = group_devices(base, rg.axes, ctx.me).index(ctx.me)
        shape = list(valid)
        shape[rg.dim] = rg.to[k][1] - rg.to[k][0]
        x = _regrid(ctx, base, x, rg, valid, shape)
        valid = shape
    return _contiguous(ctx, x[tuple(slice(0, n) for n in valid)])


def redistribute_with_stats(dtensor: DTensor, placements: Sequence[Any],
                            method: str = "normal", check: bool = True, *,
                            cache_dir: str | None = None) -> tuple[DTensor, RunStats]:
    plan, ctx, cached = _plan_and_context(dtensor, placements, method, check, cache_dir)
    with torch.no_grad():              # data movement only: the result is a new leaf
        out = execute(dtensor.to_local(), plan, ctx)
    result = DTensor.from_local(out, dtensor.device_mesh, tuple(placements), run_check=False,
                                shape=dtensor.shape, stride=dtensor.stride())
    return result, RunStats(ctx.peak, len(plan.steps), cached)


def redistribute(dtensor: DTensor, placements: Sequence[Any], method: str = "normal",
                 check: bool = True, *, cache_dir: str | None = None) -> DTensor:
    """`dtensor` with `placements` on the same DeviceMesh, equal to
    `dtensor.redistribute(dtensor.device_mesh, placements)`, moved by a verified plan.
    Collective: every rank of the mesh calls it with the same placements. check=False
    skips the one small all_gather per call by which ranks that were given different
    placements all fail instead of hanging (DTensor's own redistribute assumes they
    agree); it also tells every rank whether all hold the plan, else rank 0 sends it.
    Plans are proved once per problem on rank 0 and kept by every rank in
    redist.plan_cache (shared with redist.jax); `cache_dir` (or REDIST_PLAN_CACHE) also
    keeps them on rank 0's disk, authenticated."""
    return redistribute_with_stats(dtensor, placements, method, check,
                                   cache_dir=cache_dir)[0]
