"""Run under mpiexec by weight_sync.py: one refit case, three ways, side by side.

redist:  the verified two-mesh plan through `redistribute_cross` (its time starts after the
         plan checks: hash agreement and the verdict's broadcast, a fixed cost per call).
funnel:  the rank-0 funnel of RL weight syncs: the src mesh gathers the whole array on its
         first rank (skipped when that rank already holds it), which sends it to the dst
         mesh's first rank, which broadcasts it to the dst mesh; every dst rank cuts its block.
alpa:    Alpa's send + all-gather: the same pieces and dst-mesh all-gather as redist's plan
         (each replica of a tile receives a different slice), but every piece sent by the
         first holder of its src block (no sender balancing): a CrossPlan with those pairs,
         run by the same runtime.
bcast:   per-tile send + broadcast: each distinct dst tile is sent, piece by piece from the
         first holder of each src block, to the tile's first replica on the dst mesh, which
         broadcasts it to the tile's other replicas.
Two controls say where redist's time goes: redist-spin (redist with MPI's spinning waits
instead of napping ones, runtime.cross.napping) and bcast-nap (the per-tile broadcast with
the napping waits redist uses for its point-to-point messages).
Every method's buffers go through a MemoryTracker (the runtime's own count); bytes received
are counted from the messages each method posts, split into cross-mesh (from a rank outside
the dst mesh) and total. Every result is checked element by element. Rank 0 prints one JSON
line per method.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import time

import numpy as np
from mpi4py import MPI

import redist.runtime.cross as rcross
from redist.core.cross.plan import CrossPlan
from redist.core.cross.planjson import cross_plan_from_json, cross_plan_to_json
from redist.core.model.dtypes import numpy_dtype, same_bits
from redist.core.ops.transfer import Transfer
from redist.core.semantics.blocks import block_ids, block_ranges
from redist.runtime.arrays import sample_block
from redist.runtime.cross import _b_comm, execute_cross, redistribute_cross
from redist.runtime.execute import _box_type, mpi_type, wait_all
from redist.runtime.memory import MemoryTracker

TAG = 11


def _split(comm: MPI.Comm, member: bool, key: int, color: int = 0) -> MPI.Comm | None:
    sub = comm.Split(color if member else MPI.UNDEFINED, key)
    return None if sub == MPI.COMM_NULL else sub


class Baselines:
    """The two baselines' communicators and schedules, built once per case."""

    def __init__(self, plan, comm: MPI.Comm) -> None:
        cp = self.cp = plan.problem
        self.comm = comm
        self.link = 0                  # bytes this rank moved over the cross link, last call
        rank = self.rank = comm.Get_rank()
        pa, pb = cp.a_problem, cp.b_problem
        self.pa, self.pb = pa, pb
        self.dtype = np.dtype(numpy_dtype(cp.dtype))
        self.a_comm = _split(comm, rank in cp.a, cp.a.position.get(rank, 0))
        self.b_comm = _split(comm, rank in cp.b, cp.b.position.get(rank, 0))
        self.lo_a, self.hi_a = block_ranges(pa.mesh, cp.shape, pa.src)
        self.lo_b, self.hi_b = block_ranges(pb.mesh, cp.shape, pb.dst)
        # Tiles: distinct dst blocks; their replicas in B order; the first receives.
        keys = [tuple(r) for r in block_ids(pb.mesh, pb.dst).tolist()]
        self.tiles: dict[tuple, list[int]] = {}
        for j, k in enumerate(keys):
            self.tiles.setdefault(k, []).append(cp.b.devices[j])
        self.my_tile = keys[cp.b.position[rank]] if rank in cp.b else None
        tile_ids = {k: t for t, k in enumerate(self.tiles)}
        self.tile_comm = _split(comm, rank in cp.b, cp.b.position.get(rank, 0),
                                tile_ids.get(self.my_tile, 0))
        a_keys = [tuple(r) for r in block_ids(pa.mesh, pa.src).tolist()]
        first: dict[tuple, int] = {}
        for i, k in enumerate(a_keys):
            first.setdefault(k, cp.a.devices[i])              # the first holder sends
        self.sends = []                                        # (sender, receiver, lo, hi)
        for replicas in self.tiles.values():
            j = cp.b.position[replicas[0]]
            for sender in first.values():
                i = cp.a.position[sender]
                lo = np.maximum(self.lo_a[i], self.lo_b[j])
                hi = np.minimum(self.hi_a[i], self.hi_b[j])
                if np.all(hi > lo):
                    self.sends.append((sender, replicas[0], lo, hi))
        self.full_on_first = bool(np.all(self.lo_a[0] == 0) and np.all(
            self.hi_a[0] == np.array(cp.shape)))

    def funnel(self, local, mem: MemoryTracker):
        cp, rank, dtype = self.cp, self.rank, self.dtype
        a0, b0 = cp.a.devices[0], cp.b.devices[0]
        cross = total = 0
        full = None
        if rank in cp.a:
            mem.hold(local)
            if not self.full_on_first:
                padded = self.pa.src.local_shape(self.pa.mesh, cp.shape)
                mine = mem.zeros(padded, dtype)
                mine[tuple(slice(0, n) for n in local.shape)] = local
                every = mem.empty((len(cp.a.devices),) + padded, dtype) if rank == a0 else None
                self.a_comm.Gather([mine, mpi_type(dtype)],
                                   [every, mpi_type(dtype)] if every is not None else None,
                                   root=0)
                mem.release(mine)
                if rank == a0:
                    total += every.nbytes - mine.nbytes
                    full = mem.empty(cp.shape, dtype)
                    for i in range(len(cp.a.devices)):
                        sl = tuple(slice(int(lo), int(hi)) for lo, hi in zip(
                            self.lo_a[i], self.hi_a[i], strict=True))
                        full[sl] = every[i][tuple(slice(0, s.stop - s.start) for s in sl)]
                    mem.release(every)
                    del every
            elif rank == a0:
                full = local
        if rank == a0 and a0 != b0:
            self.comm.Send([full, mpi_type(dtype)], dest=b0, tag=TAG)
            self.link = full.nbytes if a0 not in cp.b else 0
        if rank not in cp.b:
            return None, cross, total
        if rank == b0 and a0 != b0:
            full = mem.empty(cp.shape, dtype)
            self.comm.Recv([full, mpi_type(dtype)], source=a0, tag=TAG)
            cross += full.nbytes
            self.link = full.nbytes
            total += full.nbytes
        elif rank != b0:
            full = mem.empty(cp.shape, dtype)
            total += full.nbytes
        self.b_comm.Bcast([full, mpi_type(dtype)], root=0)
        j = cp.b.position[rank]
        sl = tuple(slice(int(lo), int(hi)) for lo, hi in zip(self.lo_b[j], self.hi_b[j],
                                                                 strict=True))
        out = mem.empty(tuple(s.stop - s.start for s in sl), dtype)
        out[...] = full[sl]
        mem.release(full)
        return out, cross, total

    def bcast(self, local, mem: MemoryTracker, nap: bool = False):
        tile, cross, total = self.bcast_send(local, mem, nap)
        out, more = self.bcast_fan_out(tile)
        return out, cross, total + more

    def bcast_send(self, local, mem: MemoryTracker, nap: bool = False):
        """Per-tile send: every piece to the tile's first replica."""
        cp, rank, dtype = self.cp, self.rank, self.dtype
        cross = total = 0
        if rank in cp.a:
            mem.hold(local)
            i = cp.a.position[rank]
        tile = None
        if rank in cp.b:
            j = cp.b.position[rank]
            tile = mem.zeros(self.pb.dst.local_shape(self.pb.mesh, cp.shape), dtype)
        reqs, types = [], []
        for sender, receiver, lo, hi in self.sends:
            if rank not in (sender, receiver):
                continue
            if sender == receiver:
                tile[tuple(slice(int(a - b), int(c - b)) for a, c, b in zip(
                    lo, hi, self.lo_b[j], strict=True))] = local[tuple(
                        slice(int(a - b), int(c - b)) for a, c, b in zip(
                            lo, hi, self.lo_a[i], strict=True))]
                continue
            n = int(np.prod(hi - lo)) * dtype.itemsize
            if rank == sender:
                self.link += n if sender not in cp.b else 0
                t = _box_type(local.shape, _ints(lo - self.lo_a[i]), _ints(hi - self.lo_a[i]),
                              dtype)
                reqs.append(self.comm.Isend([local, 1, t], dest=receiver, tag=TAG))
            else:
                t = _box_type(tile.shape, _ints(lo - self.lo_b[j]), _ints(hi - self.lo_b[j]),
                              dtype)
                reqs.append(self.comm.Irecv([tile, 1, t], source=sender, tag=TAG))
                total += n
                cross += n if sender not in cp.b else 0
                self.link += n if sender not in cp.b else 0
            types.append(t)
        wait_all(reqs, nap)
        for t in types:
            t.Free()
        return tile, cross, total

    def bcast_fan_out(self, tile):
        """The broadcast from each tile's first replica to the others."""
        if tile is None:
            return None, 0
        self.tile_comm.Bcast([tile, mpi_type(self.dtype)], root=0)
        total = tile.nbytes if self.tile_comm.Get_rank() != 0 else 0
        valid = self.pb.dst.valid_shape(self.pb.mesh, self.cp.shape,
                                        self.cp.b.position[self.rank])
        return np.ascontiguousarray(tile[tuple(slice(0, n) for n in valid)]), total


def first_holders(plan) -> Transfer:
    """The plan's pieces, each sent by the first holder of its src block (Alpa's choice)."""
    cp = plan.problem
    pa = cp.a_problem
    keys = [tuple(r) for r in block_ids(pa.mesh, pa.src).tolist()]
    first: dict[tuple, int] = {}
    for i, k in enumerate(keys):
        first.setdefault(k, cp.a.devices[i])
    return Transfer(tuple((first[keys[cp.a.position[a]]], b) for a, b in plan.transfer.pairs))


def redist_link(plan, rank: int) -> int:
    """Bytes this rank sends or receives over the cross-mesh link in the plan's transfer."""
    from redist.core.ops.transfer import boxes
    cp = plan.problem
    out = 0
    for (a, b), (lo, hi) in zip(plan.transfer.pairs, boxes(cp, plan.mid, plan.transfer),
                                strict=True):
        if a not in cp.b and rank in (a, b):
            out += int(np.prod(hi - lo)) * cp.itemsize
    return out


def _ints(v) -> tuple[int, ...]:
    return tuple(int(x) for x in v)


def main() -> None:
    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    problem_json, reps = sys.argv[1], int(sys.argv[2])
    spec = json.loads(problem_json)
    text = None
    if rank == 0:
        from redist.core.cross.coerce import between
        from redist.core.cross.synthesize import certified_cross
        cp = between(spec["a"], spec["b"], spec["shape"], spec["dtype"], spec["src"],
                     spec["dst"], comm.Get_size())
        t0 = time.perf_counter()
        plan, verdict, budget = certified_cross(cp)
        prove_s = time.perf_counter() - t0
        assert verdict.all_proved, verdict.table()
        text = json.dumps([cross_plan_to_json(plan, with_figures=False), budget, prove_s])
    doc, budget, prove_s = json.loads(comm.bcast(text, root=0))
    plan = cross_plan_from_json(doc, comm.Get_size())
    cp = plan.problem
    pa, pb = cp.a_problem, cp.b_problem
    base = Baselines(plan, comm)

    def block():
        if rank not in cp.a:
            return None
        return sample_block(pa.mesh, cp.shape, pa.src, cp.a.position[rank], cp.dtype)
    expected = (sample_block(pb.mesh, cp.shape, pb.dst, cp.b.position[rank], cp.dtype)
                if rank in cp.b else None)
    alpa = CrossPlan(cp, first_holders(plan), plan.b_plan)
    bmc = _b_comm(plan, comm)
    methods = ("redist", "alpa", "bcast", "funnel", "redist-spin", "bcast-nap")
    naps = rcross.napping(comm)
    times = {m: [] for m in methods}
    peaks = {m: 0 for m in methods}
    moved = {m: (0, 0) for m in methods}
    link = {m: 0 for m in methods}
    ok = {m: True for m in methods}
    for rep in range(reps + 1):                        # rep 0 warms up (connections, gate)
        for m in methods:
            local = block()
            comm.Barrier()
            t0 = time.perf_counter()
            if m in ("redist", "redist-spin"):
                rcross._naps[comm.py2f()] = naps and m == "redist"
                out, stats = redistribute_cross([local], plan, comm, donate=True,
                                                budget=budget)
                rcross._naps[comm.py2f()] = naps
                dt, peak = stats.seconds, stats.peak_bytes
                fig = plan.figures()
                mv = (fig.cross_mesh_bytes, fig.volume_bytes)
                link[m] = redist_link(plan, rank)
            elif m == "alpa":
                out, dt = execute_cross([local], alpa, comm, bmc, True)
                peak, dt = dt, time.perf_counter() - t0
                fig = alpa.figures()
                mv = (fig.cross_mesh_bytes, fig.volume_bytes)
                link[m] = redist_link(alpa, rank)
            else:
                mem = MemoryTracker()
                base.link = 0
                out, cross, total = (base.bcast(local, mem, nap=True) if m == "bcast-nap"
                                     else getattr(base, m)(local, mem))
                link[m] = base.link
                dt, peak = time.perf_counter() - t0, mem.peak
                mv = (comm.allreduce(cross), comm.allreduce(total))
            del local
            dt = comm.allreduce(dt, op=MPI.MAX)
            ok[m] &= (out is None) if expected is None else same_bits(out, expected)
            del out
            if rep:
                times[m].append(dt)
            peaks[m] = max(peaks[m], peak)
            moved[m] = mv
    fig = plan.figures()
    proved = dict(zip(fig.ranks, fig.peak_per_rank, strict=True))
    for m in methods:
        all_ok = comm.allreduce(ok[m], op=MPI.LAND)
        per_rank = comm.gather(peaks[m], root=0)
        max_link = comm.allreduce(link[m], op=MPI.MAX)
        if rank == 0:
            print(json.dumps({
                "method": m, "median_s": statistics.median(times[m]), "min_s": min(times[m]),
                "seconds": times[m], "cross_mesh_bytes": moved[m][0],
                "total_bytes": moved[m][1], "peak_per_rank": per_rank,
                "max_link_bytes_per_rank": max_link,
                "max_peak": max(per_rank),
                "proved_peak_per_rank": [proved.get(r, 0) for r in range(comm.Get_size())]
                if m == "redist" else None, "naps": naps,
                "cross_mesh_lower_bound_bytes": fig.cross_mesh_lower_bound_bytes,
                "lower_bound_bytes": fig.lower_bound_bytes,
                "array_bytes": math.prod(cp.shape) * cp.itemsize,
                "prove_seconds": prove_s, "budget": budget, "all_match": all_ok,
                "steps": [s.op for s in plan.steps]}), flush=True)


if __name__ == "__main__":
    main()
