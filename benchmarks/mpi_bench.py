"""Run under mpiexec by runtime_bench.py: time one case three ways on this job's ranks.

normal: the verified normal-form plan through redistribute (the product path).
naive:  gather-then-slice through the bare executor (a baseline; the product path would
        refuse it, since it is not memory-efficient).
direct: one Alltoallv moving exactly the lower-bound bytes (benchmarks/direct.py).
Every result is checked element by element. Rank 0 prints one JSON line per method.
"""

from __future__ import annotations

import json
import statistics
import sys
import time

import numpy as np
from mpi4py import MPI

from redist.core.model.problem import Problem
from redist.core.model.syntax import parse_layout, parse_mesh, parse_shape
from redist.core.synthesis.synthesize import naive, normal
from redist.runtime.api import execute, mesh_comm, redistribute_with_stats
from redist.runtime.arrays import sample_block
from redist.runtime.memory import MemoryTracker

from .direct import direct_redistribute


def main() -> None:
    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    mesh_t, shape_t, src_t, dst_t, reps = sys.argv[1:6]
    problem = Problem(parse_mesh(mesh_t), parse_shape(shape_t), "float32",
                      parse_layout(src_t), parse_layout(dst_t))
    plans = {"normal": normal(problem).plan, "naive": naive(problem)}
    mc = mesh_comm(problem.mesh, comm)
    expected = sample_block(problem.mesh, problem.shape, problem.dst, rank, np.float32)
    for method in ("normal", "naive", "direct"):
        times, peaks, ok = [], [], True
        for rep in range(int(reps) + 1):              # rep 0 is a warm-up
            local = sample_block(problem.mesh, problem.shape, problem.src, rank, np.float32)
            comm.Barrier()
            t0 = time.perf_counter()
            if method == "normal":
                out, stats = redistribute_with_stats(local, plans["normal"], comm, donate=True)
                peak = stats.peak_bytes
            elif method == "naive":
                out, peak = execute(local, plans["naive"], mc, donate=True)
            else:
                mem = MemoryTracker()
                mem.hold(local)
                out = direct_redistribute(local, plans["normal"], comm, mem)
                peak = mem.peak
            dt = time.perf_counter() - t0
            del local
            ok &= bool(np.array_equal(out, expected))
            del out
            dt = comm.allreduce(dt, op=MPI.MAX)
            if rep:
                times.append(dt)
                peaks.append(peak)
        ok = comm.allreduce(ok, op=MPI.LAND)
        peak = comm.allreduce(max(peaks), op=MPI.MAX)
        if rank == 0:
            fig = plans["normal" if method == "direct" else method].figures()
            print(json.dumps({"method": method, "median_s": statistics.median(times),
                              "min_s": min(times), "times_s": times, "peak_bytes": peak,
                              "bound_bytes": fig.bound_bytes,
                              "volume_bytes": (fig.lower_bound_bytes if method == "direct"
                                               else fig.volume_bytes),
                              "steps": [s.op for s in plans.get(method, plans["normal"]).steps]
                              if method != "direct" else ["alltoallv"],
                              "all_match": ok}), flush=True)


if __name__ == "__main__":
    main()
