"""`redist run`: launch MPI ranks, execute a plan, check every element, report.

Before launching: the plan is verified, the rank count and the memory the job needs are
checked against this machine. While running: Ctrl-C or SIGTERM ends the whole job (the
ranks run in their own process group) and the job's temporary directory is removed.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from redist.core.errors import RedistError
from redist.core.limits import MAX_RUN_RANKS, check
from redist.core.plans.plan import Plan
from redist.core.plans.planjson import load, plan_to_json
from redist.core.plans.report import human_bytes

from .lifeline import launcher_env, make_job_dir
from .report_mark import MARK

# Per rank, beyond the plan's buffers: the Python interpreter, NumPy, mpi4py and MPI.
RANK_OVERHEAD_BYTES = 120 << 20


def find_mpiexec(explicit: str | None = None) -> str:
    """The mpiexec to use: --mpiexec, else $REDIST_MPIEXEC, else the one installed beside
    this Python (the mpich wheel), else the first on PATH. One that is named but missing
    or not executable is an error, never silently replaced by another."""
    if explicit is not None and not explicit.strip():
        raise RedistError("--mpiexec is empty: give the path of an mpiexec")
    for name, cand in (("--mpiexec", explicit), ("$REDIST_MPIEXEC",
                                                 os.environ.get("REDIST_MPIEXEC"))):
        if cand:
            if not (os.path.isfile(cand) and os.access(cand, os.X_OK)):
                raise RedistError(f"{name} {cand!r} is not an executable file")
            return cand
    for cand in (os.path.join(os.path.dirname(sys.executable), "mpiexec"),
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


class Terminated(Exception):
    """SIGTERM or SIGHUP arrived while a job was running."""


ENDING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _restore(old: dict) -> None:
    for sig, handler in old.items():
        signal.signal(sig, handler)


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


def _end(proc: subprocess.Popen) -> None:
    """End the whole job: SIGTERM to its process group, SIGKILL if it lingers (2 s)."""
    for sig, wait in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


# Once mpiexec has exited, how long its output pipes may stay open (a child it left behind
# may hold them); after that the job's process group is killed and the output taken as is.
PIPE_GRACE_SECONDS = 2.0


def _collect(proc: subprocess.Popen, timeout: float) -> tuple[str, str, bool]:
    """stdout, stderr and whether the deadline passed. Never waits for end of file past
    the deadline, nor long after mpiexec itself has exited."""
    deadline = time.monotonic() + timeout
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    chunks: dict[int, list[bytes]] = {out_fd: [], err_fd: []}
    sel = selectors.DefaultSelector()
    for fd in chunks:
        sel.register(fd, selectors.EVENT_READ)
    exited_at = None
    timed_out = False
    try:
        while True:
            now = time.monotonic()
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            if exited_at is not None and (not sel.get_map()
                                          or now >= exited_at + PIPE_GRACE_SECONDS):
                break
            if now >= deadline:
                timed_out = True
                break
            wait = min(0.5, deadline - now)
            if not sel.get_map():           # both pipes closed, mpiexec still running
                time.sleep(min(wait, 0.05))
                continue
            for key, _ in sel.select(timeout=wait):
                data = os.read(key.fd, 1 << 16)
                if data:
                    chunks[key.fd].append(data)
                else:
                    sel.unregister(key.fd)
    finally:
        sel.close()
    if timed_out:
        _end(proc)
    else:                                   # mpiexec is done: nothing of its job may stay
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    proc.stdout.close()
    proc.stderr.close()
    text = {fd: b"".join(c).decode("utf-8", "replace") for fd, c in chunks.items()}
    return text[out_fd], text[err_fd], timed_out


def launch(job: dict, nprocs: int, mpiexec: str | None = None, timeout: float = 300,
           env: dict[str, str] | None = None,
           program: Sequence[str] | None = None) -> JobResult:
    """Run the worker (or `program`, a command taking the job file as its last argument) on
    `nprocs` ranks. The whole process group is ended on timeout, Ctrl-C or SIGTERM."""
    exe = find_mpiexec(mpiexec)
    program = list(program or [sys.executable, "-m", "redist.runtime.worker"])
    tmp = make_job_dir()
    try:
        path = os.path.join(tmp, "job.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(job, f)
        cmd = [exe, "-n", str(nprocs), *program, path]
        # The ranks learn who launched them: they end (and remove `tmp`) if it dies.
        full_env = dict(os.environ, **(env or {}), **launcher_env(tmp))
        # SIGHUP too: a closed terminal must end the job, not leave it running. (This
        # process never initialises MPI, whose own handlers would sit in the way.)
        old = {}
        try:
            for sig in ENDING_SIGNALS:
                old[sig] = signal.signal(sig, _raise_terminated)
        except ValueError:            # not the main thread: the caller handles signals
            pass
        try:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    env=full_env, start_new_session=True, cwd=tmp)
        except OSError as e:
            _restore(old)
            raise RedistError(f"cannot start {exe}: {e.strerror}") from None
        try:
            out, err, timed_out = _collect(proc, timeout)
        except BaseException:         # Ctrl-C, SIGTERM, anything: never leave ranks behind
            _end(proc)
            raise
        finally:
            _restore(old)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if timed_out:
        return JobResult(proc.returncode or -9, None, err, timed_out=True)
    report = None
    for line in out.splitlines():
        if line.startswith(MARK):
            try:
                report = json.loads(line[len(MARK):])
            except (ValueError, RecursionError):
                raise RedistError(f"the MPI job's report is not valid JSON ({exe} is not "
                                  "running redist's worker?)") from None
    return JobResult(proc.returncode, report, err)


def available_memory() -> int | None:
    """Bytes of memory available for new processes on this machine (Linux), or None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def memory_needed(plan: Plan, ranks: int) -> int:
    """What `redist run` needs on this machine: per rank the input block, the plan's
    buffers (the measured runtime peak is at most twice the bound), the expected block and
    its comparison mask, plus the interpreter and MPI."""
    p = plan.problem
    fig = plan.figures()
    dst = p.local_bytes(p.dst)
    per_rank = (p.local_bytes(p.src) + 2 * fig.bound_bytes + dst + dst // p.itemsize
                + RANK_OVERHEAD_BYTES)
    return ranks * per_rank


def check_resources(plan: Plan | None, ranks: int, what: str = "--np") -> None:
    """Refuse, before launching, a job with more ranks than MAX_RUN_RANKS or needing more
    memory than this machine has (without a plan: the interpreters alone)."""
    check(ranks, MAX_RUN_RANKS, what, "MAX_RUN_RANKS (ranks `redist run` starts on this "
          "machine)")
    need = memory_needed(plan, ranks) if plan is not None else ranks * RANK_OVERHEAD_BYTES
    have = available_memory()
    if have is not None and need > have:
        raise RedistError(f"the job needs about {human_bytes(need)} of memory ({ranks} ranks: "
                          f"input, plan buffers, the check and the interpreter) but "
                          f"{human_bytes(have)} is available")


def plan_from_args(args: argparse.Namespace) -> tuple[Plan, str]:
    """The plan to run and where it came from: the file given with --plan (problem options,
    if given, must agree with it), or a plan synthesized for the problem options."""
    if args.plan_file:
        plan = load(args.plan_file)
        given = {k: getattr(args, k) for k in ("mesh", "shape", "dtype", "src", "dst")
                 if getattr(args, k) is not None}
        if given:
            _agree_with_file(plan, given, args.plan_file)
        if args.method != "normal":
            raise RedistError("--method does not apply with --plan (the plan file is run as is)")
        return plan, f"from {args.plan_file}"
    missing = [f"--{k}" for k in ("mesh", "shape", "src", "dst") if getattr(args, k) is None]
    if missing:
        raise RedistError(f"run: give --plan FILE or the problem ({', '.join(missing)} missing)")
    if args.method == "optimal":
        raise RedistError("redist run executes normal or naive plans; write an optimal plan "
                          "with `redist plan --method optimal --json F` and pass --plan F")
    from redist.cli import problem_from_args
    from redist.core.synthesis.synthesize import synthesize_plan

    s = synthesize_plan(problem_from_args(args), args.method, args.collectives)
    return s.plan, s.method


def _agree_with_file(plan: Plan, given: dict, path: str) -> None:
    from redist.core.model.problem import dtype_name
    from redist.core.model.syntax import parse_layout, parse_mesh, parse_shape

    p = plan.problem
    parsed = {"mesh": parse_mesh, "shape": parse_shape, "src": parse_layout,
              "dst": parse_layout, "dtype": dtype_name}
    # The user's terms: the mesh as given (p.mesh may be refined into sub-axes) and the
    # layouts on it.
    theirs = {"mesh": p.base, "shape": p.shape, "src": p.show(p.src), "dst": p.show(p.dst),
              "dtype": p.dtype}
    for key, text in given.items():
        if parsed[key](text) != theirs[key]:
            raise RedistError(f"--{key} {text} contradicts the plan file {path} "
                              f"({key} {theirs[key]}); with --plan the problem comes from the "
                              "file")


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


def launch_for(job: dict, args: argparse.Namespace) -> JobResult | int:
    """`launch` for `redist run`: the job's result, or the exit code when it was ended
    (terminated, or over --timeout), with its message printed."""
    try:
        res = launch(job, args.np, args.mpiexec, args.timeout)
    except Terminated:
        print("redist: terminated; the MPI job was ended", file=sys.stderr)
        return 143
    if res.timed_out:
        print(f"redist: error: the MPI job did not finish within {args.timeout:g} s and was "
              "killed", file=sys.stderr)
        return 1
    return res


def run_command(args: argparse.Namespace) -> int:
    plan, method = plan_from_args(args)
    devices = plan.problem.mesh.num_devices
    if args.np != devices:
        raise RedistError(f"--np {args.np} does not match the mesh's {devices} devices")
    check_resources(plan, args.np)
    find_mpiexec(args.mpiexec)                # a bad --mpiexec is bad input, before proving
    refusal = unverified_reason(plan)
    if refusal:
        print(f"redist: refusing to run an unverified plan: {refusal}", file=sys.stderr)
        return 1
    job = {"plan": plan_to_json(plan, with_figures=False), "repeat": args.repeat}
    if sys.stderr.isatty() and getattr(args, "json", None) != "-":
        print(f"... running on {args.np} MPI ranks ({args.repeat} repetitions, "
              f"{human_bytes(plan.figures().bound_bytes)} per rank)", file=sys.stderr,
              flush=True)
    res = launch_for(job, args)
    if isinstance(res, int):
        return res
    if res.returncode == 0 and not isinstance(res.report, dict):
        raise RedistError(f"the MPI job ended without a report from redist's worker; is "
                          f"{find_mpiexec(args.mpiexec)} an mpiexec?")
    if res.returncode != 0 or res.report is None:
        print(f"redist: error: the MPI job failed (exit {res.returncode}): "
              f"{first_error(res.stderr)}", file=sys.stderr)
        return 2 if "redist: error" in res.stderr else 1
    try:
        text = format_report(res.report)
        all_match = res.report["all_match"]
        over = over_proved(res.report)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, ZeroDivisionError,
            OverflowError) as e:
        raise RedistError(f"the MPI job's report is malformed ({type(e).__name__}: "
                          f"{str(e)[:80]}); is {find_mpiexec(args.mpiexec)} an mpiexec?") \
            from None
    return finish_run(args, res.report, method, text, all_match is True, bool(over))


def finish_run(args: argparse.Namespace, report: dict, method: str, text: str,
               all_match: bool, over: bool) -> int:
    """Print (or write as JSON) a run's report; exit 1 on a mismatch or a measured peak
    over the proved one."""
    if getattr(args, "json", None):
        from redist.cli import emit_json
        emit_json(report, args.json)
    if getattr(args, "json", None) != "-":
        print(f"plan        {method}")
        print(text)
    if not all_match:
        return 1
    if over:
        print("redist: the measured peak exceeds the proved peak (see memory above)",
              file=sys.stderr)
        return 1
    return 0


# tracemalloc counts the interpreter's own objects too (the plan's text, MPI requests,
# small arrays of the hash agreement): a few KiB that no proof is about, allowed up to this.
INTERPRETER_BYTES = 64 << 10


def over_proved(r: dict) -> bool:
    """Whether a rank measured more than the plan's proved runtime peak: the runtime's own
    count of its buffers, or tracemalloc's count beyond the interpreter's allowance."""
    proved = r["plan"]["figures"]["runtime_peak_bytes"]
    return (max(r["peak_bytes_per_rank"]) > proved
            or max(r["traced_peak_bytes_per_rank"]) > proved + INTERPRETER_BYTES)


def moved_bytes(r: dict) -> int:
    """Bytes the run received: the volume figure, less what fused runs of all-to-alls
    (runtime/fuse.py) did not move."""
    return r["plan"]["figures"]["volume_bytes"] - sum(
        u["figure_bytes"] - u["wire_bytes"] for u in r.get("fused", []))


def format_report(r: dict) -> str:
    fig = r["plan"]["figures"]
    steps = " -> ".join(s["op"] for s in r["plan"]["steps"]) or "(no steps)"
    moved = (f"{human_bytes(moved_bytes(r))} (the plan's figure "
             f"{human_bytes(fig['volume_bytes'])}) " if r.get("fused")
             else f"{human_bytes(fig['volume_bytes'])} ")
    return "\n".join([
        f"ran         {steps} on {r['ranks']} MPI ranks, {r['repeat']} repetitions",
        f"time        median {r['median_seconds'] * 1e3:.2f} ms, min "
        f"{r['min_seconds'] * 1e3:.2f} ms (slowest rank per repetition)",
        f"volume      {moved}moved (lower bound {human_bytes(fig['lower_bound_bytes'])})",
        *[f"fused       steps {u['steps'][0]}-{u['steps'][1]} ran as one all-to-all: "
          f"{human_bytes(u['wire_bytes'])} received where their figures count "
          f"{human_bytes(u['figure_bytes'])} (REDIST_FUSE=0 runs them one by one)"
          for u in r.get("fused", [])],
        f"memory      proved peak {human_bytes(fig['runtime_peak_bytes'])} = "
        f"{fig['runtime_peak_bytes'] / r['bound_bytes']:.3f}x bound "
        f"{human_bytes(r['bound_bytes'])}; measured peak per rank "
        f"{human_bytes(max(r['peak_bytes_per_rank']))} = "
        f"{max(r['peak_bytes_per_rank']) / r['bound_bytes']:.3f}x (the runtime's count of "
        f"input, scratch and output), tracemalloc "
        f"{human_bytes(max(r['traced_peak_bytes_per_rank']))} = "
        f"{max(r['traced_peak_bytes_per_rank']) / r['bound_bytes']:.3f}x (also the "
        f"interpreter's objects)" + (": EXCEEDS the proved peak" if over_proved(r) else ""),
        "elements    " + ("all match the expected dst blocks" if r["all_match"] else
                          f"{r['mismatched_elements']} MISMATCHED"),
    ])
