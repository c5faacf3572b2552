"""redist.torch beside DTensor's own redistribute (issue 22): 8 gloo ranks under torchrun,
the same DTensors, the same placements, timed side by side.

    python -m benchmarks.torch_bench [--mib 64] [--repeat 5]

Per case and engine (DTensor, redist, redist with check=False): the median over
`repeat` runs of the wall time (barrier, the call, barrier; the slowest rank), and the
measured peak per rank: the input block plus the largest growth of the rank's resident
memory during the call (the kernel's high-water mark VmHWM, reset before each call
through /proc/self/clear_refs; glibc is told to return every buffer over 64 KiB to the
kernel at once, MALLOC_MMAP_THRESHOLD_, so freed buffers leave the count). That covers
every buffer a call allocates, gloo's included. For redist the bytes of the buffers its
steps allocate (its own count) are reported beside it. The plan is synthesized and
proved on the first call (reported, then cached); the timed runs alternate the engines.
Writes results/torch-<date>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

from . import report as report_io

# (name, mesh sizes, shape at 64 MiB of float32, src, dst)
CASES = [
    ("transpose", (2, 4), (4096, 4096), ["S0", "S1"], ["S1", "S0"]),
    ("replace-axis", (2, 4), (4096, 4096), ["S0", "R"], ["R", "S1"]),
    ("gather-all-2d", (2, 4), (4096, 4096), ["S0", "S0"], ["R", "R"]),
    ("shard-to-shard-1d", (8,), (4096, 4096), ["S0"], ["S1"]),
    ("row-to-col-4x2", (4, 2), (4096, 4096), ["S0", "S1"], ["S1", "S0"]),
    ("gather-all-3d", (2, 2, 2), (256, 256, 256), ["S0", "S1", "S2"], ["R", "R", "R"]),
    ("swap-3d", (2, 2, 2), (256, 256, 256), ["S0", "S0", "S1"], ["S2", "S2", "S1"]),
    ("uneven-transpose", (2, 4), (4095, 4097), ["S0", "S1"], ["S1", "S0"]),
    ("uneven-1d", (8,), (4093, 4099), ["S1"], ["S0"]),
    ("replicate-to-shard", (2, 4), (4096, 4096), ["R", "R"], ["S0", "S1"]),
    # DTensor's nested uneven splits (4094 rows on 2x4: 512,512,512,511 | 512,512,512,511
    # where §11's ceil blocks give 512 x7, 510): rows regridded at the boundary
    ("nested-gather", (2, 4), (4094, 4096), ["S0", "S0"], ["R", "R"]),
    ("nested-to-cols", (2, 4), (4094, 4097), ["S0", "S0"], ["S1", "S1"]),
    ("rows-to-nested-cols", (2, 4), (4097, 4094), ["R", "S0"], ["S1", "S1"]),
    ("nested-3d", (2, 2, 2), (254, 258, 256), ["S0", "S0", "S0"], ["S1", "S1", "S1"]),
]
NAMES = ("x", "y", "z")


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(key + r":\s+(\d+)", f.read()).group(1)) * 1024


def _measure(dist, fn) -> tuple[float, int, int | None, object]:
    """(seconds, resident growth in bytes, redist's own count, this rank's result block)."""
    dist.barrier()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")                       # reset the high-water mark to the current RSS
    base = _status("VmRSS")
    t0 = time.perf_counter()
    y, own = fn()
    dt = time.perf_counter() - t0
    grow = _status("VmHWM") - base
    dist.barrier()
    return dt, grow, own, y.to_local()


def _case(dist, mesh, t, dplace, repeat: int) -> tuple[dict, bool, float]:
    from redist.torch import redistribute_with_stats

    def ours():
        y, stats = redistribute_with_stats(t, dplace)
        return y, stats.peak_bytes

    def unchecked():
        y, stats = redistribute_with_stats(t, dplace, check=False)
        return y, stats.peak_bytes

    def theirs():
        return t.redistribute(mesh, dplace), None

    import torch
    inp = t.to_local().untyped_storage().nbytes()
    first = _measure(dist, ours)[0]            # synthesis and proof on rank 0, then cached
    equal = torch.equal(_measure(dist, ours)[3], _measure(dist, theirs)[3])
    res: dict = {"redist": [], "dtensor": [], "unchecked": []}
    for _ in range(repeat):
        for engine, fn in (("dtensor", theirs), ("redist", ours), ("unchecked", unchecked)):
            res[engine].append(_measure(dist, fn)[:3])
    return ({e: {"t": statistics.median(r[0] for r in v), "peak": inp + max(r[1] for r in v),
                 "own": max((r[2] or 0) for r in v), "input": inp} for e, v in res.items()},
            equal, first)


def worker(mib: int, repeat: int, out: str, only: list[str] | None = None) -> None:
    import logging
    import warnings

    import torch
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import distribute_tensor

    from redist.torch_serve import placement

    logging.getLogger("torch.distributed.tensor").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    rows = []
    meshes: dict = {}
    for name, sizes, shape, src, dst in CASES:
        if only and name not in only:
            continue
        if mib != 64:
            scale = (mib / 64) ** (1 / len(shape))
            # multiples of 8 stay multiples of 8, odd extents stay odd
            shape = tuple(max(8, int(n * scale) // 8 * 8) + n % 8 for n in shape)
        if sizes not in meshes:
            meshes[sizes] = init_device_mesh("cpu", sizes, mesh_dim_names=NAMES[:len(sizes)])
        mesh = meshes[sizes]
        x = torch.randn(shape) if rank == 0 else torch.empty(shape)
        t = distribute_tensor(x, mesh, [placement(p) for p in src])
        del x
        mine, equal, first = _case(dist, mesh, t, [placement(p) for p in dst], repeat)
        del t
        box: list = [None] * dist.get_world_size()
        dist.all_gather_object(box, (mine, equal, first))
        if rank == 0:
            rows.append({
                "case": name, "mesh": "x".join(map(str, sizes)), "shape": list(shape),
                "src": src, "dst": dst, "equal": all(b[1] for b in box),
                "input_bytes_max": max(b[0]["redist"]["input"] for b in box),
                "redist_first_call_s": max(b[2] for b in box),
                **{f"{e}_s": max(b[0][e]["t"] for b in box)
                   for e in ("redist", "dtensor", "unchecked")},
                **{f"{e}_peak_bytes": max(b[0][e]["peak"] for b in box)
                   for e in ("redist", "dtensor")},
                "redist_own_count_bytes": max(b[0]["redist"]["own"] for b in box)})
            print(json.dumps(rows[-1]), flush=True)
    if rank == 0:
        with open(out, "w") as f:
            json.dump(rows, f)
    dist.destroy_process_group()


def report(rows: list[dict], info: dict) -> str:
    mib = 2 ** 20
    lines = [f"# redist.torch beside DTensor ({info['date']})", "",
             f"`{info['command']}` on {info['machine']}, **shared with other jobs** (times "
             "are medians of runs alternating the two engines in one job; read the ratios, "
             f"not the absolute times). torch {info['torch']}, 8 gloo ranks on CPU.", "",
             "Peak = the input block plus the largest growth of the rank's resident memory "
             "(VmHWM, reset before each call) during the call, the largest rank; it counts "
             "every buffer, gloo's included. redist's own count of the buffers its steps "
             "allocate (input included) is beside it.", "",
             "`check=False` skips the per-call all_gather by which ranks given different "
             "placements fail instead of hanging (DTensor makes no such check).", "",
             "| case | mesh | shape | src -> dst | DTensor ms | redist ms | speed-up | "
             "redist check=False ms | speed-up | DTensor peak MiB | redist peak MiB | "
             "redist own count MiB | equal |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['mesh']} | {'x'.join(map(str, r['shape']))} | "
            f"{','.join(r['src'])} -> {','.join(r['dst'])} | {r['dtensor_s'] * 1e3:.1f} | "
            f"{r['redist_s'] * 1e3:.1f} | {r['dtensor_s'] / r['redist_s']:.2f}x | "
            f"{r['unchecked_s'] * 1e3:.1f} | {r['dtensor_s'] / r['unchecked_s']:.2f}x | "
            f"{r['dtensor_peak_bytes'] / mib:.1f} | {r['redist_peak_bytes'] / mib:.1f} | "
            f"{r['redist_own_count_bytes'] / mib:.1f} | {r['equal']} |")
    def geo(key: str) -> float:
        return math.exp(statistics.mean(math.log(r["dtensor_s"] / r[key]) for r in rows))
    more = [r["case"] for r in rows if r["redist_peak_bytes"] > r["dtensor_peak_bytes"]]
    lines += ["", f"Geometric-mean speed-up of redist over DTensor: **{geo('redist_s'):.2f}x**"
              f" (check=False: {geo('unchecked_s'):.2f}x) over {len(rows)} cases.",
              "Cases where redist's measured peak exceeds DTensor's: "
              + (", ".join(more) if more else "none") + ".",
              "First call of redist (synthesis and proof on rank 0, then cached): "
              + ", ".join(f"{r['case']} {r['redist_first_call_s']:.2f} s" for r in rows) + "."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mib", type=int, default=64, help="global array size (default 64)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--cases", nargs="+", metavar="NAME", help="run only these cases")
    ap.add_argument("--worker", metavar="OUT", help=argparse.SUPPRESS)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = ap.parse_args()
    if args.worker:
        worker(args.mib, args.repeat, args.worker, args.cases)
        return
    import torch

    info = report_io.meta("torch_bench", torch=torch.__version__)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "rows.json")
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", OMP_NUM_THREADS="1")
        subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "8",
                        "-m", "benchmarks.torch_bench", "--mib", str(args.mib), "--repeat",
                        str(args.repeat), "--worker", path]
                       + (["--cases", *args.cases] if args.cases else []),
                       check=True, env=env, timeout=3000)
        with open(path) as f:
            rows = json.load(f)
    report_io.write(args.out, "torch", info, {"rows": rows}, report(rows, info))


if __name__ == "__main__":
    main()
