"""One MPI rank of `redist run`: get the plan, build its block, execute, check, report.

Launched as `mpiexec -n N python -m redist.runtime.worker JOB.json` by launch.py. Any
error on any rank is printed and the whole job is aborted (MPI_Abort), so nothing hangs.
"""

from __future__ import annotations

import json
import math
import resource
import statistics
import sys
import traceback
import tracemalloc

import numpy as np
from mpi4py import MPI

from redist.core.cross.planjson import is_cross
from redist.core.errors import RedistError
from redist.core.model.dtypes import mismatched
from redist.core.plans.plan import Plan
from redist.core.plans.planjson import plan_from_json, plan_to_json

from .api import redistribute_with_stats
from .arrays import sample_input, sample_output
from .lifeline import watch_launcher

MARK = "@@redist-report@@"


def plan_of_job(job: dict) -> Plan:
    """The job's plan (the launcher verified it; the library gate verifies it again)."""
    return plan_from_json(job["plan"])


def main(job_path: str) -> None:
    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    with open(job_path, encoding="utf-8") as f:
        job = json.load(f)
    if is_cross(job["plan"]):             # two meshes (DESIGN §15)
        from .cross import worker_main
        report = worker_main(job, comm)
        if report is not None:
            print(MARK + json.dumps(report), flush=True)
        return
    plan = plan_of_job(job)
    p = plan.problem
    times, peaks = [], []
    out = None
    for _ in range(max(1, int(job.get("repeat", 1)))):
        box = [sample_input(p, rank)]
        out = None                       # free the last output before the next run
        comm.Barrier()
        out, stats = redistribute_with_stats(box, plan, comm, donate=True)   # handed over
        comm.Barrier()
        times.append(comm.allreduce(stats.seconds, op=MPI.MAX))
        peaks.append(stats.peak_bytes)
    # One more, untimed, under tracemalloc: its count of every NumPy buffer is the check on
    # the runtime's own accounting, and the larger of the two is the figure we report.
    # The input is allocated under tracing, so that releasing it is seen too.
    out = None
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    box = [sample_input(p, rank)]
    tracemalloc.reset_peak()
    comm.Barrier()
    out, _ = redistribute_with_stats(box, plan, comm, donate=True)
    traced = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    expected = sample_output(p, rank)
    bad = mismatched(out, expected)
    bad_total = comm.allreduce(bad, op=MPI.SUM)
    peak_all = comm.gather(max(peaks), root=0)
    traced_all = comm.gather(traced, root=0)
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
            "traced_peak_bytes_per_rank": traced_all,
            "peak_over_bound": max(max(peak_all), max(traced_all)) / fig.bound_bytes,
            "max_rss_bytes_per_rank": rss_all,
            "mismatched_elements": bad_total,
            "elements_checked": int(np.prod(p.shape, dtype=np.int64))
            * (comm.Get_size() // math.prod(p.dst.shards(p.mesh, d)
                                            for d in range(len(p.shape)))),
            "all_match": bad_total == 0,
        }
        print(MARK + json.dumps(report), flush=True)


def entry(job_path: str) -> None:
    """Run `main`; any error on any rank ends the whole job (MPI_Abort), so nothing hangs."""
    watch_launcher()
    try:
        main(job_path)
    except RedistError as e:
        print(f"redist: error (rank {MPI.COMM_WORLD.Get_rank()}): {e}", file=sys.stderr,
              flush=True)
        MPI.COMM_WORLD.Abort(2)
    except BaseException:
        print(f"redist: rank {MPI.COMM_WORLD.Get_rank()} failed:\n{traceback.format_exc()}",
              file=sys.stderr, flush=True)
        MPI.COMM_WORLD.Abort(1)


if __name__ == "__main__":
    entry(sys.argv[1])
