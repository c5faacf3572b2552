"""The shipped worker with one fault injected from outside (the worker itself has no fault
hooks). Usage under mpiexec: faulty_worker.py FAULT RANK JOB.json

  kill     rank RANK dies as it is about to execute the plan
  dtype    rank RANK holds the plan with another dtype (a different plan)
  devices  rank RANK holds a plan whose mesh has a different device count
"""

import os
import sys
from dataclasses import replace

from mpi4py import MPI

from redist.core.model.syntax import parse_mesh
from redist.runtime import worker

fault, target, job_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if MPI.COMM_WORLD.Get_rank() == target:
    real_plan = worker.plan_of_job

    def changed_plan(job):
        plan = real_plan(job)
        p = plan.problem
        if fault == "dtype":
            p = replace(p, dtype="float64" if p.dtype != "float64" else "float32")
        elif fault == "devices":
            bigger = parse_mesh(",".join(f"{a}={s * 2}" for a, s in p.base.axes))
            p = replace(p, mesh=bigger, base=bigger)
        return replace(plan, problem=p)

    def die(*args, **kwargs):
        os._exit(17)

    if fault == "kill":
        worker.redistribute_with_stats = die
    else:
        worker.plan_of_job = changed_plan
worker.entry(job_path)
