"""Run under mpiexec by the MPI benchmarks (mpi_bench.py, fuse_bench.py): one timed call
of a method on this job's ranks, and the methods taking turns over the repetitions.

A method is a function of the handed-over input (a one-element list) returning
(output, the runtime's peak count, seconds or None): seconds where the call times itself
(`redistribute_with_stats`: from after its plan checks, a fixed cost per call), None to
time it from a barrier. Every result is checked element by element; a traced call runs
under tracemalloc (the input allocated under it, so that releasing it is seen too).
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable

import numpy as np
from mpi4py import MPI

from redist.core.model.dtypes import same_bits
from redist.core.model.problem import Problem
from redist.core.plans.plan import Plan
from redist.runtime.api import redistribute_with_stats
from redist.runtime.arrays import sample_block
from redist.runtime.memory import MemoryTracker

from .direct import direct_redistribute

Method = Callable[[list], tuple[np.ndarray, int, float | None]]


def direct(plan: Plan, comm: MPI.Comm) -> Method:
    """One Alltoallv of the plan's problem (benchmarks/direct.py)."""
    def run(box: list) -> tuple[np.ndarray, int, None]:
        mem = MemoryTracker()
        local = box.pop()
        mem.hold(local)
        out = direct_redistribute(local, plan, comm, mem)
        del local
        return out, mem.peak, None
    return run


def redistribute(plan: Plan, comm: MPI.Comm) -> Method:
    """The user's call, the input donated."""
    def run(box: list) -> tuple[np.ndarray, int, float]:
        out, stats = redistribute_with_stats(box, plan, comm, donate=True)
        return out, stats.peak_bytes, stats.seconds
    return run


def timed_call(problem: Problem, comm: MPI.Comm, expected: np.ndarray, method: Method,
               trace: bool) -> tuple[float, int, int, bool]:
    """(seconds, max over ranks; the runtime's peak count; tracemalloc's peak, 0 unless
    traced; this rank's result matched `expected`)."""
    rank = comm.Get_rank()
    traced = 0
    if trace:
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
    box = [sample_block(problem.mesh, problem.shape, problem.src, rank, "float32")]
    if trace:
        tracemalloc.reset_peak()
    comm.Barrier()
    t0 = time.perf_counter()
    out, peak, seconds = method(box)
    dt = time.perf_counter() - t0 if seconds is None else seconds
    if trace:
        traced = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()
    ok = same_bits(out, expected)
    del out
    return comm.allreduce(dt, op=MPI.MAX), peak, traced, ok


def take_turns(names: tuple[str, ...], reps: int,
               call: Callable[[str, bool], tuple[float, int, int, bool]]) -> dict:
    """`call(name, trace)` for each method, reps + 2 times: rep 0 warms up, the last is
    traced. The methods take turns within each repetition (the order rotating), so that
    load from other programs, which drifts over minutes on a shared machine, falls on all
    of them alike (run one after the other, a method's median and the direct one's were
    taken minutes apart: gather-all 1.70x direct in one run, 0.61x in another).
    Returns times (per method, timed reps), per_rep (a dict per timed rep), and per
    method its peak counted and traced on the traced rep and whether every rep matched."""
    times: dict[str, list[float]] = {m: [] for m in names}
    per_rep: list[dict[str, float]] = []
    counted, traced = dict.fromkeys(names, 0), dict.fromkeys(names, 0)
    matched = dict.fromkeys(names, True)
    for rep in range(reps + 2):
        trace = rep == reps + 1
        row = {}
        for i in range(len(names)):
            m = names[(rep + i) % len(names)]
            dt, peak, tr, ok = call(m, trace)
            matched[m] &= ok
            if trace:
                counted[m], traced[m] = peak, tr
            elif rep > 0:
                times[m].append(dt)
                row[m] = dt
        if row:
            per_rep.append(row)
    return {"times": times, "per_rep": per_rep, "counted": counted, "traced": traced,
            "matched": matched}
