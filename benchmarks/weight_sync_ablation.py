"""Which runtime change moved the weight sync (issue 21): one MPI job, interleaved (order
alternating per repetition), every element checked, medians of the slowest rank's time
(redist's from after its plan checks, as in benchmarks.weight_sync):

before:   runtime/cross.py as of commit --before (default 38a61e4: x21's runtime: subarray
          types for every box, spinning waits, two collectives of plan checks per call)
redist:   today's runtime (plain slices for contiguous boxes, napping waits where ranks
          share cores, one collective of plan checks once the plan is verified)
spin:     today's, waits spinning
subarray: today's, every box a subarray type (so, as the runtime rules, spinning waits)
bcast:    per-tile send + broadcast (weight_sync_mpi.Baselines)

    python -m benchmarks.weight_sync_ablation [--case dp8-tp8] [--repeat 15] [--before REV]

Prints one line (and appends it to benchmarks/results/weight_sync_ablation.md). Needs git.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

METHODS = ("before", "redist", "spin", "subarray", "bcast")


def job(case: str, reps: int, before_file: str) -> None:
    import importlib.util
    import statistics

    from mpi4py import MPI

    import redist.runtime.cross as new
    from redist.core.cross.coerce import between
    from redist.core.cross.synthesize import certified_cross
    from redist.core.model.dtypes import same_bits
    from redist.runtime.arrays import sample_block
    from redist.runtime.memory import MemoryTracker

    from .weight_sync import CASES, shape_for
    from .weight_sync_mpi import Baselines

    spec = importlib.util.spec_from_file_location("redist.runtime.cross_before", before_file)
    old = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = old
    spec.loader.exec_module(old)
    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    _, a, src, b, dst = CASES[case]
    cp = between(a, b, shape_for(case, 8), "bfloat16", src, dst, comm.Get_size())
    plan, budget = comm.bcast(certified_cross(cp)[::2] if rank == 0 else None, root=0)
    base = Baselines(plan, comm)
    pa, pb = cp.a_problem, cp.b_problem
    want = (sample_block(pb.mesh, cp.shape, pb.dst, cp.b.position[rank], cp.dtype)
            if rank in cp.b else None)
    naps, plain = new.napping(comm), new._message

    def subarray(buf, lo, hi):
        t = new._box_type(buf.shape, lo, hi, buf.dtype)
        return [buf, 1, t], t
    times: dict[str, list[float]] = {m: [] for m in METHODS}
    ok = True
    for rep in range(reps + 1):                              # rep 0 warms up
        for m in (METHODS if rep % 2 else METHODS[::-1]):
            local = (sample_block(pa.mesh, cp.shape, pa.src, cp.a.position[rank], cp.dtype)
                     if rank in cp.a else None)
            comm.Barrier()
            t0 = time.perf_counter()
            if m == "bcast":
                out = base.bcast(local, MemoryTracker())[0]
                dt = time.perf_counter() - t0
            else:
                new._naps[comm.py2f()] = naps and m != "spin"
                new._message = subarray if m == "subarray" else plain
                out, stats = (old if m == "before" else new).redistribute_cross(
                    [local], plan, comm, donate=True, budget=budget)
                new._naps[comm.py2f()], new._message = naps, plain
                dt = stats.seconds
            del local
            ok &= (out is None) if want is None else same_bits(out, want)
            dt = comm.allreduce(dt, op=MPI.MAX)
            if rep:
                times[m].append(dt)
    ok = comm.allreduce(ok, op=MPI.LAND)
    if rank == 0:
        med = {m: statistics.median(v) for m, v in times.items()}
        print(json.dumps({"case": case, "all_match": ok, "naps": naps,
                          "median_ms": {m: v * 1e3 for m, v in med.items()}}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", default="dp8-tp8")
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--before", default="38a61e4")
    ap.add_argument("--job", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.job:
        job(args.case, args.repeat, args.job)
        return
    from redist.core.cross.model import parse_placed_mesh
    from redist.runtime.launch import find_mpiexec

    from .weight_sync import CASES
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    text = subprocess.run(["git", "show", f"{args.before}:runtime/cross.py"], cwd=here,
                          capture_output=True, text=True, check=True).stdout
    _, a, _, b, _ = CASES[args.case]
    ranks = max(parse_placed_mesh(a).devices + parse_placed_mesh(b).devices) + 1
    with tempfile.TemporaryDirectory() as tmp:
        before = os.path.join(tmp, "cross_before.py")
        with open(before, "w") as f:
            f.write(text)
        r = subprocess.run([find_mpiexec(), "-n", str(ranks), sys.executable, "-m",
                            "benchmarks.weight_sync_ablation", "--case", args.case,
                            "--repeat", str(args.repeat), "--job", before],
                           capture_output=True, text=True, cwd=here, timeout=3600)
    if r.returncode != 0:
        sys.exit(f"ablation failed: {(r.stderr.strip().splitlines() or ['?'])[-1][:300]}")
    row = json.loads(next(x for x in r.stdout.splitlines() if x.startswith("{")))
    med = row["median_ms"]
    line = (f"- {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, `python -m "
            f"benchmarks.weight_sync_ablation {' '.join(sys.argv[1:])}` ({args.case}, "
            f"{ranks} ranks, before = {args.before}, napping {'on' if row['naps'] else 'off'}, "
            f"{'all match' if row['all_match'] else 'MISMATCH'}): "
            + ", ".join(f"{m} {med[m]:.1f} ms ({med[m] / med['redist']:.2f}x)"
                        for m in METHODS))
    print(line)
    path = os.path.join(here, "benchmarks", "results", "weight_sync_ablation.md")
    if not os.path.exists(path):
        with open(path, "w") as f:
            f.write("# Weight sync: which runtime change (benchmarks.weight_sync_ablation)\n\n"
                    "Medians of the slowest rank, one MPI job per line, methods "
                    "interleaved; ratio to today's redist in brackets (above 1: slower). "
                    "Shared 2-core machine.\n\n")
    with open(path, "a") as f:
        f.write(line + "\n")


if __name__ == "__main__":
    main()
