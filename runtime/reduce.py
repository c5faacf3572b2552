"""The reductions on NumPy buffers (DESIGN §14): MPI `Reduce_scatter_block` and `Allreduce`
on the group communicators, in place.

  reduce_scatter  the block is cut, per reduced dim, into its G pieces (padded to G equal
                  pieces first where the dim is held whole and G does not divide it); one
                  chunk at a time, the same part of every piece is copied into the scratch
                  in group order and reduced there by an MPI_IN_PLACE Reduce_scatter_block;
                  the sum lands in this rank's own piece, whose part was just read (a
                  chunk of fewer elements than pieces: piece by piece, each part reduced
                  onto the piece's member by an MPI Reduce). Then the own piece is
                  compacted to the start of the buffer (as all_slice does). The block
                  plus one chunk.
  all_reduce      one MPI_IN_PLACE Allreduce of the block on the group. The block.
Sums are computed by MPI in the array's own type (integer sums are exact); dtypes MPI
cannot add (bfloat16, float8: moved as opaque bytes elsewhere) are refused.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from mpi4py import MPI

from redist.core.errors import RedistError
from redist.core.ops.reduce_scatter import split_contiguous

from .groups import MeshComm
from .memory import Held, MemoryTracker


def _sum_type(dtype: np.dtype) -> MPI.Datatype:
    dt = np.dtype(dtype)
    t = MPI._typedict.get(dt.char) if dt.kind in "biufc" else None
    if t is None or t.Get_size() != dt.itemsize:
        raise RedistError(f"the MPI runtime cannot add {dt.name} values (no MPI type for "
                          "them): pending sums of this dtype are not supported")
    return t


def all_reduce(step, mc: MeshComm, held: Held, mem: MemoryTracker, owned) -> np.ndarray:
    x = owned(held, mem)
    if not isinstance(x, np.ndarray) or not x.flags.writeable:   # a 0-d block's scalar
        y = mem.empty(np.shape(x), np.asarray(x).dtype)
        y[...] = x
        x = y
    comm = mc.group(tuple(step.axes))
    comm.Allreduce(MPI.IN_PLACE, [x.reshape(-1), _sum_type(x.dtype)], op=MPI.SUM)
    return x


def reduce_scatter(step, mc: MeshComm, held: Held, n_after: tuple[int, ...],
                   mem: MemoryTracker, owned, crop_pad, scratch_of) -> np.ndarray:
    """`owned`, `crop_pad` and `scratch_of` are the executor's helpers (execute.py)."""
    axes = tuple(a for dim in step.axes for a in dim)
    comm = mc.group(axes)
    g, me = comm.Get_size(), comm.Get_rank()
    sizes = [math.prod(mc.mesh.size(a) for a in new) for new in step.axes]
    t = _sum_type(held.a.dtype)
    full = tuple(s * n for s, n in zip(sizes, n_after, strict=True))
    # The chunk is one of the input block (before padding), as the figure counts it: a
    # zero-stride stand-in of its size, no memory.
    chunk_of = np.broadcast_to(np.zeros((), held.a.dtype), (held.a.size,))
    if tuple(held.a.shape) != full:
        # G equal pieces: pad a dim held whole (zeros after it) before cutting it (in
        # place when the block is ours, else into a new buffer).
        x = crop_pad(held, [0] * len(full), list(held.a.shape), full, mem)
    else:
        x = owned(held, mem)
    held.a = None
    if split_contiguous(tuple(n_after), step.axes):
        # The pieces lie in group order already: reduce in place, the sum lands at the
        # start (MPI_IN_PLACE), which is then the block.
        flat = x.reshape(-1)
        comm.Reduce_scatter_block(MPI.IN_PLACE, [flat, t], op=MPI.SUM)
        del flat
        box = Held(x, True)
        del x
        return crop_pad(box, [0] * len(n_after), list(n_after), n_after, mem)
    # (g_0, n_0, g_1, n_1, ...) with the piece axes brought to the front, group order.
    split = tuple(v for s, n in zip(sizes, n_after, strict=True) for v in (s, n))
    r = len(n_after)
    # a view (merging the piece axes into one would copy the block)
    v = x.reshape(split).transpose(tuple(range(0, 2 * r, 2)) + tuple(range(1, 2 * r, 2)))
    scratch = scratch_of(chunk_of, mem)
    mine = tuple(_digits(me, sizes))
    own = x.reshape(split)[tuple(i for j in mine for i in (j, slice(None)))]
    if scratch.size >= g:
        for idx, m in _chunks(tuple(n_after), scratch.size // g):
            part = scratch[: g * m].reshape(tuple(sizes) + _shape_of(tuple(n_after), idx))
            np.copyto(part, v[(slice(None),) * r + idx])
            comm.Reduce_scatter_block(MPI.IN_PLACE, [scratch[: g * m], t], op=MPI.SUM)
            own[idx] = scratch[:m].reshape(_shape_of(tuple(n_after), idx))
            del part
    else:
        # A chunk smaller than one element per piece (a tiny block): piece by piece, each
        # reduced onto its member with Reduce, through the same chunk of scratch.
        for k in range(g):
            piece = v[tuple(_digits(k, sizes))]
            for idx, m in _chunks(tuple(n_after), scratch.size):
                np.copyto(scratch[:m].reshape(_shape_of(tuple(n_after), idx)), piece[idx])
                comm.Reduce(MPI.IN_PLACE if k == me else scratch[:m],
                            [scratch[:m], t] if k == me else None, op=MPI.SUM, root=k)
                if k == me:
                    own[idx] = scratch[:m].reshape(_shape_of(tuple(n_after), idx))
            del piece
    mem.release(scratch)
    del v, own, scratch
    lo = [j * n for j, n in zip(mine, n_after, strict=True)]
    # Only the Held refers to the buffer now, so that it shrinks in place.
    box = Held(x, True)
    del x
    return crop_pad(box, lo, list(n_after), n_after, mem)


def _digits(k: int, sizes: list[int]) -> list[int]:
    out = []
    for s in reversed(sizes):
        out.append(k % s)
        k //= s
    return out[::-1]


def _chunks(shape: tuple[int, ...], limit: int):
    """Index tuples (ints, then one slice) covering `shape` in row-major order, each of at
    most `limit` elements (at least one element), and their sizes."""
    k = 0
    while k < len(shape) and math.prod(shape[k + 1:]) > limit:
        k += 1
    if k == len(shape):                    # rank 0
        yield (), 1
        return
    inner = math.prod(shape[k + 1:])
    batch = max(1, limit // max(1, inner))
    for lead in itertools.product(*[range(n) for n in shape[:k]]):
        for a in range(0, shape[k], batch):
            b = min(shape[k], a + batch)
            yield tuple(lead) + (slice(a, b),), (b - a) * inner


def _shape_of(shape: tuple[int, ...], idx: tuple) -> tuple[int, ...]:
    """The shape of x[idx] for x of `shape` (idx: ints, then one slice)."""
    k = len(idx) - 1
    sl = idx[-1]
    return (sl.stop - sl.start,) + tuple(shape[k + 1:]) if idx else tuple(shape)

