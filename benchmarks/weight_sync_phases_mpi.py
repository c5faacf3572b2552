"""Run under mpiexec by weight_sync_phases.py: where a two-mesh plan's time goes, per phase,
side by side with the per-tile broadcast, in one MPI job (argv: case spec JSON, repeats).

before: the first version of issue 21's plan and runtime, rebuilt here: mid cuts the dim
        with the largest local extent a replicated axis divides; each B rank receives
        into its mid block, then the one-mesh all_gather grows that buffer (mremap) and
        moves the block into its slot before the Allgather.
after:  today's plan (synthesize_cross) and runtime (execute_cross): the transfer lands in
        the rank's slot of its dst block, then one in-place Allgather fills the others.
        bfloat16 moves as a native 16-bit MPI type and subarray types have merged dims
        (before: a contiguous 2-byte type, one dim per array dim).
bcast:  per tile, the whole tile to one replica, then a broadcast to the others.
Phases are separated by a barrier (transfer | fan-out), each the slowest rank's time; the
whole method is also timed without the barrier. Every result is checked. Rank 0 prints one
JSON line.
"""

from __future__ import annotations

import contextlib
import functools
import json
import statistics
import sys
import time

import numpy as np
from mpi4py import MPI

import redist.runtime.execute as rx
from redist.core.cross.coerce import between
from redist.core.cross.plan import CrossPlan, receive_shape
from redist.core.cross.synthesize import b_plan_from, choose_pairs, synthesize_cross
from redist.core.model.dtypes import numpy_dtype, same_bits
from redist.core.model.layout import Layout
from redist.core.model.problem import Problem
from redist.runtime.api import execute
from redist.runtime.arrays import sample_block
from redist.runtime.cross import _b_comm, execute_cross, run_transfer
from redist.runtime.execute import _piece_type
from redist.runtime.memory import MemoryTracker

from .weight_sync_mpi import Baselines


def first_version_mid(cp) -> Layout:
    """The first version's mid: each replicated axis on the dim with the largest local
    extent it divides."""
    dims = [list(d) for d in cp.dst.dims]
    for axis, size in cp.b.mesh.axes:
        if axis in cp.dst.used_axes() or size == 1:
            continue
        lay = Layout(tuple(tuple(d) for d in dims))
        ext = Problem(cp.b.mesh, cp.shape, cp.dtype, lay, lay).src.local_shape(
            cp.b.mesh, cp.shape)
        fits = [d for d in range(len(dims)) if ext[d] % size == 0]
        if fits:
            dims[max(fits, key=lambda k: (ext[k], -k))].append(axis)
    return Layout(tuple(tuple(d) for d in dims))


def main() -> None:
    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    spec, reps = json.loads(sys.argv[1]), int(sys.argv[2])
    cp = between(spec["a"], spec["b"], spec["shape"], spec["dtype"], spec["src"], spec["dst"],
                 comm.Get_size())
    after = synthesize_cross(cp)
    b_old = b_plan_from(cp, first_version_mid(cp))
    before = CrossPlan(cp, choose_pairs(cp, b_old.problem), b_old)
    pa, pb = cp.a_problem, cp.b_problem
    dtype = np.dtype(numpy_dtype(cp.dtype))
    base = Baselines(after, comm)
    bmc_after, bmc_before = _b_comm(after, comm), _b_comm(before, comm)
    expected = (sample_block(pb.mesh, cp.shape, pb.dst, cp.b.position[rank], cp.dtype)
                if rank in cp.b else None)

    def block():
        return (sample_block(pa.mesh, cp.shape, pa.src, cp.a.position[rank], cp.dtype)
                if rank in cp.a else None)

    def gather_slot(step, mc):
        me = mc.group(tuple(a for gone in step.axes for a in gone)).Get_rank()
        sizes = [int(np.prod([mc.mesh.size(a) for a in gone])) for gone in step.axes]
        return sizes, rx.slot_digits(sizes, me)

    def slowest(t0: float) -> float:
        return comm.allreduce(time.perf_counter() - t0, op=MPI.MAX)

    def phases_before(local):
        mid = before.mid
        out = np.zeros(mid.src.local_shape(mid.mesh, cp.shape), dtype) if rank in cp.b \
            else None
        comm.Barrier()
        t0 = time.perf_counter()
        run_transfer(before, comm, local, out)
        t1 = slowest(t0)
        t0 = time.perf_counter()
        res = execute([out], before.b_plan, bmc_before, donate=True)[0] if rank in cp.b \
            else None
        return res, t1, slowest(t0)

    def phases_after(local):
        """Today's: the pieces in their slots, then the fan-out as one in-place Allgather
        (what execute_cross does, with a barrier between)."""
        step = after.b_plan.steps[0]
        dims = [d for d, gone in enumerate(step.axes) if gone]
        assert len(dims) == 1, "phases: one gathered dim"
        n_mid = after.mid.src.local_shape(after.mid.mesh, cp.shape)
        out, at = None, (0,) * len(cp.shape)
        if rank in cp.b:
            group = bmc_after.group(tuple(a for gone in step.axes for a in gone))
            out = np.zeros(receive_shape(after), dtype)
            _, digits = gather_slot(step, bmc_after)
            at = tuple(k * n for k, n in zip(digits, n_mid, strict=True))
        comm.Barrier()
        t0 = time.perf_counter()
        run_transfer(after, comm, local, out, at)
        t1 = slowest(t0)
        t0 = time.perf_counter()
        if out is not None:
            t = _piece_type(out.shape, dims[0], n_mid[dims[0]], dtype)
            group.Allgather(MPI.IN_PLACE, [out, 1, t])
            t.Free()
        return out, t1, slowest(t0)

    names = ("before", "after", "bcast")
    rows = {m: {"transfer": [], "fan_out": [], "whole": []} for m in names}
    ok = {m: True for m in names}
    for rep in range(reps + 1):                        # rep 0 warms up
        for m in names:
            # Phased (a barrier between transfer and fan-out).
            local = block()
            if m == "bcast":
                comm.Barrier()
                t0 = time.perf_counter()
                tile = base.bcast_send(local, MemoryTracker())[0]
                t1 = slowest(t0)
                t0 = time.perf_counter()
                out = base.bcast_fan_out(tile)[0]
                t2 = slowest(t0)
            else:
                with first_version_types(m == "before"):
                    out, t1, t2 = (phases_before if m == "before" else phases_after)(local)
            ok[m] &= (out is None) if expected is None else same_bits(out, expected)
            # Whole (no barrier between the phases): the users' path.
            local = block()
            comm.Barrier()
            t0 = time.perf_counter()
            if m == "bcast":
                out = base.bcast(local, MemoryTracker())[0]
            elif m == "after":
                out = execute_cross([local], after, comm, bmc_after, True)[0]
            else:
                with first_version_types(True):
                    out = whole_before(local, before, comm, bmc_before, dtype)
            tw = slowest(t0)
            ok[m] &= (out is None) if expected is None else same_bits(out, expected)
            if rep:
                rows[m]["transfer"].append(t1)
                rows[m]["fan_out"].append(t2)
                rows[m]["whole"].append(tw)
    oks = {m: comm.allreduce(ok[m], op=MPI.LAND) for m in names}
    if rank == 0:
        print(json.dumps({
            "mid_before": str(before.mid.show(before.mid.src)),
            "mid_after": str(after.mid.show(after.mid.src)),
            "messages_before": sum(1 for a, b in before.transfer.pairs if a != b),
            "messages_after": sum(1 for a, b in after.transfer.pairs if a != b),
            "messages_bcast": len([s for s in base.sends if s[0] != s[1]]),
            "median_ms": {m: {k: statistics.median(v) * 1e3 for k, v in rows[m].items()}
                          for m in names},
            "seconds": rows, "all_match": oks}), flush=True)


@contextlib.contextmanager
def first_version_types(on: bool):
    """The first version moved bfloat16 as a contiguous type of 2 bytes (MPICH packs
    subarrays of it element by element) in subarrays of one dim per array dim; today's
    runtime uses a native 16-bit type and merges dims."""
    if not on:
        yield
        return
    saved = rx._byte_type, rx._collapsed

    def contiguous_bytes(itemsize: int) -> MPI.Datatype:
        t = MPI.BYTE.Create_contiguous(itemsize)
        t.Commit()
        return t
    rx._byte_type = functools.cache(contiguous_bytes)
    rx._collapsed = lambda shape, sub, start: (list(shape), list(sub), list(start))
    try:
        yield
    finally:
        rx._byte_type, rx._collapsed = saved


def whole_before(local, plan, comm, bmc, dtype):
    """The first version's runtime: receive into the mid block, then the one-mesh B plan
    (its all_gather grows the buffer and moves the block into its slot)."""
    cp, mid = plan.problem, plan.mid
    out = np.zeros(mid.src.local_shape(mid.mesh, cp.shape), dtype) if comm.Get_rank() in cp.b \
        else None
    run_transfer(plan, comm, local, out)
    del local
    if out is None:
        return None
    return execute([out], plan.b_plan, bmc, donate=True)[0]


if __name__ == "__main__":
    main()
