"""An MPI job that executes plans on demand (for `redist regress`): rank 0 reads one plan
(JSON) per line on stdin, every rank runs it through `redistribute` on its block of the
test array and compares every element with its expected dst block, and rank 0 answers
one JSON line on stdout. An empty line ends the job. Started once per regress run, so a
hundred examples cost one launch.

    mpiexec -n R python -m redist.runtime.serve JOB.json
"""

from __future__ import annotations

import json
import sys
import traceback

from mpi4py import MPI

from redist.core.errors import RedistError
from redist.core.model.dtypes import mismatched
from redist.core.plans.plan import own_budget
from redist.core.plans.planjson import plan_from_json

from .api import redistribute_with_stats
from .arrays import sample_input, sample_output
from .lifeline import watch_launcher
from .waiting import bcast_text

READY = "@@redist-serve-ready@@"


def main() -> None:
    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    if rank == 0:
        print(READY, flush=True)
    while True:
        line = sys.stdin.readline() if rank == 0 else None
        line = bcast_text(comm, line)
        if not line or not line.strip():
            break
        answer = {"ok": False, "error": ""}
        try:
            plan = plan_from_json(json.loads(line))
            p = plan.problem
            local = [sample_input(p, rank)]
            out, stats = redistribute_with_stats(local, plan, comm, donate=True,
                                                 budget=own_budget(plan))
            want = sample_output(p, rank)
            bad = mismatched(out, want)
            bad = comm.allreduce(bad, op=MPI.SUM)
            peak = comm.allreduce(stats.peak_bytes, op=MPI.MAX)
            answer = {"ok": bad == 0, "mismatched": bad, "peak_bytes": peak}
        except RedistError as e:            # raised alike on every rank (agreed checks)
            answer = {"ok": False, "error": str(e)}
        if rank == 0:
            print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    watch_launcher()
    try:
        main()
    except BaseException:
        print(f"redist: rank {MPI.COMM_WORLD.Get_rank()} failed:\n{traceback.format_exc()}",
              file=sys.stderr, flush=True)
        MPI.COMM_WORLD.Abort(1)
