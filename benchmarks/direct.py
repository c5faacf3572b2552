"""The practical limit: one Alltoallv that moves exactly the lower-bound bytes.

Every rank sends to every receiver the part of the receiver's dst block that lies in its
own src block, but only if it is that part's canonical holder (the holder whose
coordinates on the axes replicated in src equal the receiver's), so each needed element
crosses the network once, and not at all when the receiver already holds it.
"""

from __future__ import annotations

import numpy as np
from mpi4py import MPI

from redist.core.plans.plan import Plan
from redist.runtime.memory import MemoryTracker


def _overlap(a: tuple[slice, ...], b: tuple[slice, ...]) -> tuple[slice, ...] | None:
    out = []
    for x, y in zip(a, b, strict=True):
        lo, hi = max(x.start, y.start), min(x.stop, y.stop)
        if lo >= hi:
            return None
        out.append(slice(lo, hi))
    return tuple(out)


def _local(box: tuple[slice, ...], origin: tuple[slice, ...]) -> tuple[slice, ...]:
    return tuple(slice(b.start - o.start, b.stop - o.start) for b, o in
                 zip(box, origin, strict=True))




def direct_redistribute(local: np.ndarray, plan: Plan, comm: MPI.Comm,
                        mem: MemoryTracker) -> np.ndarray:
    """`local` is donated: its bytes stop counting once it has been packed."""
    p = plan.problem
    mesh, shape = p.mesh, p.shape
    me = comm.Get_rank()
    n = mesh.num_devices
    my_src = p.src.block_slices(mesh, shape, me)
    replicated = [a for a in mesh.names if a not in p.src.used_axes()]
    me_c = mesh.coords(me)
    sends, counts_s = [], np.zeros(n, np.int64)
    for r in range(n):
        if r == me:
            continue
        rc = mesh.coords(r)
        if any(rc[a] != me_c[a] for a in replicated):
            continue                   # not the canonical holder for r
        box = _overlap(my_src, p.dst.block_slices(mesh, shape, r))
        if box is None or _overlap(p.src.block_slices(mesh, shape, r), box) == box:
            continue                   # nothing to send, or r already holds it
        sends.append((r, box))
        counts_s[r] = int(np.prod([s.stop - s.start for s in box]))
    recvs, counts_r = [], np.zeros(n, np.int64)
    my_dst = p.dst.block_slices(mesh, shape, me)
    for s in range(n):
        if s == me:
            continue
        sc = mesh.coords(s)
        if any(sc[a] != me_c[a] for a in replicated):
            continue
        box = _overlap(p.src.block_slices(mesh, shape, s), my_dst)
        if box is None or _overlap(my_src, box) == box:
            continue
        recvs.append((s, box))
        counts_r[s] = int(np.prod([x.stop - x.start for x in box]))
    # Own part and packing first, so the donated input can go before the exchange.
    out = mem.empty(tuple(x.stop - x.start for x in my_dst), local.dtype, fixed=True)
    own = _overlap(my_src, my_dst)
    if own is not None:
        out[_local(own, my_dst)] = local[_local(own, my_src)]
    sendbuf = mem.empty((int(counts_s.sum()),), local.dtype, fixed=True)
    off = 0
    for r, box in sends:
        k = counts_s[r]
        sendbuf[off:off + k] = local[_local(box, my_src)].ravel()
        off += k
    mem.release(local)
    recvbuf = mem.empty((int(counts_r.sum()),), local.dtype, fixed=True)
    displ_s = np.concatenate([[0], np.cumsum(counts_s)[:-1]])
    displ_r = np.concatenate([[0], np.cumsum(counts_r)[:-1]])
    t = MPI._typedict[local.dtype.char]
    comm.Alltoallv([sendbuf, counts_s, displ_s, t], [recvbuf, counts_r, displ_r, t])
    mem.release(sendbuf)
    for s, box in recvs:
        k = counts_r[s]
        shp = tuple(x.stop - x.start for x in box)
        out[_local(box, my_dst)] = recvbuf[displ_r[s]:displ_r[s] + k].reshape(shp)
    mem.release(recvbuf)
    return out
