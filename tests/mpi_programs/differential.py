"""Run under mpiexec: execute each plan of a JSON list with the runtime and compare every
rank's block with the reference simulator's. Prints one JSON line per plan on rank 0."""

import json
import sys

import numpy as np
from mpi4py import MPI

from redist.core.plans import simulator
from redist.core.plans.planjson import plan_from_json
from redist.runtime.api import execute, mesh_comm, redistribute_with_stats

comm = MPI.COMM_WORLD
rank = comm.Get_rank()
with open(sys.argv[1]) as f:
    jobs = json.load(f)
for k, job in enumerate(jobs):
    plan = plan_from_json(job["plan"])
    p = plan.problem
    x = np.arange(int(np.prod(p.shape, dtype=np.int64))).reshape(p.shape).astype(p.dtype)
    want = simulator.run(plan, x)[-1][rank]
    local = simulator.shard(p.mesh, p.shape, p.src, x, rank).copy()
    if job["gated"]:
        out, _ = redistribute_with_stats(local, plan, comm)
    else:
        out, _ = execute(local, plan, mesh_comm(p.mesh, comm))
    ok = out.shape == want.shape and bool(np.array_equal(out, want))
    # the input must be untouched (the runtime never writes into the caller's block)
    ok &= bool(np.array_equal(local, simulator.shard(p.mesh, p.shape, p.src, x, rank)))
    oks = comm.gather(ok, root=0)
    if rank == 0:
        print(json.dumps({"job": k, "ok": all(oks), "bad_ranks":
                          [r for r, v in enumerate(oks) if not v]}), flush=True)
