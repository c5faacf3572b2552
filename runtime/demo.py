"""`redist demo`: the main job end to end on an embedded default (DESIGN §6)."""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from redist.api import synthesize
from redist.core.errors import RedistError
from redist.core.model.problem import Problem
from redist.core.model.syntax import parse_layout, parse_mesh, parse_shape
from redist.core.plans.planjson import plan_to_json
from redist.core.plans.report import human_bytes, plan_table
from redist.core.smt.certificate import check_certificate, write_certificate
from redist.core.synthesis.synthesize import naive

from .launch import format_report, launch, over_proved

CASES = [
    ("replace-axis", "x=2,y=4", "4096,4096", "[{x},{}]", "[{},{y}]",
     "rows split over x become columns split over y"),
    ("transpose", "x=2,y=4", "4096,4096", "[{x},{y}]", "[{y},{x}]",
     "the two mesh axes swap array dimensions"),
]


def demo(args: argparse.Namespace) -> int:
    t_start = time.perf_counter()
    print("redist demo: synthesize -> prove -> certify -> execute on MPI ranks\n")
    ok = True
    for name, mesh, shape, src, dst, what in CASES:
        problem = Problem(parse_mesh(mesh), parse_shape(shape), "float32", parse_layout(src),
                          parse_layout(dst))
        if problem.mesh.num_devices != args.np:
            raise RedistError(f"the demo cases need {problem.mesh.num_devices} ranks, "
                              f"not --np {args.np}")
        print(f"== {name}: {what}")
        print(f"   mesh {mesh}, float32 array {shape}: {src} -> {dst}\n")
        result = synthesize(problem)
        print(plan_table(result.plan))
        base = naive(problem).figures()
        fig = result.plan.figures()
        print(f"naive       gather-then-slice would peak at {human_bytes(base.peak_bytes)} "
              f"({base.peak_bytes / base.bound_bytes:.1f}x bound) and move "
              f"{human_bytes(base.volume_bytes)} ({base.volume_bytes / fig.volume_bytes:.1f}x)")
        print()
        print(result.verdict.table())
        with tempfile.TemporaryDirectory(prefix="redist-cert-") as tmp:
            path = write_certificate(result.plan, result.verdict, os.path.join(tmp, name))
            report = check_certificate(path)
            solvers = sorted({k for row in report.rows for k in row["answers"]})
            print(f"certificate written and re-checked with {', '.join(solvers)}: "
                  + ("ok" if report.ok else "REJECTED: " + "; ".join(report.problems)))
        ok &= result.verified and report.ok
        if not result.verified:
            print("not executing: the plan is not verified\n")
            continue
        job = {"plan": plan_to_json(result.plan, with_figures=False), "repeat": 3}
        res = launch(job, args.np, args.mpiexec, timeout=120)
        if res.report is None:
            print(f"MPI run FAILED (exit {res.returncode}): {res.stderr.strip()[-400:]}\n")
            ok = False
            continue
        print(format_report(res.report))
        ok &= res.report["all_match"] and not over_proved(res.report)
        print()
    print(f"demo {'succeeded' if ok else 'FAILED'} in {time.perf_counter() - t_start:.1f} s "
          f"({args.np} ranks on {os.cpu_count()} cores; timings are oversubscribed)")
    return 0 if ok else 1
