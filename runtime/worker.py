"""One MPI rank of `redist run`: get the plan, build its block, execute, check, report.

Launched as `mpiexec -n N python -m redist.runtime.worker JOB.json` by launch.py. Any
error on any rank is printed and the whole job is aborted (MPI_Abort), so nothing hangs.
"""

from __future__ import annotations

import json
import math
import sys
import traceback

import numpy as np
from mpi4py import MPI

from redist.core.cross.planjson import is_cross
from redist.core.errors import RedistError
from redist.core.model.dtypes import mismatched
from redist.core.plans.plan import Plan
from redist.core.plans.planjson import plan_from_json, plan_to_json

from . import execute
from .api import redistribute_with_stats
from .arrays import sample_input, sample_output
from .fuse import fused_runs, wire_bytes
from .lifeline import watch_launcher
from .measure import measure, report_fields
from .report_mark import MARK


def plan_of_job(job: dict) -> Plan:
    """The job's plan (the launcher verified it; the library gate verifies it again)."""
    return plan_from_json(job["plan"])


def fused_report(plan: Plan) -> list[dict]:
    """The runs of all-to-alls that ran as one (runtime/fuse.py): steps (1-based, both
    ends), bytes received (all devices) and the sum of their steps' volume figures."""
    fig = plan.figures()
    return [{"steps": [r.start + 1, r.stop], "wire_bytes": wire_bytes(plan, r),
             "figure_bytes": sum(fig.step_volume[r.start:r.stop])}
            for r in fused_runs(plan, execute.INPLACE_ALL_TO_ALL)]


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
    out, mine = measure(comm, job.get("repeat", 1), lambda: [sample_input(p, rank)],
                        lambda box: redistribute_with_stats(box, plan, comm, donate=True))
    measured = report_fields(comm, mine, mismatched(out, sample_output(p, rank)))
    if measured is not None:
        fig = plan.figures()
        peaks = measured["peak_bytes_per_rank"] + measured["traced_peak_bytes_per_rank"]
        report = {
            "plan": plan_to_json(plan),
            **measured,
            "volume_bytes": fig.volume_bytes,
            "fused": fused_report(plan),
            "bound_bytes": fig.bound_bytes,
            "peak_over_bound": max(peaks) / fig.bound_bytes,
            "elements_checked": int(np.prod(p.shape, dtype=np.int64))
            * (comm.Get_size() // math.prod(p.dst.shards(p.mesh, d)
                                            for d in range(len(p.shape)))),
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
