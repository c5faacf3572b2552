"""`redist calibrate`: measure the cost model's constants on this machine's MPI and save
them for `plan --collectives mpi`, `run` and `redistribute` (costmodel.py).

Each rank runs every kind of step (gathers of contiguous and of strided pieces, all-to-all,
permute, exchange, ...) on a few group sizes and message sizes through the runtime itself;
per kind, a least-squares fit of
seconds = latency·(1 + log2 g) + seconds_per_byte·(bytes the busiest rank receives)
gives the two constants (a latency fitted below zero is replaced by the smallest message's
time, a bandwidth below 1e-12 s/B is clamped). Run as
`mpiexec -n N python -m redist.runtime.calibrate JOB.json` by the command (rank 0 prints
the fitted model and the measurements on one marked line, like the worker's report).
"""

from __future__ import annotations

import json
import math
import statistics
import sys
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
    AllToAll,
    Collective,
    ReduceScatter,
)
from redist.core.plans.plan import Plan
from redist.core.synthesis.costmodel import KINDS, CostModel, step_load

# Bytes per rank before the step. The smallest measures latency nearly alone, so that the
# fitted latency is anchored by a measurement rather than only extrapolated.
SIZES = (1 << 10, 1 << 16, 1 << 20, 8 << 20)
REPEAT = 5


def _groups(ranks: int) -> list[tuple[Mesh, int]]:
    """Meshes of `ranks` devices whose first axis `a` has g = 2..ranks devices."""
    groups = [g for g in (2, 4, 8, 16) if ranks % g == 0 and g <= ranks] or [ranks]
    return [(parse_mesh(f"a={g},b={ranks // g}" if ranks // g > 1 else f"a={g}"), g)
            for g in groups]


def _two_dims(ranks: int, g: int, nbytes: int) -> tuple[int, int]:
    n = max(g, nbytes // 4 // g * g)                       # float32 elements per rank
    return (g * 8 * (ranks // g), max(g, n // 8 // g * g) * g)


def _gather_cases(ranks: int) -> list[Plan]:
    """Contiguous pieces (dim 0), and strided ones (the cost model's STRIDED_GATHER kind):
    dim 1 of a 2-D array, and two dims at once where the group splits in two axes."""
    out = []
    for mesh, g in _groups(ranks):
        for nbytes in SIZES:
            n = max(g, nbytes // 4 // g * g)
            p = _problem(mesh, "[{a},{}]", "[{},{}]", (n * g * (ranks // g), 1))
            out.append(Plan(p, (AllGather(((p.mesh.names[0],), ())),)))
    for mesh, g in _groups(ranks):
        rest = f",b={ranks // g}" if ranks > g else ""
        for nbytes in SIZES:
            m = max(1, nbytes // 4 // 8)          # each block (8, m) before: nbytes
            p = _problem(mesh, "[{},{a}]", "[{},{}]", (8, m * g))
            out.append(Plan(p, (AllGather(((), ("a",))),)))
            if g >= 4:
                p = _problem(parse_mesh(f"a=2,c={g // 2}{rest}"), "[{a},{c}]", "[{},{}]",
                             (16, m * g // 2))
                out.append(Plan(p, (AllGather((("a",), ("c",))),)))
    return out


def _two_dim_cases(ranks: int, src: str, dst: str,
                   step_of: Callable[[Problem], Collective]) -> list[Plan]:
    out = []
    for mesh, g in _groups(ranks):
        for nbytes in SIZES:
            p = _problem(mesh, src, dst, _two_dims(ranks, g, nbytes))
            out.append(Plan(p, (step_of(p),)))
    return out


def _all_to_all_cases(ranks: int) -> list[Plan]:
    return _two_dim_cases(ranks, "[{a},{}]", "[{},{a}]",
                          lambda p: AllToAll(0, 1, (p.mesh.names[0],)))


def _exchange_cases(ranks: int) -> list[Plan]:
    return _two_dim_cases(ranks, "[{},{a}]", "[{a},{}]", lambda p: AllExchange(p.dst))


def _permute_cases(ranks: int) -> list[Plan]:
    out = []
    for _, g in _groups(ranks):
        if ranks // g > 1 and g == ranks // g:
            mesh2 = parse_mesh(f"a={g},b={g}")
            for nbytes in SIZES:
                n = max(1, nbytes // 4) * g * g
                p = Problem(mesh2, (n,), "float32", parse_layout("[{a,b}]"),
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


def _reduce_scatter_cases(ranks: int) -> list[Plan]:
    return _two_dim_cases(ranks, "[{},{}]+{a}", "[{a},{}]",
                          lambda p: ReduceScatter(((p.mesh.names[0],), ())))


def _all_reduce_cases(ranks: int) -> list[Plan]:
    return _two_dim_cases(ranks, "[{},{}]+{a}", "[{},{}]",
                          lambda p: AllReduce((p.mesh.names[0],)))


# One function per op (core/ops): its one-step plans on `ranks` devices, group sizes
# 2..ranks. None: the op is free (the cost model charges it nothing), nothing to measure.
CASES: dict[str, Callable[[int], list[Plan]] | None] = {
    "all_slice": None,
    "all_gather": _gather_cases,
    "all_to_all": _all_to_all_cases,
    "all_permute": _permute_cases,
    "all_exchange": _exchange_cases,
    "reduce_scatter": _reduce_scatter_cases,
    "all_reduce": _all_reduce_cases,
}


def _cases(ranks: int) -> list[tuple[str, Plan]]:
    """(op, one-step plan) for every op the cost model charges (covering every kind)."""
    return [(op, plan) for op, cases in CASES.items() if cases for plan in cases(ranks)]


def _problem(mesh, src: str, dst: str, shape: tuple[int, ...]) -> Problem:
    return Problem(mesh, shape, "float32", parse_layout(src), parse_layout(dst))


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


def main(job_path: str) -> None:
    from mpi4py import MPI

    from redist.runtime.api import execute, mesh_comm
    from redist.runtime.arrays import sample_block

    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    rows = []
    for kind, plan in _cases(comm.Get_size()):
        p = plan.problem
        if not plan.steps:
            continue
        mc = mesh_comm(p.mesh, comm)
        times = []
        for _ in range(REPEAT + 1):
            local = sample_block(p.mesh, p.shape, p.src, rank, p.dtype)
            comm.Barrier()
            t0 = MPI.Wtime()
            execute([local], plan, mc, donate=True)
            times.append(comm.allreduce(MPI.Wtime() - t0, op=MPI.MAX))
        lays = plan.layouts()
        load = step_load(plan, plan.steps[0], lays[0], lays[1])
        assert load is not None
        rows.append({"kind": load.kind or kind, "g": load.group, "bytes": load.busiest,
                     "local": p.local_bytes(lays[1]), "seconds": statistics.median(times[1:])})
    if rank == 0:
        from redist.runtime.report_mark import MARK
        model = fit(rows)
        print(MARK + json.dumps({"model": model.to_json(), "measurements": rows}), flush=True)


def fit(rows: list[dict]) -> CostModel:
    """Per kind, least squares of seconds on (1 + log2 g, busiest bytes); copies are folded
    into the bandwidth term (the runtime's local copies scale with the same bytes)."""
    base = CostModel()
    latency, per_byte = dict(base.latency), dict(base.seconds_per_byte)
    for kind in KINDS:
        mine = [r for r in rows if r["kind"] == kind and r["bytes"] > 0]
        if len(mine) < 2:
            continue
        a = np.array([[1 + math.log2(max(r["g"], 1)), r["bytes"]] for r in mine], dtype=float)
        b = np.array([r["seconds"] for r in mine])
        coef, *_ = np.linalg.lstsq(a, b, rcond=None)
        lat = float(coef[0])
        if lat <= 0:
            # The line's intercept is not a latency when times grow faster than linearly
            # in bytes (caches): take the smallest message's time, latency plus a few
            # bytes, instead of reporting 0.
            small = min(mine, key=lambda r: r["bytes"])
            lat = small["seconds"] / (1 + math.log2(max(small["g"], 1)))
        latency[kind] = lat
        per_byte[kind] = max(1e-12, float(coef[1]))
    return CostModel(latency, per_byte, 0.0, source="calibrated")


if __name__ == "__main__":
    from redist.runtime.lifeline import watch_launcher

    watch_launcher()
    main(sys.argv[1])
