"""Run under mpiexec: execute each plan of a JSON list with the runtime and compare every
rank's block with the reference simulator's. Prints one JSON line per plan on rank 0.

A job may ask for `donate` (the runtime may then work in the input's memory: the in-place
paths) and for `gated` (through redistribute_with_stats, which verifies first)."""

import json
import sys

import numpy as np
from mpi4py import MPI

from redist.core.model.dtypes import numpy_dtype, same_bits
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
    dt = numpy_dtype(p.dtype)
    x = (np.arange(int(np.prod(p.shape, dtype=np.int64))) % 251).reshape(p.shape).astype(dt)
    whole = x
    if p.src.sum:        # pending sums: addends (row u: the devices u on the pending axes)
        terms = int(np.prod([p.mesh.size(a) for a in p.src.sum]))
        x = np.stack([((x.astype(np.int64) + 7 * u) % 61).astype(dt) for u in range(terms)])
        whole = x[simulator.addend_row(p.mesh, p.src, rank)]
    want = simulator.final_blocks(plan, x)[rank]
    original = simulator.shard(p.mesh, p.shape, p.src, whole, rank).copy()
    local = original.copy()
    donate = bool(job.get("donate"))
    if job["gated"]:
        out, _ = redistribute_with_stats(local, plan, comm, donate=donate)
    else:
        out, _ = execute(local, plan, mesh_comm(p.mesh, comm), donate=donate)
    ok = same_bits(out, want)
    if not donate:   # the runtime never writes into a block the caller keeps
        ok &= same_bits(local, original)
    oks = comm.gather(ok, root=0)
    if rank == 0:
        print(json.dumps({"job": k, "ok": all(oks), "bad_ranks":
                          [r for r, v in enumerate(oks) if not v]}), flush=True)
