"""`redist calibrate`: measure the cost model's constants on this machine's MPI and save
them for `plan --collectives mpi`, `run` and `redistribute` (core/synthesis/costmodel.py).

Each rank runs one-step plans of every kind (slices, gathers of contiguous and of strided
pieces, all-to-alls with none, one or two local transposes, permutes, exchanges, the
reductions) on group sizes 2..ranks and three block sizes through the runtime itself, on
a block of ones (the values do not change the time). One weighted least-squares fit over
all of them, every constant >= 0, gives per kind the seconds per message and per wire
byte and the shared seconds per locally copied and transposed byte, minimising the
relative error (a 1 ms step mispredicted by 0.5 ms counts as much as a 1 s one by 0.5 s).
Run as `mpiexec -n N python -m redist.runtime.calibrate JOB.json` by the command (rank 0
prints the fitted model, the fit's error per kind and the measurements on one marked
line, like the worker's report).
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np

from redist.core.model.mesh import Mesh
from redist.core.model.problem import Problem
from redist.core.model.syntax import parse_layout, parse_mesh
from redist.core.ops import (
    AllExchange,
    AllGather,
    AllPermute,
    AllReduce,
    AllSlice,
    AllToAll,
    Collective,
    ReduceScatter,
)
from redist.core.ops.all_exchange import in_slots
from redist.core.plans.plan import Plan
from redist.core.synthesis.costmodel import KINDS, CostModel, Load, beyond_cache, step_load

# Bytes per rank before the step: the smallest is mostly messages and the step's fixed
# cost, the largest the size of a rank's block in the benchmark's 64 MiB cases (8 ranks).
SIZES = (1 << 18, 2 << 20, 8 << 20)
# A block of 32 MiB per rank for one case of each data-moving kind (a gather to 64 MiB):
# buffers far beyond the cache, as a 64 MiB problem replicated on some axes holds them
# (the cost model's memory term and the cache size it starts at are fitted on these).
LARGE = 32 << 20
# Working-set sizes the fit tries as the cache's (the one that fits best is kept).
CACHE_SIZES = tuple(1 << k for k in range(20, 27))
REPEAT = 3                # timed runs per plan (after one untimed)
# A message is never free: a latency the fit puts at 0 (times growing faster than
# linearly in bytes, caches) is reported as this instead (issue 15).
MIN_LATENCY = 1e-6
MIN_SECONDS_PER_BYTE = 1e-12


def _groups(ranks: int) -> list[tuple[Mesh, int]]:
    """Meshes of `ranks` devices whose first axis `a` has g = 2..ranks devices."""
    groups = [g for g in (2, 4, 8, 16) if ranks % g == 0 and g <= ranks] or [ranks]
    return [(parse_mesh(f"a={g},b={ranks // g}" if ranks // g > 1 else f"a={g}"), g)
            for g in groups]


def _cols(nbytes: int, rows: int, g: int) -> int:
    """Columns of a float32 block of `rows` rows and about nbytes, a multiple of g."""
    return max(g, nbytes // 4 // rows // g * g)


def _problem(mesh: Mesh, src: str, dst: str, shape: tuple[int, ...]) -> Problem:
    return Problem(mesh, shape, "float32", parse_layout(src), parse_layout(dst))


def _one(mesh: Mesh, src: str, dst: str, shape: tuple[int, ...],
         step_of: Callable[[Problem], Collective]) -> Plan:
    p = _problem(mesh, src, dst, shape)
    return Plan(p, (step_of(p),))


def _slice_cases(ranks: int) -> list[Plan]:
    # Dim 1 kept in part: rows compacted one by one (dim 0 would be one memmove); a few
    # long rows, and many of 1 KiB.
    mesh, g = _groups(ranks)[0]
    return [_one(mesh, "[{},{}]", "[{},{a}]", shape, lambda p: AllSlice(((), ("a",))))
            for mesh, g in _groups(ranks) for nbytes in SIZES
            for shape in ((8, _cols(nbytes, 8, g)), (nbytes // (1024 * g), 256 * g))] + [
        _one(mesh, "[{},{}]", "[{},{a}]", (LARGE // (1024 * g), 256 * g),
             lambda p: AllSlice(((), ("a",))))]


def _gather_cases(ranks: int) -> list[Plan]:
    """Contiguous pieces (dim 0), strided ones (the cost model's STRIDED_GATHER kind: dim 1
    of a 2-D array), and several dims at once (GATHER_DIMS) where the group splits."""
    out = []
    for mesh, g in _groups(ranks):
        rest = f",b={ranks // g}" if ranks > g else ""
        for nbytes in SIZES:
            c = _cols(nbytes, 8, 1)
            out.append(_one(mesh, "[{a},{}]", "[{},{}]", (8 * g, c),
                            lambda p: AllGather(((p.mesh.names[0],), ()))))
            out.append(_one(mesh, "[{},{a}]", "[{},{}]", (8, c * g),
                            lambda p: AllGather(((), ("a",)))))
            if g == 2 and nbytes == SIZES[-1]:
                out.append(_one(mesh, "[{a},{}]", "[{},{}]", (8 * g, _cols(LARGE, 8, 1)),
                                lambda p: AllGather(((p.mesh.names[0],), ()))))
            short = nbytes < SIZES[-1]     # 64-byte runs: a second per step at the top
            if short:
                out.append(_one(mesh, "[{},{a}]", "[{},{}]", (nbytes // 64, 16 * g),
                                lambda p: AllGather(((), ("a",)))))
            if g >= 4:                 # several dims: long rows, and 64-byte ones
                two = parse_mesh(f"a=2,c={g // 2}{rest}")
                out.append(_one(two, "[{a},{c}]", "[{},{}]", (16, c * g // 2),
                                lambda p: AllGather((("a",), ("c",)))))
                if short:
                    out.append(_one(two, "[{a},{c}]", "[{},{}]", (nbytes // 32, 8 * g),
                                    lambda p: AllGather((("a",), ("c",)))))
            if g >= 8:
                m = math.isqrt(nbytes // 512)           # a cube's blocks: 512-byte runs
                cube = parse_mesh(f"a=2,c=2,d={g // 4}{rest}")
                out.append(_one(cube, "[{a},{c},{d}]", "[{},{},{}]", (2 * m, 2 * m, 128 * g // 4),
                                lambda p: AllGather((("a",), ("c",), ("d",)))))
                if short:                                 # 64-byte runs
                    m = math.isqrt(nbytes // 64)
                    out.append(_one(cube, "[{a},{c},{d}]", "[{},{},{}]",
                                    (2 * m, 2 * m, 16 * g // 4),
                                    lambda p: AllGather((("a",), ("c",), ("d",)))))
    return out


def _all_to_all_cases(ranks: int) -> list[Plan]:
    """Blocks whose in-place all-to-all transposes them once, never, and twice."""
    out = []
    for mesh, g in _groups(ranks):
        for nbytes in SIZES:
            c = _cols(nbytes, 8, g)
            out.append(_one(mesh, "[{a},{}]", "[{},{a}]", (8 * g, c),
                            lambda p: AllToAll(0, 1, ("a",))))
            out.append(_one(mesh, "[{},{a}]", "[{a},{}]", (g, _cols(nbytes, g, 1) * g),
                            lambda p: AllToAll(1, 0, ("a",))))
            if g == 2 and nbytes == SIZES[-1]:
                out.append(_one(mesh, "[{a},{}]", "[{},{a}]", (8 * g, _cols(LARGE, 8, g)),
                                lambda p: AllToAll(0, 1, ("a",))))
            out.append(_one(mesh, "[{},{a},{}]", "[{},{},{a}]", (2, 4 * g, c // 2),
                            lambda p: AllToAll(1, 2, ("a",))))
    return out


def _permute_cases(ranks: int) -> list[Plan]:
    out = []
    for mesh, g in _groups(ranks):
        if ranks // g > 1:
            for nbytes in SIZES:
                p = Problem(mesh, (nbytes // 4 * ranks,), "float32", parse_layout("[{a,b}]"),
                            parse_layout("[{b,a}]"))
                out.append(Plan(p, (AllPermute(p.dst),)))
    if not out:
        mesh = parse_mesh(f"x={ranks}")
        for nbytes in SIZES:
            p = Problem(mesh, (max(1, nbytes // 4) * ranks,), "float32",
                        parse_layout("[{x}]"), parse_layout("[{x}]"))
            # A shifted block order: every device changes block.
            out.append(_shift_plan(p))
    return out


def _exchange_cases(ranks: int) -> list[Plan]:
    out = []
    for mesh, g in _groups(ranks):
        for nbytes in SIZES:
            c = _cols(nbytes, 8, g)
            out.append(_one(mesh, "[{},{a}]", "[{a},{}]", (8, c * g),
                            lambda p: AllExchange(p.dst)))
            out.append(_one(mesh, "[{},{a}]", "[{a},{}]", (nbytes // 64, 16 * g),
                            lambda p: AllExchange(p.dst)))             # 64-byte runs
            # A gather's bytes and a strided gather's (one run per row and peer), one row
            # or column short: padded blocks, so one Alltoallw (even ones run in slots, as
            # the cases above run in place).
            out.append(_one(mesh, "[{a},{}]", "[{},{}]", (8 * g - 1, _cols(nbytes, 8, 1)),
                            lambda p: AllExchange(p.dst)))
            if nbytes < SIZES[-1]:
                out.append(_one(mesh, "[{},{a}]", "[{},{}]", (nbytes // 256, 64 * g - 1),
                                lambda p: AllExchange(p.dst)))
            if g == 2 and nbytes == SIZES[-1]:
                out.append(_one(mesh, "[{},{a}]", "[{a},{}]", (8, _cols(LARGE, 8, g) * g),
                                lambda p: AllExchange(p.dst)))
                out.append(_one(mesh, "[{},{}]", "[{},{a}]", (8, _cols(LARGE, 8, g)),
                                lambda p: AllExchange(p.dst)))     # held whole: a copy
            if ranks // g > 1:
                h = ranks // g
                out.append(_one(mesh, "[{a},{b}]", "[{b},{a}]", (8 * g, _cols(nbytes, 8, h) * h),
                                lambda p: AllExchange(p.dst)))
    return out


def _exchange_slot_cases(ranks: int) -> list[Plan]:
    """Exchanges in slots (the cost model's EXCHANGE_SLOTS kind): gathers as exchanges,
    whose after block is the group's blocks in piece order: no transpose (dim 0), one
    (two dims gathered), two (a cube); and a block changing axis (paper-1d's kind). The
    transposes against the wire bytes vary from 0 to 2.3x, so their constant is fitted
    on the path that spends most of its time in them (gather-all at 64 MiB)."""
    out = []
    for mesh, g in _groups(ranks):
        h = ranks // g
        for nbytes in SIZES[:2]:                       # outputs up to `ranks` blocks
            n = nbytes // 4
            out.append(_one(mesh, "[{a},{}]", "[{},{}]", (64 * g, max(1, n // 64)),
                            lambda p: AllExchange(p.dst)))
            if h > 1:
                out.append(_one(mesh, "[{a},{b}]", "[{},{}]", (64 * g, max(1, n // 64) * h),
                                lambda p: AllExchange(p.dst)))
                out.append(_one(mesh, "[{a}]", "[{b}]", (n // h * h * g,),
                                lambda p: AllExchange(p.dst)))
            if g == 8:
                m = round((n // 2) ** (1 / 3))
                cube = parse_mesh(f"a=2,c=2,d=2{f',b={h}' if h > 1 else ''}")
                out.append(_one(cube, "[{a},{c},{d}]", "[{},{},{}]", (2 * m, 2 * m, 4 * m),
                                lambda p: AllExchange(p.dst)))
    # (where the slot schedule finds no rounds the exchange is one Alltoallw: not these)
    return [pl for pl in out if in_slots(pl.problem.mesh, pl.problem.shape, pl.problem.src,
                                          pl.problem.dst) is not None]


def _reduce_scatter_cases(ranks: int) -> list[Plan]:
    # One Reduce_scatter_block (dim 0), and one per chunk (dim 1).
    out = []
    for mesh, g in _groups(ranks):
        for nbytes in SIZES:
            c = _cols(nbytes, 8, g)
            out.append(_one(mesh, "[{},{}]+{a}", "[{a},{}]", (8, c),
                            lambda p: ReduceScatter((("a",), ()))))
            out.append(_one(mesh, "[{},{}]+{a}", "[{},{a}]", (8, c),
                            lambda p: ReduceScatter(((), ("a",)))))
    return out


def _all_reduce_cases(ranks: int) -> list[Plan]:
    return [_one(mesh, "[{},{}]+{a}", "[{},{}]", (8, _cols(nbytes, 8, 1)),
                 lambda p: AllReduce(("a",)))
            for mesh, g in _groups(ranks) for nbytes in SIZES]


# One function per op (core/ops): its one-step plans on `ranks` devices, group sizes
# 2..ranks, blocks of SIZES bytes per rank.
CASES: dict[str, Callable[[int], list[Plan]] | None] = {
    "all_slice": _slice_cases,
    "all_gather": _gather_cases,
    "all_to_all": _all_to_all_cases,
    "all_permute": _permute_cases,
    "all_exchange": lambda ranks: _exchange_cases(ranks) + _exchange_slot_cases(ranks),
    "reduce_scatter": _reduce_scatter_cases,
    "all_reduce": _all_reduce_cases,
}


def cases(ranks: int) -> list[Plan]:
    """The one-step plans calibrate measures on `ranks` devices (every kind)."""
    return [plan for make in CASES.values() if make for plan in make(ranks) if plan.steps]


def _shift_plan(p: Problem) -> Plan:
    """A permute in which every device receives (blocks rotate): the mesh split in two."""
    from redist.core.model.axes import prime_cuts
    finer = p.refined(prime_cuts(p.base, p.atoms()))
    names = finer.mesh.names
    if len(names) < 2:
        return Plan(finer, ())
    src = finer.src
    rotated = type(src)((names[1:] + names[:1],))
    return Plan(finer.with_ends(src, rotated), (AllPermute(rotated),))


# Block transposes measured alone (no message, no other work), on every rank at once as
# in a step, each through one chunk of scratch as the runtime's: the shape of an exchange
# in slots' piece-order pass (two rows of pieces, 512-byte runs), in the cache and beyond.
# In the plans' rows transposes come with as many wire bytes or more, and in the cache
# they cost little: the fit put their constant at 0 in 3 of 4 calibrations, while
# gather-all's exchange spends two thirds of its time in them.
LOCAL_KIND = "local_transpose"


def _transpose_rows(comm, most) -> list[dict]:
    """One row per size: the slowest rank's median time (`most`: MPI.MAX)."""
    from redist.core.semantics.working import chunk_elements
    from redist.runtime import inplace
    rows = []
    for nbytes in (*SIZES, LARGE):
        n = nbytes // 4
        x = np.ones(n, dtype=np.float32)
        scratch = np.empty(chunk_elements(n), dtype=np.float32)
        times = []
        for _ in range(REPEAT + 1):
            comm.Barrier()
            t0 = time.perf_counter()
            inplace.transpose_blocks(x, 2, n // 256, 128, scratch)
            times.append(comm.allreduce(time.perf_counter() - t0, op=most))
        rows.append(_row(Load(LOCAL_KIND, 0, 0, transposes=nbytes, steps=0, working=nbytes),
                         statistics.median(times[1:])) | {"plan": f"transpose {nbytes} B"})
    return rows


def _row(load: Load, seconds: float) -> dict:
    return {"kind": load.kind, "messages": load.messages, "wire": load.wire,
            "copies": load.copies, "transposes": load.transposes, "runs": load.runs,
            "steps": load.steps, "g": load.group, "working": load.working,
            "seconds": seconds}


def main(job_path: str) -> None:
    from mpi4py import MPI

    from redist.runtime.api import execute, mesh_comm

    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    start = time.perf_counter()
    rows = []
    for plan in cases(comm.Get_size()):
        p = plan.problem
        mc = mesh_comm(p.mesh, comm)
        shape = p.src.valid_shape(p.mesh, p.shape, rank)
        times = []
        for _ in range(REPEAT + 1):
            local = np.ones(shape, dtype=np.float32)
            comm.Barrier()
            t0 = MPI.Wtime()
            execute([local], plan, mc, donate=True)
            times.append(comm.allreduce(MPI.Wtime() - t0, op=MPI.MAX))
        lays = plan.layouts()
        rows.append(_row(step_load(plan, plan.steps[0], lays[0], lays[1]),
                         statistics.median(times[1:]))
                    | {"plan": f"{p.mesh} {p.shape} {p.src} -> {p.dst}"})
    rows += _transpose_rows(comm, MPI.MAX)
    if rank == 0:
        from redist.runtime.report_mark import MARK
        model = fit(rows)
        print(MARK + json.dumps({"model": model.to_json(), "fit": fit_errors(model, rows),
                                 "measurements": rows,
                                 "seconds": time.perf_counter() - start}), flush=True)


def _features(row: dict, cache_bytes: int) -> dict:
    k = row["kind"]
    return {("latency", k): row["messages"], ("seconds_per_byte", k): row["wire"],
            ("copy", ""): row["copies"], ("transpose", ""): row["transposes"],
            ("seconds_per_run", k): row.get("runs", 0), ("step", ""): row.get("steps", 1),
            ("memory", ""): beyond_cache(row_load(row), cache_bytes)}


def fit(rows: list[dict]) -> CostModel:
    """The best of _fit_at over CACHE_SIZES (least squared relative error): the size
    beyond which bytes cost more is measured, not read from /sys (a VM reports its host's
    cache, and the ranks share it)."""
    rows = [r for r in rows if r["seconds"] > 0]
    fits = [_fit_at(rows, c) for c in CACHE_SIZES]
    return min(fits, key=lambda m: sum((m.charge(row_load(r)) / r["seconds"] - 1) ** 2
                                       for r in rows))


def _fit_at(rows: list[dict], cache_bytes: int) -> CostModel:
    """Least squares of every row's relative error over all the model's constants at once,
    each >= 0 (kinds without rows keep their defaults), the cache at `cache_bytes`; a
    latency fitted to 0 where the kind sends messages becomes MIN_LATENCY, a bandwidth
    term MIN_SECONDS_PER_BYTE."""
    base = CostModel()
    names = sorted({name for r in rows for name, v in _features(r, cache_bytes).items() if v})
    latency, per_byte = dict(base.latency), dict(base.seconds_per_byte)
    copy, transpose = base.copy_seconds_per_byte, base.transpose_seconds_per_byte
    run, per_step = dict(base.seconds_per_run), base.seconds_per_step
    memory = base.memory_seconds_per_byte
    if names:
        a = np.array([[_features(r, cache_bytes).get(n, 0) / r["seconds"] for n in names]
                      for r in rows], dtype=float)
        x = nonnegative_least_squares(a, np.ones(len(rows)))
        got = dict(zip(names, x.tolist(), strict=True))
        for (what, kind), v in got.items():
            if what == "latency":
                latency[kind] = max(v, MIN_LATENCY)
            elif what == "seconds_per_byte":
                per_byte[kind] = max(v, MIN_SECONDS_PER_BYTE)
            elif what == "seconds_per_run":
                run[kind] = v
        copy = got.get(("copy", ""), copy)
        transpose = got.get(("transpose", ""), transpose)
        per_step = got.get(("step", ""), per_step)
        memory = got.get(("memory", ""), 0.0)
    return CostModel(latency, per_byte, copy, "calibrated", transpose, run, per_step, memory,
                     cache_bytes)


def row_load(row: dict) -> Load:
    """The Load a measurement row was charged (_row's inverse)."""
    return Load(row["kind"], row["messages"], row["wire"], copies=row["copies"],
                transposes=row["transposes"], runs=row.get("runs", 0),
                steps=row.get("steps", 1), group=row["g"], working=row.get("working", 0))


def fit_errors(model: CostModel, rows: list[dict]) -> dict[str, dict]:
    """Per kind: rows, median and largest |predicted - measured| / measured."""
    out = {}
    for kind in KINDS:
        errs = [abs(model.charge(row_load(r)) - r["seconds"]) / r["seconds"]
                for r in rows if r["kind"] == kind and r["seconds"] > 0]
        if errs:
            out[kind] = {"rows": len(errs), "median": statistics.median(errs),
                         "max": max(errs)}
    return out


def nonnegative_least_squares(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """argmin |a x - b| over x >= 0 (Lawson-Hanson active set), columns scaled to unit
    norm for the solve (the features span messages to gigabytes)."""
    norms = np.linalg.norm(a, axis=0)
    norms[norms == 0] = 1.0
    a = a / norms
    n = a.shape[1]
    x = np.zeros(n)
    free = np.zeros(n, dtype=bool)
    for _ in range(3 * n + 3):
        w = a.T @ (b - a @ x)
        if free.all() or w[~free].max() <= 1e-10 * max(1.0, float(np.abs(b).max())):
            break
        free[int(np.argmax(np.where(free, -np.inf, w)))] = True
        while True:
            z = np.zeros(n)
            z[free] = np.linalg.lstsq(a[:, free], b, rcond=None)[0]
            if (z[free] > 0).all():
                x = z
                break
            bad = free & (z <= 0)
            step = float(np.min(x[bad] / (x[bad] - z[bad])))
            x = x + step * (z - x)
            free &= x > 1e-15
            x[~free] = 0.0
    return x / norms


if __name__ == "__main__":
    from redist.runtime.lifeline import watch_launcher

    watch_launcher()
    main(sys.argv[1])
