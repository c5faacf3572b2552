"""`redist run`: launch MPI ranks, execute a plan, check every element, report."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass

from redist.core.errors import RedistError
from redist.core.plans.plan import Plan
from redist.core.plans.planjson import load, plan_to_json
from redist.core.plans.report import human_bytes

from .worker import MARK, plan_for_job


def find_mpiexec(explicit: str | None = None) -> str:
    """The mpiexec to use: --mpiexec, else $REDIST_MPIEXEC, else the one installed beside
    this Python (the mpich wheel), else the first on PATH."""
    for cand in (explicit, os.environ.get("REDIST_MPIEXEC"),
                 os.path.join(os.path.dirname(sys.executable), "mpiexec"),
                 shutil.which("mpiexec")):
        if cand and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    raise RedistError("no mpiexec found: pip install mpich (or set REDIST_MPIEXEC to your "
                      "site's mpiexec)")


@dataclass(frozen=True)
class JobResult:
    returncode: int
    report: dict | None
    stderr: str
    timed_out: bool = False


def launch(job: dict, nprocs: int, mpiexec: str | None = None, timeout: float = 300,
           env: dict[str, str] | None = None) -> JobResult:
    """Run the worker on `nprocs` ranks; the whole process group is killed on timeout."""
    exe = find_mpiexec(mpiexec)
    with tempfile.TemporaryDirectory(prefix="redist-job-") as tmp:
        path = os.path.join(tmp, "job.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(job, f)
        cmd = [exe, "-n", str(nprocs), sys.executable, "-m", "redist.runtime.worker", path]
        full_env = dict(os.environ, **(env or {}))
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=full_env, start_new_session=True, cwd=tmp)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            return JobResult(proc.returncode or -9, None, err, timed_out=True)
    report = None
    for line in out.splitlines():
        if line.startswith(MARK):
            report = json.loads(line[len(MARK):])
    return JobResult(proc.returncode, report, err)


def job_from_args(args: argparse.Namespace) -> tuple[dict, int]:
    """The job description, and the device count it needs (checked before launch)."""
    if args.plan_file:
        plan = load(args.plan_file)
        devices = plan.problem.mesh.num_devices
        job = {"plan_file": os.path.abspath(args.plan_file)}
    else:
        from redist.cli import problem_from_args
        problem = problem_from_args(args)        # validates everything before launch
        devices = problem.mesh.num_devices
        job = {"mesh": args.mesh, "shape": args.shape, "dtype": args.dtype, "src": args.src,
               "dst": args.dst, "method": args.method}
    job["repeat"] = args.repeat
    return job, devices


def unverified_reason(plan: Plan) -> str | None:
    """Verify the plan before launching (the ranks check again); None if proved."""
    from redist.core.smt.verify import verify

    v = verify(plan)
    if v.all_proved:
        return None
    return "; ".join(f"{r.claim} {r.status}: {r.detail}" for r in v.results
                     if r.status != "proved")


def first_error(stderr: str) -> str:
    for line in stderr.splitlines():
        if line.startswith("redist:"):
            return line
    tail = [ln for ln in stderr.splitlines() if ln.strip()]
    return tail[-1] if tail else "a rank exited before finishing (crashed or killed)"


def run_command(args: argparse.Namespace) -> int:
    if args.method == "optimal" and not args.plan_file:
        raise RedistError("redist run executes normal or naive plans; write an optimal plan "
                          "with `redist plan --method optimal --json F` and pass --plan F")
    job, devices = job_from_args(args)
    if args.np != devices:
        raise RedistError(f"--np {args.np} does not match the mesh's {devices} devices")
    if args.repeat < 1:
        raise RedistError("--repeat must be at least 1")
    plan = plan_for_job(job)
    refusal = unverified_reason(plan)
    if refusal:
        print(f"redist: refusing to run an unverified plan: {refusal}", file=sys.stderr)
        return 1
    job = {"plan": plan_to_json(plan, with_figures=False), "repeat": job["repeat"]}
    res = launch(job, args.np, args.mpiexec, args.timeout)
    if res.timed_out:
        print(f"redist: error: the MPI job did not finish within {args.timeout:.0f} s and was "
              "killed", file=sys.stderr)
        return 1
    if res.returncode != 0 or res.report is None:
        print(f"redist: error: the MPI job failed (exit {res.returncode}): "
              f"{first_error(res.stderr)}", file=sys.stderr)
        return 2 if "redist: error" in res.stderr else 1
    if getattr(args, "json", None):
        from redist.cli import emit_json
        emit_json(res.report, args.json)
    if getattr(args, "json", None) != "-":
        print(format_report(res.report))
    return 0 if res.report["all_match"] else 1


def format_report(r: dict) -> str:
    fig = r["plan"]["figures"]
    steps = " -> ".join(s["op"] for s in r["plan"]["steps"]) or "(no steps)"
    return "\n".join([
        f"ran         {steps} on {r['ranks']} MPI ranks, {r['repeat']} repetitions",
        f"time        median {r['median_seconds'] * 1e3:.2f} ms, min "
        f"{r['min_seconds'] * 1e3:.2f} ms (slowest rank per repetition)",
        f"volume      {human_bytes(fig['volume_bytes'])} moved (lower bound "
        f"{human_bytes(fig['lower_bound_bytes'])})",
        f"memory      measured peak {human_bytes(max(r['peak_bytes_per_rank']))} per rank = "
        f"{r['peak_over_bound']:.2f} x bound {human_bytes(r['bound_bytes'])} "
        "(input, scratch and output buffers)",
        "elements    " + ("all match the expected dst blocks" if r["all_match"] else
                          f"{r['mismatched_elements']} MISMATCHED"),
    ])


