"""Train -> serve weight sync (issue 21, DESIGN §15): NeMo-RL's refit layouts scaled to this
machine, bf16, redist's certified two-mesh plan against the rank-0 funnel (gather on one
rank, broadcast), Alpa-style per-tile send + all-gather, and per-tile send + broadcast, side
by side in one MPI job per
case: cross-mesh bytes, total bytes, time (median), measured peak per rank.

    python -m benchmarks.weight_sync [--mib 8] [--repeat 5] [--cases dp8-tp8,...]

Writes benchmarks/results/weight_sync.json and .md. The machine has 2 shared cores: 16
ranks are heavily oversubscribed, so times compare methods side by side within a case;
they are not absolute (a GPU cluster's links are another world, see the report).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from redist.core.cross.model import parse_placed_mesh
from redist.core.plans.report import human_bytes
from redist.runtime.launch import find_mpiexec

from . import report as report_io

# name: (what it stands for, src mesh, src layout, dst mesh, dst layout, shape at 1 MiB
# scale as a function of the size in MiB)
CASES = {
    "dp8-tp8": ("NeMo-RL refit DP8 -> TP8 (every trainer rank holds the weight; "
                "serving splits it 8 ways)",
                "dp=8@0-7", "[{},{}]", "tp=8@8-15", "[{tp},{}]"),
    "ep-pp-tp-dp": ("MoE experts EP4 x PP2 -> TP4 x DP2 (weights [layer, expert, d, ffn]; "
                    "serving splits ffn over TP, 2 replicas)",
                    "pp=2,ep=4@0-7", "[{pp},{ep},{},{}]", "dp=2,tp=4@8-15",
                    "[{},{},{},{tp}]"),
    "fsdp-tp-replicas": ("FSDP8 -> TP4 with 2 replicas on disjoint ranks",
                         "fsdp=8@0-7", "[{fsdp},{}]", "dp=2,tp=4@8-15", "[{},{tp}]"),
    # dp8-tp8 on 4 ranks (2 per core rather than 8): what oversubscription does to it.
    "dp2-tp2": ("dp8-tp8 scaled to 4 ranks (2 per core here)",
                "dp=2@0-1", "[{},{}]", "tp=2@2-3", "[{tp},{}]"),
}


def shape_for(name: str, mib: int) -> list[int]:
    elements = mib * 2**20 // 2                         # bf16
    if name == "ep-pp-tp-dp":
        return [4, 8, 256, elements // (4 * 8 * 256)]
    side = 1 << ((elements.bit_length() - 1) // 2)
    return [side, elements // side]


def run_case(name: str, mib: int, repeat: int, dtype: str) -> list[dict]:
    what, a, src, b, dst = CASES[name]
    shape = shape_for(name, mib)
    spec = {"a": a, "b": b, "src": src, "dst": dst, "shape": shape, "dtype": dtype}
    ranks = max(parse_placed_mesh(a).devices + parse_placed_mesh(b).devices) + 1
    cmd = [find_mpiexec(), "-n", str(ranks), sys.executable, "-m",
           "benchmarks.weight_sync_mpi", json.dumps(spec), str(repeat)]
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=here, timeout=3600)
    if r.returncode != 0:
        tail = (r.stderr.strip().splitlines() or ["no message"])[-1]
        print(f"{name} failed (exit {r.returncode}): {tail}", file=sys.stderr, flush=True)
        return [{"case": name, "failed": f"exit {r.returncode}: {tail[:300]}"}]
    rows = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    for row in rows:
        row.update(case=name, what=what, a=a, src=src, b=b, dst=dst, shape=shape,
                   dtype=dtype, ranks=ranks)
    return rows


def report(rows: list[dict], meta: dict) -> str:
    ok = [r for r in rows if "failed" not in r]
    by = {(r["case"], r["method"]): r for r in ok}
    cases = list(dict.fromkeys(r["case"] for r in ok))
    lines = [f"# Weight sync between two meshes — {meta['date']}", "",
             f"Machine: {meta['machine']}. {meta['note']}", "",
             f"Command: `{meta['command']}`", "",
             "Per case one MPI job (the src mesh's ranks, then the dst mesh's: 16 ranks, 4 for "
             "dp2-tp2), "
             "the methods interleaved in every repetition, every element checked. "
             "Times: median over the repetitions of the slowest rank; redist's from after its "
             "plan checks. Cross-mesh: bytes received by dst-mesh ranks from src-mesh "
             "ranks (the slow link); max cross-mesh per rank: the most any one rank sends or "
             "receives over that link (what a NIC-bound cluster waits for); total: every byte "
             "received. Peak: the largest per-rank count of "
             "live buffers (MemoryTracker), input included.", ""]
    lines += ["Methods: **redist** (the certified plan: balanced senders, each replica of a dst "
              "tile receives a different slice, all-gather on the dst mesh); **alpa** (the same "
              "pieces and all-gather, every piece sent by the first holder of its src block, as "
              "Alpa does; run by redist's runtime); **bcast** (per tile: the whole tile to one "
              "replica, then a broadcast to the others); **funnel** (gather the array on the "
              "first src rank, send it to the first dst rank, broadcast it on the dst mesh, "
              "every dst rank cuts its block).", ""]
    lines += ["| case | method | cross-mesh | lower bound | max cross-mesh per rank | "
              "total bytes | median time | vs redist | max peak/rank | all match |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for c in cases:
        red = by[(c, "redist")]
        for m in ("redist", "alpa", "bcast", "funnel"):
            r = by[(c, m)]
            lines.append(
                f"| {c} | {m} | {human_bytes(r['cross_mesh_bytes'])} | "
                f"{human_bytes(r['cross_mesh_lower_bound_bytes'])} | "
                f"{human_bytes(r['max_link_bytes_per_rank'])} | "
                f"{human_bytes(r['total_bytes'])} | {r['median_s'] * 1e3:.1f} ms | "
                f"{r['median_s'] / red['median_s']:.2f}x | {human_bytes(r['max_peak'])} | "
                f"{'yes' if r['all_match'] else 'NO'} |")
    lines += ["", "## Wait-mode controls", "",
              "Where ranks share cores, redist's transfer waits nap between polls while "
              "all of a rank's messages are plain slices (runtime.cross.napping; here: "
              + ("on" if ok and ok[0].get("naps") else "off") + "). Two controls in the same "
              "jobs: **redist-spin** (redist with MPI's spinning waits) and **bcast-nap** (the "
              "per-tile broadcast with napping waits on its point-to-point sends). "
              "Median times; ratio to redist in brackets.", "",
              "| case | redist | redist-spin | bcast | bcast-nap |", "|---|---|---|---|---|"]
    for c in cases:
        red = by[(c, "redist")]["median_s"]
        cells = [f"{by[(c, m)]['median_s'] * 1e3:.1f} ms ({by[(c, m)]['median_s'] / red:.2f}x)"
                 if (c, m) in by else "-" for m in ("redist", "redist-spin", "bcast", "bcast-nap")]
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    lines += ["", "## Per case", ""]
    for c in cases:
        red = by[(c, "redist")]
        over = [k for k, (m, p) in enumerate(zip(red["peak_per_rank"],
                                                 red["proved_peak_per_rank"], strict=True))
                if m > p]
        lines += [f"- **{c}**: {red['what']}. `{red['src']}` on `{red['a']}` -> `{red['dst']}` "
                  f"on `{red['b']}`, shape {'x'.join(map(str, red['shape']))} {red['dtype']} "
                  f"({human_bytes(red['array_bytes'])}). redist plan: "
                  f"{' -> '.join(red['steps'])}, proved in {red['prove_seconds']:.2f} s; "
                  f"measured peak per rank "
                  + ("within the proved peak on every rank" if not over else
                     f"OVER the proved peak on ranks {over}")
                  + f" (max {human_bytes(red['max_peak'])}). Funnel peak "
                  f"{human_bytes(by[(c, 'funnel')]['max_peak'])}, per-tile broadcast "
                  f"{human_bytes(by[(c, 'bcast')]['max_peak'])}."]
    failed = [r for r in rows if "failed" in r]
    lines += [f"- {r['case']}: FAILED {r['failed']}" for r in failed]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=8, help="array size in MiB (default 8)")
    ap.add_argument("--repeat", type=int, default=5, help="timed repetitions (default 5)")
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated case names")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = ap.parse_args()
    dtype = "bfloat16"                  # ml_dtypes; MPI moves it as 2-byte opaque elements
    rows = []
    for name in args.cases.split(","):
        print(f"... {name}", file=sys.stderr, flush=True)
        rows += run_case(name, args.mib, args.repeat, dtype)
    info = report_io.meta("weight_sync", note=(
        "Shared machine: 2 cores, other engineers' jobs running; 16 MPI ranks oversubscribe "
        "them 8x (dp2-tp2: 4 ranks, 2x), so only ratios measured side by side in one job mean "
        "anything. bfloat16 "
        "moves as a 16-bit unsigned MPI type (opaque: no arithmetic is done on it)."))
    save(args.out, "weight_sync", info, rows, report(rows, info))


def save(out: str, stem: str, info: dict, rows: list[dict], text: str) -> None:
    """OUT/<stem>.json (rows and metadata) and OUT/<stem>.md (the report, also printed)."""
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, f"{stem}.json"), "w") as f:
        json.dump({"meta": info, "rows": rows}, f, indent=1)
    with open(os.path.join(out, f"{stem}.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
