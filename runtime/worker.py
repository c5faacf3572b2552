"""One MPI rank of `redist run`: get the plan, build its block, execute, check, report.

Launched as `mpiexec -n N python -m redist.runtime.worker JOB.json` by launch.py. Any
error on any rank is printed and the whole job is aborted (MPI_Abort), so nothing hangs.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import traceback

import numpy as np
from mpi4py import MPI

from redist.core.errors import RedistError
from redist.core.model.problem import Problem
from redist.core.model.syntax import parse_layout, parse_mesh, parse_shape
from redist.core.plans.plan import Plan
from redist.core.plans.planjson import load, loads, plan_from_json, plan_to_json
from redist.core.synthesis.search import synthesize_plan

from .api import redistribute_with_stats
from .arrays import sample_block

MARK = "@@redist-report@@"


def plan_for_job(job: dict) -> Plan:
    """The job's plan: inline, from its plan file, or synthesized from its problem fields."""
    if "plan" in job:
        return plan_from_json(job["plan"])
    if job.get("plan_file"):
        return load(job["plan_file"])
    problem = Problem(parse_mesh(job["mesh"]), parse_shape(job["shape"]), job["dtype"],
                      parse_layout(job["src"]), parse_layout(job["dst"]))
    return synthesize_plan(problem, job.get("method", "normal")).plan


def _plan_on_root(job: dict, comm: MPI.Comm) -> Plan:
    """Rank 0 synthesizes (or loads) the plan and sends its JSON to every rank."""
    text = None
    if comm.Get_rank() == 0:
        text = json.dumps(plan_to_json(plan_for_job(job), with_figures=False))
    # Fault injection for the launcher's tests: every rank must hold the same plan.
    text = comm.bcast(text, root=0)
    if os.environ.get("REDIST_TEST_CORRUPT_PLAN_ON_RANK") == str(comm.Get_rank()):
        doc = json.loads(text)
        doc["dtype"] = "float64" if doc["dtype"] != "float64" else "float32"
        text = json.dumps(doc)
    return loads(text)


def main(job_path: str) -> None:
    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    with open(job_path, encoding="utf-8") as f:
        job = json.load(f)
    plan = _plan_on_root(job, comm)
    p = plan.problem
    if comm.Get_size() != p.mesh.num_devices:
        raise RedistError(f"{comm.Get_size()} ranks but the mesh has {p.mesh.num_devices} "
                          "devices")
    fault = os.environ.get("REDIST_TEST_KILL_RANK")
    times, peaks = [], []
    out = None
    for rep in range(max(1, int(job.get("repeat", 1)))):
        local = sample_block(p.mesh, p.shape, p.src, rank, np.dtype(p.dtype))
        if fault is not None and int(fault) == rank and rep == 0:
            os._exit(17)              # a rank dying mid-job (launcher test)
        comm.Barrier()
        out, stats = redistribute_with_stats(local, plan, comm, donate=True)
        del local
        comm.Barrier()
        times.append(comm.allreduce(stats.seconds, op=MPI.MAX))
        peaks.append(stats.peak_bytes)
    expected = sample_block(p.mesh, p.shape, p.dst, rank, np.dtype(p.dtype))
    bad = int(np.count_nonzero(out != expected)) if out.shape == expected.shape else out.size
    bad_total = comm.allreduce(bad, op=MPI.SUM)
    peak_all = comm.gather(max(peaks), root=0)
    rss_all = comm.gather(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, root=0)
    if rank == 0:
        fig = plan.figures()
        report = {
            "plan": plan_to_json(plan),
            "ranks": comm.Get_size(),
            "repeat": len(times),
            "seconds": times,
            "median_seconds": statistics.median(times),
            "min_seconds": min(times),
            "volume_bytes": fig.volume_bytes,
            "bound_bytes": fig.bound_bytes,
            "peak_bytes_per_rank": peak_all,
            "peak_over_bound": max(peak_all) / fig.bound_bytes,
            "max_rss_bytes_per_rank": rss_all,
            "mismatched_elements": bad_total,
            "elements_checked": comm.Get_size()
            * int(np.prod(p.dst.local_shape(p.mesh, p.shape), dtype=np.int64)),
            "all_match": bad_total == 0,
        }
        print(MARK + json.dumps(report), flush=True)


if __name__ == "__main__":
    try:
        main(sys.argv[1])
    except RedistError as e:
        print(f"redist: error (rank {MPI.COMM_WORLD.Get_rank()}): {e}", file=sys.stderr,
              flush=True)
        MPI.COMM_WORLD.Abort(2)
    except BaseException:
        print(f"redist: rank {MPI.COMM_WORLD.Get_rank()} failed:\n{traceback.format_exc()}",
              file=sys.stderr, flush=True)
        MPI.COMM_WORLD.Abort(1)
