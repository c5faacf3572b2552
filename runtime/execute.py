"""The collectives on NumPy buffers with upper-case (buffer) mpi4py calls (DESIGN §7).

Every buffer inside a plan is C-contiguous and padded to the layout's local shape
(DESIGN §11). Each step holds its larger block plus at most one chunk of scratch (a 16th
of the block, core.semantics.working), except an exchange outside its in-place class:

  all_slice    in place: the kept block compacted to the start of the buffer, the rest
               given back (mremap); a view of the caller's buffer if it is not ours.
  all_permute  in place: the block (its valid box) sent in chunks, received through one
               chunk of scratch.
  all_to_all   in place: a local block transpose into send order (tiles through the
               chunk), pairwise exchanges of pieces (their valid boxes) through the chunk,
               a block transpose into the output order. Pads and trims of dims held whole
               happen in place.
               Consecutive all-to-alls between the same two dims, nothing padded, run
               as one over the union of their groups (runtime/fuse.py, fused_all_to_all).
  all_gather   in place: the buffer grown to G blocks (mremap; even blocks: the new slots
               neither zeroed nor touched, advised as huge pages), this rank's block moved
               into its slot, then (where ranks share cores) contiguous slots by
               point-to-point messages all posted at once, others by an MPI_IN_PLACE
               Allgather(v) with derived datatypes (valid elements only where blocks are
               uneven).
  all_exchange in place where every piece of a block goes to one device (core.ops.
               all_exchange.in_place): pieces grouped by a block transpose, swapped in
               rounds of permutations through the chunk, transposed into the new block.
               Elsewhere one Alltoallw over all devices, subarray datatypes per peer (no
               packing): input and output at once.
  reduce_scatter, all_reduce (pending sums): runtime/reduce.py, in place.
A buffer the caller keeps (not donated) is copied once before an in-place step. Which
algorithm runs depends only on shapes, never on who owns a buffer, so every rank of a
group makes the same MPI calls.

All allocations go through a MemoryTracker, so the reported peak counts every buffer.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable
from functools import cache

import numpy as np
from mpi4py import MPI

from redist.core.model.layout import Layout
from redist.core.ops import AllGather, AllSlice, AllToAll, Collective
from redist.core.ops.all_exchange import InPlace, InSlots, in_place, in_slots, slot_cycles
from redist.core.ops.common import mixed_radix
from redist.core.semantics.blocks import block_ranges, permute_sources
from redist.core.semantics.working import chunk_elements

from . import alloc, inplace, reduce
from .alloc import buffer_of
from .fuse import Run
from .groups import MeshComm, pair_rounds
from .memory import Held, MemoryTracker
from .waiting import nap_until_done

# In-place steps move data through one chunk of scratch (core.semantics.working: a 16th
# of the block); this caps it further (tests use it to cross many chunk boundaries).
CHUNK_CAP_BYTES = int(os.environ.get("REDIST_CHUNK_BYTES", 1 << 62))
# A piece whose contiguous runs are shorter than this is packed with NumPy rather than
# described by a derived datatype (MPICH's strided path is slower there; see benchmarks/).
PACK_BELOW_BYTES = int(os.environ.get("REDIST_PACK_BELOW_BYTES", 64 * 1024))
# wait_all: polls before it naps, and its naps (seconds).
POLLS_BEFORE_NAP = 50
NAP_MIN_S, NAP_MAX_S = 20e-6, 500e-6
# "0" turns the in-place all-to-all off (tests compare both paths).
INPLACE_ALL_TO_ALL = os.environ.get("REDIST_INPLACE", "1") != "0"
# "0" runs every exchange out of place (benchmarks compare both; the figure then
# understates what an in-place-class exchange holds).
INPLACE_EXCHANGE = os.environ.get("REDIST_INPLACE_EXCHANGE", "1") != "0"


@cache
def _byte_type(itemsize: int) -> MPI.Datatype:
    # A native unsigned type of the size where there is one: MPICH packs a subarray of a
    # contiguous-bytes type element by element (2.5-3.5x slower for bfloat16 boxes and
    # gather pieces, benchmarks/results/weight_sync_phases.md).
    native = {1: MPI.UINT8_T, 2: MPI.UINT16_T, 4: MPI.UINT32_T, 8: MPI.UINT64_T}
    if itemsize in native and native[itemsize].Get_size() == itemsize:
        return native[itemsize]
    t = MPI.BYTE.Create_contiguous(itemsize)
    t.Commit()
    return t


def mpi_type(dtype: np.dtype) -> MPI.Datatype:
    """The MPI type of a NumPy dtype; whole-byte ml_dtypes (bfloat16, float8) move as
    opaque bytes (nothing here computes on them). Only NumPy's own kinds are looked up by
    type character: ml_dtypes reuse characters of other types ('G' is float8_e4m3fnuz but
    32-byte complex long double to mpi4py), and an MPI type of another size would overrun
    the buffers."""
    dt = np.dtype(dtype)
    t = MPI._typedict.get(dt.char) if dt.kind in "biufc" else None
    return t if t is not None and t.Get_size() == dt.itemsize else _byte_type(dt.itemsize)


def _piece_type(shape: tuple[int, ...], dim: int, piece: int, dtype: np.dtype) -> MPI.Datatype:
    """The datatype of piece 0 of `shape` cut along `dim` into extents `piece`, with its
    extent resized so that piece k starts k extents later."""
    base = mpi_type(dtype)
    sub = list(shape)
    sub[dim] = piece
    t = base.Create_subarray(*_collapsed(shape, sub, [0] * len(shape)), order=MPI.ORDER_C)
    stride = piece * math.prod(shape[dim + 1:]) * np.dtype(dtype).itemsize
    r = t.Create_resized(0, stride)
    t.Free()
    r.Commit()
    return r


def _box_type(shape: tuple[int, ...], lo: tuple[int, ...], hi: tuple[int, ...],
              dtype: np.dtype) -> MPI.Datatype:
    """The elements [lo, hi) of a C-order array of `shape` (never empty: empty boxes are
    sent with a count of 0 instead)."""
    sub = [b - a for a, b in zip(lo, hi, strict=True)]
    t = mpi_type(dtype).Create_subarray(*_collapsed(shape, sub, lo), order=MPI.ORDER_C)
    t.Commit()
    return t


def _collapsed(shape, sub, start) -> tuple[list[int], list[int], list[int]]:
    """The same box with adjacent dims merged where the box spans the whole inner dim (or
    one index of the outer): MPICH walks a many-dim subarray far slower than the
    equivalent 2-dim one (3-8x for a contiguous 4-dim gather piece on this machine,
    benchmarks/results/weight_sync_phases.md)."""
    n, s, o = [int(shape[0])], [int(sub[0])], [int(start[0])]
    for d in range(1, len(shape)):
        if sub[d] == shape[d] or s[-1] == 1:
            n[-1], s[-1], o[-1] = (n[-1] * shape[d], s[-1] * shape[d] if sub[d] == shape[d]
                                   else sub[d], o[-1] * shape[d] + start[d])
        else:
            n.append(int(shape[d]))
            s.append(int(sub[d]))
            o.append(int(start[d]))
    return n, s, o


def wait_all(reqs: list[MPI.Request], nap: bool = False) -> None:
    """Wait for `reqs`; with `nap` (ranks share cores: groups.naps) without holding the
    core: a few polls, then naps that double up to NAP_MAX_S. MPICH's own wait spins for
    its whole time slice, so where ranks share cores every handoff of a lock-step exchange
    cost the partner a slice before it could answer (measured: 6-9 ms per chunk message
    with 8 ranks on 2 cores; napping ranks let it run). With a core per rank a nap only
    adds latency, so there it is MPI's own Waitall.
    Only for contiguous point-to-point messages: a nonblocking collective (or a derived
    type packed in pieces) advances only inside a poll, and naps between its many internal
    stages made gathers several times slower (Iallgatherv: gather-all 11.2 s against
    1.6 s blocking)."""
    if not nap:
        MPI.Request.Waitall(reqs)
        return
    nap_until_done(reqs, POLLS_BEFORE_NAP, NAP_MIN_S, NAP_MAX_S)


def _run_bytes(shape: tuple[int, ...], dim: int, piece: int, itemsize: int) -> int:
    """Length in bytes of the contiguous runs of one piece cut along `dim`."""
    return piece * math.prod(shape[dim + 1:]) * itemsize


def run_step(step: Collective, mc: MeshComm, shape: tuple[int, ...], before: Layout,
             after: Layout, held: Held, mem: MemoryTracker) -> np.ndarray:
    """Apply one step to this rank's padded block `held.a` (C-contiguous); returns the new
    one. If the runtime owns the input (held.own) the step may overwrite it, and frees it
    as soon as it is done with it."""
    n_after = after.local_shape(mc.mesh, shape)
    return RUNNERS[step.op](step, mc, shape, before, after, held, n_after, mem)


# One function per op (core/ops): (step, mc, shape, before, after, held, n_after, mem).
RUNNERS: dict[str, Callable[..., np.ndarray]] = {
    "all_slice": lambda st, mc, shape, b, a, held, n, mem: _slice(st, mc, held, n, mem),
    "all_gather": lambda st, mc, shape, b, a, held, n, mem: _gather(st, mc, shape, b, held, n,
                                                                    mem),
    "all_to_all": lambda st, mc, shape, b, a, held, n, mem: _all_to_all(st, mc, shape, b, held,
                                                                        n, mem),
    "all_permute": lambda st, mc, shape, b, a, held, n, mem: _permute(mc, shape, b, a, held,
                                                                      mem),
    "all_exchange": lambda st, mc, shape, b, a, held, n, mem: _exchange(mc, shape, b, a, held,
                                                                         n, mem),
    "reduce_scatter": lambda st, mc, shape, b, a, held, n, mem: reduce.reduce_scatter(
        st, mc, held, n, mem, _owned, _crop_pad, _scratch),
    "all_reduce": lambda st, mc, shape, b, a, held, n, mem: reduce.all_reduce(
        st, mc, held, mem, _owned),
}


def _slice(step: AllSlice, mc: MeshComm, held: Held, n_after: tuple[int, ...],
           mem: MemoryTracker) -> np.ndarray:
    x = held.a
    shape = x.shape
    lo = [mixed_radix(mc.mesh, new, mc.coords) * n_after[d] for d, new in enumerate(step.axes)]
    inside = all(lo[d] + n_after[d] <= shape[d] for d in range(x.ndim))
    if inside and not held.own:
        view = x[tuple(slice(lo[d], lo[d] + n_after[d]) for d in range(x.ndim))]
        if view.flags.c_contiguous:
            return view                              # no bytes: part of the caller's buffer
        del view
    # Keep the sub-block in place and give the rest back, so that the buffer is the block
    # (a dim held whole that splits into pieces reaching past its end is padded with zeros
    # after it).
    lo = [min(lo[d], shape[d]) for d in range(x.ndim)]
    keep = [min(n_after[d], shape[d] - lo[d]) for d in range(x.ndim)]
    del x
    return _crop_pad(held, lo, keep, n_after, mem)


def pad_block(held: Held, padded: tuple[int, ...], mem: MemoryTracker) -> np.ndarray:
    """The held block (a short trailing block, DESIGN §11) as the start of a zero-padded
    block of shape `padded`: grown in place when the runtime owns it (no second copy)."""
    return _crop_pad(held, [0] * len(padded), list(held.a.shape), padded, mem)


def trim_block(held: Held, valid: tuple[int, ...], mem: MemoryTracker) -> np.ndarray:
    """The held block's leading `valid` part (its padding cut off, DESIGN §11), compacted
    in place when the runtime owns it."""
    return _crop_pad(held, [0] * len(valid), list(valid), valid, mem)


def _crop_pad(held: Held, lo: list[int], keep: list[int], new: tuple[int, ...],
              mem: MemoryTracker) -> np.ndarray:
    """The held block's [lo, lo + keep) as the start of a block of shape `new`, zeros
    after it, in the held buffer (compacted, then resized and spread) when the runtime owns
    it, else in a new buffer. The held block is released."""
    x = held.a
    cur = list(x.shape)
    if not held.own:
        out = mem.zeros(new, x.dtype)
        out[tuple(slice(0, k) for k in keep)] = x[tuple(slice(a, a + k)
                                                         for a, k in zip(lo, keep, strict=True))]
        return out
    del x
    box = [_take_buffer(held)]
    n_new = math.prod(new)
    if n_new > box[0].size:
        box = [_resize(box, n_new, mem)]
    flat = box[0]
    if list(lo) != [0] * len(cur) or list(keep) != cur:
        inplace.compact_box(flat, tuple(cur), lo, keep)
        cur = list(keep)
    _spread(flat, cur, new)
    del flat
    if box[0].size != n_new:
        box = [_resize(box, n_new, mem)]
    return box[0].reshape(new)


def _spread(flat: np.ndarray, cur: list[int], new: tuple[int, ...]) -> None:
    """In place: the block of shape `cur` at the start of flat becomes the start of a
    block of shape `new` (>= cur in every dim), zeros after it."""
    for d in range(len(cur)):
        if cur[d] != new[d]:
            row = math.prod(cur[d:])
            stride = new[d] * math.prod(cur[d + 1:])
            outer = math.prod(cur[:d])
            inplace.expand(flat, outer, row, stride, 0)
            flat[:outer * stride].reshape(outer, stride)[:, row:] = 0
            cur[d] = new[d]


def _take_buffer(held: Held) -> np.ndarray:
    """The whole buffer behind the held (C-contiguous) block, flat, with the block moved
    to its start; the held reference is dropped (the buffer stays counted)."""
    x = held.a
    owner = buffer_of(x)
    off = (x.__array_interface__["data"][0] - owner.__array_interface__["data"][0]) \
        // x.itemsize
    size = x.size
    held.a = None
    del x
    flat = owner.reshape(-1)
    inplace.memmove(flat, 0, off, size)
    return flat


def _resize(box: list, n: int, mem: MemoryTracker, zero: bool = True) -> np.ndarray:
    """The flat buffer handed over in `box` with n elements, its start kept. The runtime's
    own buffer (a mapping, runtime/alloc.py) is resized in place by mremap when no other
    array is on it: pages move, no byte is copied, at any size. A NumPy buffer (a block a
    library caller handed over, or any buffer where there are no mappings) shrinks in
    place by realloc (glibc's splits the tail off or remaps it, never copies to shrink;
    another C library might copy, unseen). Otherwise the elements are copied into
    a new buffer, old and new both counted while both live. New elements are zero, or
    with zero=False (the caller overwrites every one of them) left as they come."""
    flat = box.pop()
    owner = buffer_of(flat)
    del flat
    m = alloc.mapping_of(owner)
    if m is not None:
        dtype, old = owner.dtype, owner.size
        mem.release(owner)
        del owner                    # resize fails while any array is on the mapping
        out = alloc.resize(m, dtype, old, n, zero)
        if out is not None:
            return mem.hold(out)
        owner = mem.hold(alloc.on(m, dtype, old))        # shared after all: copied below
    elif n <= owner.size and owner.flags.owndata and owner.flags.c_contiguous \
            and sys.getrefcount(owner) <= 2:   # ours alone: `owner` and getrefcount's own
        mem.release(owner)
        owner.resize((n,), refcheck=False)
        return mem.hold(owner)
    out = (mem.zeros if zero else mem.empty)((n,), owner.dtype)
    k = min(n, owner.size)
    out[:k] = owner.reshape(-1)[:k]
    mem.release(owner)
    return out


def _permute(mc: MeshComm, gshape: tuple[int, ...], before: Layout, after: Layout,
             held: Held, mem: MemoryTracker) -> np.ndarray:
    """The block to its new holder, valid elements only (DESIGN §11): an uneven block is
    compacted to its valid box first, the received one spread back to the padded shape."""
    sources = permute_sources(mc.mesh, before, after)
    me = mc.rank
    if sources[me] == me:
        return held.a
    dest = sources.index(me)
    x = _owned(held, mem)
    padded, flat = x.shape, x.reshape(-1)
    mine = before.valid_shape(mc.mesh, gshape, me)
    theirs = before.valid_shape(mc.mesh, gshape, sources[me])   # my block after the step
    if mine != padded:
        inplace.compact_box(flat, padded, [0] * len(padded), mine)
    scratch = _scratch(x, mem)
    _swap(mc.cart, flat, dest, sources[me], scratch, mc.naps, math.prod(mine),
          math.prod(theirs))
    mem.release(scratch)
    if theirs != padded:
        _spread(flat, list(theirs), padded)
    return x


def _owned(held: Held, mem: MemoryTracker) -> np.ndarray:
    """The input itself if the runtime may overwrite it, else a copy. (Every rank of a
    group must run the same algorithm, whoever owns its buffer, so ownership never picks
    one.)"""
    if held.own:
        return held.a
    y = mem.empty(held.a.shape, held.a.dtype)
    y[...] = held.a
    return y


def _scratch(block: np.ndarray, mem: MemoryTracker) -> np.ndarray:
    """The one chunk of scratch of an in-place step on `block` (the figure's chunk, or less
    under REDIST_CHUNK_BYTES); the caller releases it."""
    n = max(1, min(chunk_elements(block.size), CHUNK_CAP_BYTES // block.itemsize))
    return mem.empty((n,), block.dtype, fixed=True)


def _swap(comm: MPI.Comm, flat: np.ndarray, dest: int, source: int, scratch: np.ndarray,
          nap: bool, n_send: int | None = None, n_recv: int | None = None) -> None:
    """Send flat[:n_send] to dest and receive flat[:n_recv] from source (both default to
    all of flat), holding one chunk (`scratch`) besides: messages of a chunk (the same on
    every rank: the scratch, capped by the buffer), all sends posted at once; message 0 is
    received into the scratch and message i into the place of message i - 1 as soon as
    that place is free (sent, or past what is sent); then the received data moves up by
    one chunk (memmove) and message 0 comes back from the scratch."""
    n_s = flat.size if n_send is None else n_send
    n_r = flat.size if n_recv is None else n_recv
    step = max(1, min(scratch.size, flat.size))
    t = mpi_type(flat.dtype)
    k_s, k_r = -(-n_s // step), -(-n_r // step)
    sends = [comm.Isend([flat[i * step:min(n_s, (i + 1) * step)], t], dest, 12)
             for i in range(k_s)]
    recvs = [comm.Irecv([scratch[:min(step, n_r)], t], source, 12)] if k_r else []
    for i in range(1, k_r):
        if i - 1 < k_s:
            wait_all([sends[i - 1]], nap)
        m = min(step, n_r - i * step)
        recvs.append(comm.Irecv([flat[(i - 1) * step:(i - 1) * step + m], t], source, 12))
    wait_all(sends + recvs, nap)
    if k_r:
        inplace.memmove(flat, step, 0, n_r - step)
        flat[:min(step, n_r)] = scratch[:min(step, n_r)]


def slot_digits(sizes: list[int], k: int) -> list[int]:
    """Gather group member k's slot per dim: the mixed-radix digits of k over the dims'
    numbers of pieces (runtime/cross.py fills the slots as the transfer's pieces arrive)."""
    digits = [0] * len(sizes)
    for d in reversed(range(len(sizes))):
        digits[d], k = k % sizes[d], k // sizes[d]
    return digits


def _gather(step: AllGather, mc: MeshComm, gshape: tuple[int, ...], before: Layout,
            held: Held, n_after: tuple[int, ...], mem: MemoryTracker) -> np.ndarray:
    """In place: the output is the input's buffer grown to G blocks (mremap), this rank's
    block moved into its slot, then an MPI_IN_PLACE Allgather(v) fills the other slots.
    Only valid elements are sent (DESIGN §11): where some member's block is short, each
    member's count is its valid extent."""
    x = held.a
    axes = tuple(a for dim in step.axes for a in dim)
    comm = mc.group(axes)
    sizes = [math.prod(mc.mesh.size(a) for a in gone) for gone in step.axes]
    shape = x.shape
    full = tuple(shape[d] * sizes[d] for d in range(x.ndim))   # G pieces, padding kept
    dtype = x.dtype
    digits = slot_digits(sizes, comm.Get_rank())
    if held.own:
        del x
        # Even blocks: every element is written (this slot here, the rest received), so
        # the new slots are not zeroed first; uneven ones keep zero padding.
        even = all(v == shape for v in _member_extents(mc, axes, gshape, before))
        out = _resize([_take_buffer(held)], math.prod(full), mem, zero=not even)
    else:                            # the caller's block stays alive beside the output
        out = mem.empty((math.prod(full),), dtype)
        out[:x.size] = x.reshape(-1)
        del x
    # Spread the block (at the start of `out`) into its slot, one gathered dim at a time.
    cur = list(shape)
    for d in range(len(shape)):
        if sizes[d] > 1:
            row = math.prod(cur[d:])
            inplace.expand(out, math.prod(cur[:d]), row, sizes[d] * row, digits[d] * row)
            cur[d] *= sizes[d]
    box = [out.reshape(full)]
    del out                          # the box holds the only reference: trimmed in place
    return gather_in_slots(step, mc, gshape, before, box, shape, n_after, mem)


def gather_in_slots(step: AllGather, mc: MeshComm, gshape: tuple[int, ...], before: Layout,
                    box: list, shape: tuple[int, ...], n_after: tuple[int, ...],
                    mem: MemoryTracker) -> np.ndarray:
    """The rest of `_gather`: the block handed over in `box` has this member's block (of
    padded shape `shape`) in its slot; an MPI_IN_PLACE Allgather(v) fills the others (then
    the padding past a dim held whole is cut). Two-mesh plans receive straight into the
    slot of a block of shape n_after (runtime/cross.py; a slot past a dim's end is cut
    short, and only valid elements are sent)."""
    out = box.pop()
    axes = tuple(a for dim in step.axes for a in dim)
    comm = mc.group(axes)
    g = comm.Get_size()
    sizes = [math.prod(mc.mesh.size(a) for a in gone) for gone in step.axes]
    full, dtype = out.shape, out.dtype
    dims = [d for d, gone in enumerate(step.axes) if gone]
    base = mpi_type(dtype)
    valid = _member_extents(mc, axes, gshape, before)
    if any(v != shape for v in valid):
        _gather_valid(comm, out, shape, sizes, dims, valid)
    elif len(dims) == 1 and math.prod(full[:dims[0]]) == 1 and mc.naps:
        _gather_slots(comm, out.reshape(-1))
    elif len(dims) == 1:
        t = _piece_type(full, dims[0], shape[dims[0]], dtype)
        comm.Allgather(MPI.IN_PLACE, [out, 1, t])
        t.Free()
    else:
        # Member k's block starts at an offset given by the digits of k over each dim's
        # gathered axes; a one-element-extent subarray type puts it in place.
        block = base.Create_subarray(list(full), list(shape), [0] * len(shape),
                                     order=MPI.ORDER_C)
        one = block.Create_resized(0, dtype.itemsize)
        block.Free()
        one.Commit()
        strides = [math.prod(full[d + 1:]) for d in range(len(shape))]
        displs = []
        for k in range(g):
            off, rest = 0, k
            for d in reversed(range(len(sizes))):
                off += (rest % sizes[d]) * shape[d] * strides[d]
                rest //= sizes[d]
            displs.append(off)
        comm.Allgatherv(MPI.IN_PLACE, [out, [1] * g, displs, one])
        one.Free()
    if full == tuple(n_after):
        return out
    # Gathered into a dim held whole: the G padded pieces reach past its end; keep N.
    done = Held(out, True)
    del out                          # `done` holds the only reference: trimmed in place
    return _crop_pad(done, [0] * len(full), list(n_after), n_after, mem)


def _gather_slots(comm: MPI.Comm, flat: np.ndarray) -> None:
    """An in-place gather of contiguous slots (member k's: the k-th g-th of flat), every
    message posted at once: my slot to each member, each other slot from its member; the
    waits nap. Used where ranks share cores: there MPI's own Allgather, a ring of g-1
    lock-step stages, costs a scheduler round per stage (measured, 8 ranks on 2 cores,
    1 MiB slots: Allgather 204 ms, this 63 ms; benchmarks/results/
    runtime-2026-12-01-64mib-rt16d.md). With a core per rank MPI's tuned collective stays
    (unmeasured here; a network may not like g-1 messages at once). Nothing is allocated:
    every message lands in its own slot."""
    g, me = comm.Get_size(), comm.Get_rank()
    n = flat.size // g
    t = mpi_type(flat.dtype)
    reqs = [comm.Irecv([flat[k * n:(k + 1) * n], t], k, 14) for k in range(g) if k != me]
    mine = flat[me * n:(me + 1) * n]
    reqs += [comm.Isend([mine, t], (me + r) % g, 14) for r in range(1, g)]
    wait_all(reqs, True)


def _member_extents(mc: MeshComm, axes: tuple[str, ...], gshape: tuple[int, ...],
                    before: Layout) -> list[tuple[int, ...]]:
    """The valid extent of each group member's block (group rank k: the mixed-radix digits
    of k over `axes`, the other coordinates mine)."""
    out = []
    for k in range(math.prod(mc.mesh.size(a) for a in axes)):
        coords, rest = dict(mc.coords), k
        for a in reversed(axes):
            coords[a], rest = rest % mc.mesh.size(a), rest // mc.mesh.size(a)
        out.append(before.valid_shape(mc.mesh, gshape, mc.mesh.device(coords)))
    return out


def _gather_valid(comm: MPI.Comm, out: np.ndarray, shape: tuple[int, ...], sizes: list[int],
                  dims: list[int], valid: list[tuple[int, ...]]) -> None:
    """The gather of uneven blocks, valid elements only: one gathered dim, an in-place
    Allgatherv counting rows of that dim (a row: the valid box of the other dims); several,
    each member's valid box sent to every other one (its own subarray type each)."""
    full, me, g = out.shape, comm.Get_rank(), comm.Get_size()
    slot = []                                    # each member's slot origin, per dim
    for k in range(g):
        origin, rest = [0] * len(full), k
        for d in reversed(range(len(full))):
            origin[d], rest = (rest % sizes[d]) * shape[d], rest // sizes[d]
        slot.append(origin)
    if len(dims) == 1:
        d = dims[0]
        if not all(v for e, v in enumerate(valid[me]) if e != d):
            return                               # an empty box in a dim not gathered: none
        row = list(valid[me])
        row[d] = 1
        t = mpi_type(out.dtype).Create_subarray(list(full), row, [0] * len(full), order=MPI.ORDER_C)
        one = t.Create_resized(0, math.prod(full[d + 1:]) * out.itemsize)
        t.Free()
        one.Commit()
        comm.Allgatherv(MPI.IN_PLACE, [out, [v[d] for v in valid],
                                       [o[d] for o in slot], one])
        one.Free()
        return
    def box(k: int) -> MPI.Datatype:
        return _box_type(full, tuple(slot[k]),
                         tuple(o + v for o, v in zip(slot[k], valid[k], strict=True)), out.dtype)
    made, reqs = [], []
    for k in range(g):
        if k != me and all(valid[k]):
            made.append(box(k))
            reqs.append(comm.Irecv([out, 1, made[-1]], k, 13))
    if all(valid[me]):
        made.append(box(me))
        reqs += [comm.Isend([out, 1, made[-1]], k, 13) for k in range(g) if k != me]
    MPI.Request.Waitall(reqs)
    for t in made:
        t.Free()


def _all_to_all(step: AllToAll, mc: MeshComm, gshape: tuple[int, ...], before: Layout,
                held: Held, n_after: tuple[int, ...], mem: MemoryTracker) -> np.ndarray:
    comm = mc.group(step.axes)
    s, t = step.src_dim, step.dst_dim
    g = comm.Get_size()
    piece_t = n_after[t]
    shape_in = held.a.shape
    if shape_in[t] != g * piece_t:
        # dst_dim held whole (DESIGN §11): pad it to g pieces first.
        padded = shape_in[:t] + (g * piece_t,) + shape_in[t + 1:]
        held = Held(_crop_pad(held, [0] * len(shape_in), list(shape_in), padded, mem), True)
        shape_in = padded
    full = tuple(shape_in[d] * (g if d == s else 1) if d != t else piece_t
                 for d in range(len(shape_in)))          # src_dim: g padded pieces
    if INPLACE_ALL_TO_ALL:
        x = _owned(held, mem)
        if held.own:
            held.a = None            # the output is this buffer: no other reference to it
        valid = _member_extents(mc, step.axes, gshape, before)
        even = all(v == tuple(shape_in) for v in valid)
        out = _all_to_all_inplace(comm, x, s, t, g, piece_t, mem, mc.naps,
                                  None if even else valid)
        del x
    else:
        out = _all_to_all_out_of_place(comm, held, s, t, g, full, piece_t, mem)
    if full == tuple(n_after):
        return out
    # src_dim held whole: keep N.
    done = Held(out, True)
    del out                          # `done` holds the only reference: trimmed in place
    return _crop_pad(done, [0] * len(full), list(n_after), n_after, mem)


def fused_all_to_all(run: Run, mc: MeshComm, held: Held, mem: MemoryTracker) -> np.ndarray:
    """The all-to-alls of `run` (runtime/fuse.py: nothing padded) as one in-place
    all-to-all over the group of all their axes: member k (its number over run.group) gets
    the piece numbered by its coordinates over run.pieces, so the pieces go out in a
    permuted order."""
    mesh = mc.mesh
    comm = mc.group(run.group)
    g = comm.Get_size()
    sends = []
    for k in range(g):
        coords, rest = {}, k
        for a in reversed(run.group):
            coords[a], rest = rest % mesh.size(a), rest // mesh.size(a)
        sends.append(mixed_radix(mesh, run.pieces, coords))
    x = _owned(held, mem)
    if held.own:
        held.a = None                # the output is this buffer: no other reference to it
    piece_t = x.shape[run.dst_dim] // g
    return _all_to_all_inplace(comm, x, run.src_dim, run.dst_dim, g, piece_t, mem, mc.naps,
                               sends=sends)


def _all_to_all_out_of_place(comm: MPI.Comm, held: Held, s: int, t: int, g: int,
                             full: tuple[int, ...], piece_t: int,
                             mem: MemoryTracker) -> np.ndarray:
    x = held.a
    dtype = x.dtype
    recv = _piece_type(full, s, x.shape[s], dtype)
    if t == 0 or _run_bytes(x.shape, t, piece_t, x.itemsize) >= PACK_BELOW_BYTES:
        out = mem.empty(full, dtype)
        send = _piece_type(x.shape, t, piece_t, dtype)
        comm.Alltoall([x, 1, send], [out, 1, recv])
        send.Free()
        del x
        held.free(mem)
    else:
        # Pack the pieces for each peer contiguously (one strided NumPy copy), let the
        # input go if we may, then receive straight into the output.
        cut = x.reshape(x.shape[:t] + (g, piece_t) + x.shape[t + 1:])
        packed = mem.empty((g,) + tuple(np.moveaxis(cut, t, 0).shape[1:]), dtype, fixed=True)
        np.copyto(packed, np.moveaxis(cut, t, 0))
        del x, cut
        held.free(mem)
        out = mem.empty(full, dtype)
        comm.Alltoall([packed, packed.size // g, mpi_type(dtype)], [out, 1, recv])
        mem.release(packed)
        del packed
    recv.Free()
    return out


def _transposes(shape: tuple[int, ...], s: int, t: int, g: int, piece_t: int):
    """The two block transposes of the in-place all-to-all (see _all_to_all_inplace)."""
    pre_t = math.prod(shape[:t])
    post_t = piece_t * math.prod(shape[t + 1:])
    # Into send order: (pre_t, g, post_t) -> (g, pre_t, post_t).
    first = (pre_t, g, post_t)
    # Into output order: (g, rest...) where the received piece has shape `shape` with dim t
    # cut to piece_t; g moves to sit just before dim s.
    piece = list(shape)
    piece[t] = piece_t
    before_s = math.prod(piece[:s])
    from_s = math.prod(piece[s:])
    second = (g, before_s, from_s)
    return (*first, *second)


def _all_to_all_inplace(comm: MPI.Comm, x: np.ndarray, s: int, t: int, g: int, piece_t: int,
                        mem: MemoryTracker, nap: bool = False,
                        valid: list[tuple[int, ...]] | None = None,
                        sends: list[int] | None = None) -> np.ndarray:
    """x's piece j (its dim t cut into g) goes to member j (with `sends`: piece sends[k]
    goes to member k, a permutation); member k's piece lands at block k of dim s. Three
    passes over one buffer and one chunk of scratch: transpose pieces into send order
    (then, with `sends`, permute them as whole pieces through the chunk), swap piece j with
    member j in pairwise rounds, transpose into output order. With `valid` (each member's
    valid extents: uneven blocks), only a piece's valid box is sent: compacted within the
    piece's place before the swap, the received box spread back (zeros around it) after."""
    flat = x.reshape(-1)
    rows1, cols1, blk1, rows2, cols2, blk2 = _transposes(x.shape, s, t, g, piece_t)
    scratch = _scratch(x, mem)
    inplace.transpose_blocks(flat, rows1, cols1, blk1, scratch)
    size = flat.size // g
    if sends is not None:
        inplace.permute_blocks(flat, sends, size, scratch)
    me = comm.Get_rank()
    piece = list(x.shape)
    piece[t] = piece_t

    def box(extents: tuple[int, ...], j: int) -> list[int]:
        """The valid box of piece j of a block with these valid extents."""
        out = list(extents)
        out[t] = max(0, min(piece_t, extents[t] - j * piece_t))
        return out
    for partner in pair_rounds(g, me):
        if partner is None:
            continue
        region = flat[partner * size:(partner + 1) * size]
        if valid is None:
            _swap(comm, region, partner, partner, scratch, nap)
            continue
        out_box, in_box = box(valid[me], partner), box(valid[partner], me)
        if out_box != piece:
            inplace.compact_box(region, tuple(piece), [0] * len(piece), out_box)
        _swap(comm, region, partner, partner, scratch, nap, math.prod(out_box),
              math.prod(in_box))
        if in_box != piece:
            _spread(region, in_box, tuple(piece))
    inplace.transpose_blocks(flat, rows2, cols2, blk2, scratch)
    mem.release(scratch)
    out_shape = list(x.shape)
    out_shape[t] = piece_t
    out_shape[s] = x.shape[s] * g
    return flat.reshape(out_shape)


def _exchange_in_place(mc: MeshComm, ip: InPlace, held: Held, n_after: tuple[int, ...],
                       mem: MemoryTracker) -> np.ndarray:
    """The exchange in one buffer and one chunk of scratch: the block's pieces grouped
    (an in-place transpose of (q_0, m_0, q_1, m_1, ...) into (q_0, q_1, ..., m_0, m_1,
    ...)), then Q rounds in each of which every device sends one piece and receives one
    into its place (a permutation of the devices, pieces kept stay), then the received
    pieces permuted into after-piece order and transposed back into the after block."""
    x = _owned(held, mem)
    if held.own:
        held.a = None                # the output is this buffer: no other reference to it
    n_before = x.shape
    flat = x.reshape(-1)
    del x
    scratch = _scratch(flat, mem)
    _piece_order(flat, n_before, ip.before, ip.piece, scratch, forward=True)
    size = math.prod(ip.piece)
    me, s = mc.rank, ip.rounds
    for r in range(ip.pieces):
        dest, k = int(s.dest[r, me]), int(s.slot[r, me])
        if dest != me:
            _swap(mc.cart, flat[k * size:(k + 1) * size], dest, int(s.source[r, me]),
                  scratch, mc.naps)
    inplace.permute_blocks(flat, np.argsort(s.lands[me]).tolist(), size, scratch)
    _piece_order(flat, n_after, ip.after, ip.piece, scratch, forward=False)
    mem.release(scratch)
    return flat.reshape(n_after)


def _piece_order(flat: np.ndarray, n: tuple[int, ...], q: tuple[int, ...],
                 m: tuple[int, ...], scratch: np.ndarray, forward: bool) -> None:
    """In place: a block of extents n = q * m per dim, viewed as (q_0, m_0, q_1, m_1, ...),
    into (q_0, q_1, ..., m_0, m_1, ...) (forward: each piece contiguous, pieces row-major)
    or back. One block transpose per dim with q_d > 1, over the q's before it."""
    dims = range(len(n)) if forward else reversed(range(len(n)))
    for d in dims:
        outer, ms = math.prod(q[:d]), math.prod(m[:d])
        inner = m[d] * math.prod(n[d + 1:])
        rows, cols = (ms, q[d]) if forward else (q[d], ms)
        if rows == 1 or cols == 1:
            continue
        blk = rows * cols * inner
        for o in range(outer):
            inplace.transpose_blocks(flat[o * blk:(o + 1) * blk], rows, cols, inner, scratch)


def _exchange_in_slots(mc: MeshComm, ins: InSlots, held: Held, n_after: tuple[int, ...],
                       mem: MemoryTracker) -> np.ndarray:
    """The exchange between blocks of different sizes in one buffer of the larger one's
    size and one chunk of scratch: the buffer grown first (mremap) where the after block
    is larger, the box of the before-pieces some device needs compacted to its start and
    its pieces grouped (_piece_order), the rounds of
    core/semantics/slots.py (each message whole, into a slot free when its round starts,
    a round's messages posted at once), the after-pieces permuted into order at the start,
    the buffer trimmed (mremap) where the after block is smaller, the pieces transposed
    into the after block."""
    size = math.prod(ins.piece)
    cap = ins.buffer
    n_before = held.a.shape
    lb = held.a.size
    if held.own:
        box = [_take_buffer(held)]
        if box[0].size != cap:
            box = [_resize(box, cap, mem)]
    else:                            # the caller's block stays alive beside ours
        box = [mem.empty((cap,), held.a.dtype)]
        box[0][:lb] = held.a.reshape(-1)
    flat = box[0]
    # The chunk only where some device needs it (the figure's rule, the same on all ranks).
    scratch = _scratch(flat, mem) if ins.scratch else None
    me, t = mc.rank, mpi_type(flat.dtype)
    q = tuple(int(v) for v in ins.box_q[me])
    kept = tuple(a * e for a, e in zip(q, ins.piece, strict=True))
    if kept != tuple(n_before):
        inplace.compact_box(flat, tuple(n_before),
                            [int(a) * e for a, e in zip(ins.box_lo[me], ins.piece, strict=True)],
                            kept)
    if all(q):
        _piece_order(flat[:math.prod(kept)], kept, q, ins.piece, scratch, forward=True)
    for row in ins.schedule.rounds:
        reqs = [mc.cart.Irecv([flat[sv * size:(sv + 1) * size], t], int(u), 15)
                for u, _, _, sv in row[row[:, 2] == me]]
        reqs += [mc.cart.Isend([flat[su * size:(su + 1) * size], t], int(v), 15)
                 for _, su, v, _ in row[row[:, 0] == me]]
        wait_all(reqs, mc.naps)
        del reqs
    _arrange_slots(flat, ins.schedule.lands[me].tolist(), ins.schedule.cap, size, scratch)
    la = math.prod(n_after)
    del flat
    if box[0].size != la:
        box = [_resize(box, la, mem)]
    flat = box.pop()
    if scratch is not None:
        _piece_order(flat, n_after, ins.after, ins.piece, scratch, forward=False)
        mem.release(scratch)
    return flat.reshape(n_after)


def _arrange_slots(flat: np.ndarray, lands: list[int], cap: int, size: int,
                   scratch: np.ndarray | None) -> None:
    """In place: after-piece j (in slot lands[j]) into slot j. A cycle through a free slot
    is rotated through it (each piece moved once, nothing saved); any other through the
    first slot past the after block, or where the buffer has none, through the chunk
    (core.ops.all_exchange.needs_scratch)."""
    rows = flat.reshape(cap, size)
    cycles, holes = slot_cycles(lands, cap)
    for cyc, hole in zip(cycles, holes, strict=True):
        if hole is not None:
            for a, b in zip(cyc, cyc[1:], strict=False):
                rows[a] = rows[b]             # slot a gets its piece; b is the next hole
    for cyc in (c for c, h in zip(cycles, holes, strict=True) if h is None):
        if cap > len(lands):
            # Slot len(lands) holds nothing needed now: every slot past the after block is
            # in a cycle through a free slot (it ends there), done above.
            rows[len(lands)] = rows[cyc[0]]
            for a, b in zip(cyc, cyc[1:], strict=False):
                rows[a] = rows[b]
            rows[cyc[-1]] = rows[len(lands)]
            continue
        for lo in range(0, size, scratch.size):
            hi = min(size, lo + scratch.size)
            scratch[:hi - lo] = rows[cyc[0], lo:hi]
            for a, b in zip(cyc, cyc[1:], strict=False):
                rows[a, lo:hi] = rows[b, lo:hi]
            rows[cyc[-1], lo:hi] = scratch[:hi - lo]


def _exchange(mc: MeshComm, shape: tuple[int, ...], before: Layout, after: Layout,
              held: Held, n_after: tuple[int, ...], mem: MemoryTracker) -> np.ndarray:
    """Every element of the new block from its canonical holder (the holder whose
    coordinates on the axes replicated before are ours): in place in rounds where
    core.ops.all_exchange.in_place says so, else one Alltoallw over all devices."""
    ip = in_place(mc.mesh, shape, before, after)
    if ip is not None and INPLACE_EXCHANGE:
        return _exchange_in_place(mc, ip, held, n_after, mem)
    slots = in_slots(mc.mesh, shape, before, after)
    if slots is not None and INPLACE_EXCHANGE:
        return _exchange_in_slots(mc, slots, held, n_after, mem)
    mesh = mc.mesh
    me = mc.rank
    x = held.a
    lo_b, hi_b = block_ranges(mesh, shape, before)
    lo_a, hi_a = block_ranges(mesh, shape, after)
    c_b = before.local_shape(mesh, shape)
    replicated = [a for a in mesh.names if a not in before.used_axes()]
    coords = mesh.coords(me)
    ndev = mesh.num_devices
    out = mem.zeros(n_after, x.dtype)
    base = mpi_type(x.dtype)
    null = base.Create_contiguous(0)
    null.Commit()
    send_types, recv_types, made = [null] * ndev, [null] * ndev, []
    send_counts, recv_counts = [0] * ndev, [0] * ndev

    def canonical_for(peer_coords: dict) -> bool:
        return all(peer_coords[a] == coords[a] for a in replicated)

    for peer in range(ndev):
        pc = mesh.coords(peer)
        if not canonical_for(pc):
            continue
        # I send to peer: my valid before-block ∩ peer's after-block.
        lo = np.maximum(lo_b[me], lo_a[peer])
        hi = np.minimum(hi_b[me], hi_a[peer])
        if np.all(hi > lo):
            if peer == me:
                dst = tuple(slice(int(a - b), int(c - b)) for a, c, b in
                            zip(lo, hi, lo_a[me], strict=True))
                src = tuple(slice(int(a - b), int(c - b)) for a, c, b in
                            zip(lo, hi, lo_b[me], strict=True))
                out[dst] = x[src]
            else:
                ty = _box_type(tuple(c_b), tuple(int(v) for v in lo - lo_b[me]),
                               tuple(int(v) for v in hi - lo_b[me]), x.dtype)
                send_types[peer], send_counts[peer] = ty, 1
                made.append(ty)
        # Peer sends to me: its valid before-block ∩ my after-block.
        if peer != me:
            lo = np.maximum(lo_b[peer], lo_a[me])
            hi = np.minimum(hi_b[peer], hi_a[me])
            if np.all(hi > lo):
                ty = _box_type(tuple(n_after), tuple(int(v) for v in lo - lo_a[me]),
                               tuple(int(v) for v in hi - lo_a[me]), x.dtype)
                recv_types[peer], recv_counts[peer] = ty, 1
                made.append(ty)
    zeros = [0] * ndev
    mc.cart.Alltoallw([x, send_counts, zeros, send_types], [out, recv_counts, zeros, recv_types])
    for ty in made:
        ty.Free()
    null.Free()
    del x
    held.free(mem)
    return out
