"""The four collectives on NumPy buffers with upper-case (buffer) mpi4py calls.

All-to-alls and single-dim gathers use derived datatypes (a subarray resized to one
piece's stride) so data lands straight in the output buffer with no local reorder.
"""

from __future__ import annotations

import math
import os

import numpy as np
from mpi4py import MPI

from redist.core.model.layout import Layout
from redist.core.semantics.blocks import permute_sources
from redist.core.semantics.collectives import AllGather, AllPermute, AllSlice, AllToAll, Collective
from redist.core.semantics.sourcemap import mixed_radix

from .groups import MeshComm
from .memory import MemoryTracker


def _mpi_type(dtype: np.dtype) -> MPI.Datatype:
    return MPI._typedict[np.dtype(dtype).char]


def _piece_type(shape: tuple[int, ...], dim: int, piece: int, dtype: np.dtype) -> MPI.Datatype:
    """The datatype of piece 0 of `shape` cut along `dim` into extents `piece`, with its
    extent resized so that piece k starts k extents later."""
    base = _mpi_type(dtype)
    sub = list(shape)
    sub[dim] = piece
    t = base.Create_subarray(list(shape), sub, [0] * len(shape), order=MPI.ORDER_C)
    stride = piece * math.prod(shape[dim + 1:]) * np.dtype(dtype).itemsize
    r = t.Create_resized(0, stride)
    t.Free()
    r.Commit()
    return r


# A piece whose contiguous runs are shorter than this many bytes is packed with NumPy
# rather than described by a derived datatype (MPICH's strided path is slower there; see
# benchmarks/). Overridable for tuning and so tests can force either path.
PACK_BELOW_BYTES = int(os.environ.get("REDIST_PACK_BELOW_BYTES", 64 * 1024))


def _run_bytes(shape: tuple[int, ...], dim: int, piece: int, itemsize: int) -> int:
    """Length in bytes of the contiguous runs of one piece cut along `dim`."""
    return piece * math.prod(shape[dim + 1:]) * itemsize


def run_step(step: Collective, mc: MeshComm, shape: tuple[int, ...], before: Layout,
             after: Layout, x: np.ndarray, mem: MemoryTracker,
             consume: bool = False) -> np.ndarray:
    """Apply one step to this rank's block `x` (C-contiguous); returns the new block.
    With consume=True the step may stop counting x's bytes as soon as it has read them."""
    mesh = mc.mesh
    n_after = after.local_shape(mesh, shape)
    if isinstance(step, AllSlice):
        idx = []
        for d, new in enumerate(step.axes):
            k = mixed_radix(mesh, new, mc.coords)
            idx.append(slice(k * n_after[d], (k + 1) * n_after[d]))
        view = x[tuple(idx)]
        # A slice of the leading dims of a contiguous block is itself contiguous: keep
        # the view (no bytes); otherwise copy the kept part out.
        if view.flags.c_contiguous:
            return view
        out = mem.empty(n_after, x.dtype)
        np.copyto(out, view)
        return out
    if isinstance(step, AllGather):
        axes = tuple(a for dim in step.axes for a in dim)
        comm = mc.group(axes)
        dims = [d for d, gone in enumerate(step.axes) if gone]
        if len(dims) == 1:
            out = mem.empty(n_after, x.dtype)
            t = _piece_type(n_after, dims[0], x.shape[dims[0]], x.dtype)
            comm.Allgather([x, x.size, _mpi_type(x.dtype)], [out, 1, t])
            t.Free()
            return out
        g = comm.Get_size()
        sizes = [math.prod(mesh.size(a) for a in gone) for gone in step.axes]
        if x.shape[-1] * x.itemsize < PACK_BELOW_BYTES:
            # Short contiguous runs: receive member blocks contiguously in group order, let
            # the input go if we may, and interleave them into the output with one copy.
            recv = mem.empty((g,) + x.shape, x.dtype)
            comm.Allgather([x, x.size, _mpi_type(x.dtype)],
                           [recv, x.size, _mpi_type(x.dtype)])
            if consume:
                mem.release(x)
            out = mem.empty(n_after, x.dtype)
            r = len(shape)
            order = [i for d in range(r) for i in (d, r + d)]
            np.copyto(out.reshape(tuple(v for d in range(r) for v in (sizes[d], x.shape[d]))),
                      recv.reshape(tuple(sizes) + x.shape).transpose(order))
            mem.release(recv)
            return out
        # Long runs: member k's block starts at an offset given by the digits of k over
        # each dim's gathered axes; Allgatherv with a one-element-extent subarray type
        # puts every block straight in place.
        out = mem.empty(n_after, x.dtype)
        base = _mpi_type(x.dtype)
        block = base.Create_subarray(list(n_after), list(x.shape), [0] * len(n_after),
                                     order=MPI.ORDER_C)
        one = block.Create_resized(0, x.itemsize)
        block.Free()
        one.Commit()
        strides = [math.prod(n_after[d + 1:]) for d in range(len(n_after))]
        displs = []
        for k in range(g):
            off, rest = 0, k
            for d in reversed(range(len(sizes))):
                off += (rest % sizes[d]) * x.shape[d] * strides[d]
                rest //= sizes[d]
            displs.append(off)
        comm.Allgatherv([x, x.size, base], [out, [1] * g, displs, one])
        one.Free()
        return out

    if isinstance(step, AllToAll):
        comm = mc.group(step.axes)
        s, t = step.src_dim, step.dst_dim
        g = comm.Get_size()
        recv = _piece_type(n_after, s, x.shape[s], x.dtype)
        if t == 0 or _run_bytes(x.shape, t, n_after[t], x.itemsize) >= PACK_BELOW_BYTES:
            out = mem.empty(n_after, x.dtype)
            send = _piece_type(x.shape, t, n_after[t], x.dtype)
            comm.Alltoall([x, 1, send], [out, 1, recv])
            send.Free()
        else:
            # Pack the pieces for each peer contiguously (one strided NumPy copy), let the
            # input go if we may, then receive straight into the output.
            cut = x.reshape(x.shape[:t] + (g, n_after[t]) + x.shape[t + 1:])
            packed = mem.empty((g,) + tuple(np.moveaxis(cut, t, 0).shape[1:]), x.dtype)
            np.copyto(packed, np.moveaxis(cut, t, 0))
            if consume:
                mem.release(x)
            out = mem.empty(n_after, x.dtype)
            comm.Alltoall([packed, packed.size // g, _mpi_type(x.dtype)], [out, 1, recv])
            mem.release(packed)
        recv.Free()
        return out
    if isinstance(step, AllPermute):
        sources = permute_sources(mesh, before, after)
        me = mc.rank
        if sources[me] == me:
            return x
        dest = sources.index(me)
        out = mem.empty(n_after, x.dtype)
        mc.cart.Sendrecv([x, _mpi_type(x.dtype)], dest, 7, [out, _mpi_type(x.dtype)],
                         sources[me], 7)
        return out
    raise AssertionError(f"unknown step {step!r}")
