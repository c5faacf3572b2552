"""Run under mpiexec: for each plan of a JSON list, the runtime's own byte accounting
against tracemalloc's count of the NumPy buffers on each rank (input donated). Rank 0
prints one JSON line per plan with both peaks per rank."""

import json
import sys
import tracemalloc

from mpi4py import MPI

from redist.core.model.dtypes import same_bits
from redist.core.plans.planjson import plan_from_json
from redist.runtime.api import redistribute_with_stats
from redist.runtime.arrays import sample_input, sample_output

comm = MPI.COMM_WORLD
rank = comm.Get_rank()
with open(sys.argv[1]) as f:
    docs = json.load(f)
for k, doc in enumerate(docs):
    plan = plan_from_json(doc)
    p = plan.problem
    redistribute_with_stats(sample_input(p, rank), plan, comm,
                            donate=True)              # warm up: communicators, verification
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    box = [sample_input(p, rank)]
    tracemalloc.reset_peak()
    out, stats = redistribute_with_stats(box, plan, comm, donate=True)   # handed over
    traced = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    want = sample_output(p, rank)   # with a pending src: the sums
    ok = same_bits(out, want)
    del out
    rows = comm.gather({"traced": traced, "counted": stats.peak_bytes, "ok": ok}, root=0)
    if rank == 0:
        fig = plan.figures()
        print(json.dumps({"plan": k, "ranks": rows, "bound": fig.bound_bytes,
                          "proved": fig.runtime_peak_bytes}), flush=True)
