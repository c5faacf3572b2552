"""Run under mpiexec by handoff_bench.py: the exchange phase of the in-place all-to-all
(runtime.execute._swap over pair_rounds) on MiB-per-rank float32 blocks in groups of g,
against one Alltoall of the same blocks, the variants taking turns in each repetition.

    mpiexec -n N python -m benchmarks.handoff_mpi MIB G REPS

Rank 0 prints one JSON line: median milliseconds (max over ranks) per variant."""

from __future__ import annotations

import json
import statistics
import sys
import time

import numpy as np
from mpi4py import MPI

from redist.runtime import execute as ex
from redist.runtime import inplace
from redist.runtime.groups import pair_rounds


def swap_in_slots(comm: MPI.Comm, flat: np.ndarray, peer: int, scratch: np.ndarray,
                  slots: int) -> None:
    """_swap with the scratch cut into `slots` parts (messages of chunk/slots, `slots`
    receives in flight: double buffering at 2). Memory as _swap's; only measured here."""
    n = flat.size
    step = max(1, min(scratch.size // slots, n))
    k = -(-n // step)
    w = min(slots, k)
    t = ex.mpi_type(flat.dtype)
    sends = [comm.Isend([flat[i * step:min(n, (i + 1) * step)], t], peer, 12) for i in range(k)]
    recvs = [comm.Irecv([scratch[j * step:min(n, (j + 1) * step)], t], peer, 12)
             for j in range(w)]
    for i in range(w, k):
        ex.wait_all([sends[i - w]], True)
        m = min(step, n - i * step)
        recvs.append(comm.Irecv([flat[(i - w) * step:(i - w) * step + m], t], peer, 12))
    ex.wait_all(sends + recvs, True)
    head = min(w * step, n)            # messages 0..w-1 sit in the scratch, the rest shifted
    inplace.memmove(flat, head, 0, n - head)
    flat[:head] = scratch[:head]


def main() -> None:
    world = MPI.COMM_WORLD
    rank = world.Get_rank()
    mib, g, reps = (int(a) for a in sys.argv[1:4])
    comm = world.Split(rank // g, rank % g)
    me = comm.Get_rank()
    n = mib * 2**20 // 4 // g * g
    x = np.arange(n, dtype=np.float32) + rank
    size = n // g

    def pairwise(nap: bool, fraction: int = 16, slots: int = 1) -> None:
        scratch = np.empty(max(1, n // fraction), np.float32)
        for p in pair_rounds(g, me):
            if p is None:
                continue
            region = x[p * size:(p + 1) * size]
            if slots == 1:
                ex._swap(comm, region, p, p, scratch, nap)
            else:
                swap_in_slots(comm, region, p, scratch, slots)

    def alltoall() -> None:
        out = np.empty_like(x)
        t = ex.mpi_type(x.dtype)
        comm.Alltoall([x, t], [out, t])

    variants = {
        "swap, spin": lambda: pairwise(False),
        "swap, nap": lambda: pairwise(True),
        "swap, nap, 2 half-chunk slots": lambda: pairwise(True, slots=2),
        "swap, nap, 4x chunk": lambda: pairwise(True, fraction=4),
        "Alltoall": alltoall,
    }
    before = x.copy()
    pairwise(True, slots=2)
    pairwise(True, slots=2)            # a swap twice with the same partners: back home
    assert np.array_equal(x, before), "swap_in_slots lost data"
    times: dict[str, list[float]] = {k: [] for k in variants}
    names = list(variants)
    for rep in range(reps + 1):        # rep 0 warms up
        for i in range(len(names)):
            name = names[(rep + i) % len(names)]
            world.Barrier()
            t0 = time.perf_counter()
            variants[name]()
            dt = world.allreduce(time.perf_counter() - t0, op=MPI.MAX)
            if rep:
                times[name].append(dt)
    if rank == 0:
        messages = (g - 1) * -(-size // max(1, n // 16))
        print(json.dumps({"ranks": world.Get_size(), "g": g, "mib": mib,
                          "messages": messages,
                          "ms": {k: statistics.median(v) * 1e3 for k, v in times.items()}}),
              flush=True)


if __name__ == "__main__":
    main()
