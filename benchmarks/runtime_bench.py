"""Runtime benchmark (issue 4): DESIGN §9 cases on 8 ranks (paper-1d: 6), float32 arrays
of 64 MiB and 256 MiB: normal plan vs naive plan vs one direct Alltoallv.

    python -m benchmarks.runtime_bench [--sizes 64,256] [--repeat 5] [--out DIR]

Writes DIR/runtime-<date>.json and DIR/runtime-<date>.md. The machine has 2 cores, so 8
ranks are oversubscribed: times are comparable side by side, not absolute.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys

from redist.runtime.launch import find_mpiexec

# name: mesh, src, dst, shape for 64 MiB, shape for 256 MiB (float32)
CASES = {
    "transpose": ("x=2,y=4", "[{x},{y}]", "[{y},{x}]", "4096,4096", "8192,8192"),
    "replace-axis": ("x=2,y=4", "[{x},{}]", "[{},{y}]", "4096,4096", "8192,8192"),
    "paper-1d": ("x=2,y=3", "[{x}]", "[{y}]", "16777212", "67108860"),
    "gather-all": ("x=2,y=2,z=2", "[{x},{y},{z}]", "[{},{},{}]", "256,256,256",
                   "512,512,256"),
    "swap-3d": ("x=2,y=2,z=2", "[{x,y},{z},{}]", "[{},{z},{y,x}]", "256,256,256",
                "512,512,256"),
    "reorder": ("x=4,y=2", "[{x,y},{}]", "[{y,x},{}]", "4096,4096", "8192,8192"),
}


def run_case(name: str, size_mib: int, repeat: int) -> list[dict]:
    mesh, src, dst, s64, s256 = CASES[name]
    shape = s64 if size_mib == 64 else s256
    ranks = 1
    for part in mesh.split(","):
        ranks *= int(part.split("=")[1])
    cmd = [find_mpiexec(), "-n", str(ranks), sys.executable, "-m", "benchmarks.mpi_bench",
           mesh, shape, src, dst, str(repeat)]
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=here, timeout=3600)
    if r.returncode != 0:
        raise SystemExit(f"{name} {size_mib} MiB failed:\n{r.stderr[-3000:]}")
    rows = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    for row in rows:
        row.update(case=name, size_mib=size_mib, ranks=ranks, shape=shape)
    return rows


def report(rows: list[dict], meta: dict) -> str:
    lines = [f"# Runtime benchmark — {meta['date']}", "",
             f"Machine: {meta['machine']}. {meta['note']}", "",
             f"Command: `{meta['command']}`", "",
             "| case | size | method | steps | median ms | vs direct | peak/bound | volume MiB |"
             " elements |", "|---|---|---|---|---|---|---|---|---|"]
    direct = {(r["case"], r["size_mib"]): r["median_s"] for r in rows if r["method"] == "direct"}
    for r in rows:
        ratio = r["median_s"] / direct[(r["case"], r["size_mib"])]
        lines.append(
            f"| {r['case']} | {r['size_mib']} MiB | {r['method']} | {'+'.join(r['steps'])} "
            f"| {r['median_s'] * 1e3:.1f} | {ratio:.2f}x | {r['peak_bytes'] / r['bound_bytes']:.2f}"
            f" | {r['volume_bytes'] / 2**20:.1f} | {'ok' if r['all_match'] else 'MISMATCH'} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="64,256")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = ap.parse_args()
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        for name in args.cases.split(","):
            print(f"running {name} at {size} MiB ...", file=sys.stderr, flush=True)
            rows += run_case(name, size, args.repeat)
    date = datetime.date.today().isoformat()
    meta = {"date": date, "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}",
            "note": "8 MPI ranks (paper-1d: 6) oversubscribed on 2 cores, shared-memory "
                    "MPICH (PyPI wheel); medians over the repetitions, rep 0 discarded.",
            "command": "python -m benchmarks.runtime_bench " + " ".join(sys.argv[1:])}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"runtime-{date}.json"), "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1)
    text = report(rows, meta)
    with open(os.path.join(args.out, f"runtime-{date}.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
