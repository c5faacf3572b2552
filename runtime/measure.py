"""How a `redist run` rank measures a plan: timed runs, then one traced run, then the
figures every rank contributes to the report (one loop for one-mesh and two-mesh jobs)."""

from __future__ import annotations

import resource
import statistics
import tracemalloc
from collections.abc import Callable
from typing import Any

from mpi4py import MPI


def measure(comm: MPI.Comm, repeat: int, make_input: Callable[[], list],
            run: Callable[[list], tuple[Any, Any]]) -> tuple[Any, dict]:
    """`run(box)` executes the plan on a fresh input box (handed over) and returns (out,
    stats with .seconds and .peak_bytes). It runs `repeat` times between barriers (each
    time is the slowest rank's), then once more, untimed, under tracemalloc: its count of
    every NumPy buffer is the check on the runtime's own accounting. The input is allocated
    under tracing, so that releasing it is seen too. Returns the last output and this
    rank's figures."""
    times, peaks = [], []
    out = None
    for _ in range(max(1, int(repeat))):
        box = make_input()
        out = None                       # free the last output before the next run
        comm.Barrier()
        out, stats = run(box)
        comm.Barrier()
        times.append(comm.allreduce(stats.seconds, op=MPI.MAX))
        peaks.append(stats.peak_bytes)
    out = None
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    box = make_input()
    tracemalloc.reset_peak()
    comm.Barrier()
    out, _ = run(box)
    traced = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return out, {"seconds": times, "peak": max(peaks), "traced": traced}


def report_fields(comm: MPI.Comm, mine: dict, mismatched: int) -> dict | None:
    """The report's measured fields, gathered on rank 0 (None on the others)."""
    bad_total = comm.allreduce(mismatched, op=MPI.SUM)
    peak_all = comm.gather(mine["peak"], root=0)
    traced_all = comm.gather(mine["traced"], root=0)
    rss_all = comm.gather(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, root=0)
    if comm.Get_rank() != 0:
        return None
    times = mine["seconds"]
    return {"ranks": comm.Get_size(), "repeat": len(times), "seconds": times,
            "median_seconds": statistics.median(times), "min_seconds": min(times),
            "peak_bytes_per_rank": peak_all, "traced_peak_bytes_per_rank": traced_all,
            "max_rss_bytes_per_rank": rss_all, "mismatched_elements": bad_total,
            "all_match": bad_total == 0}
