"""Run under mpiexec by runtime_bench.py: time one case five ways on this job's ranks.

portable: the verified portable plan (normal synthesis) through redistribute (in place).
portable-oop: the same plan with out-of-place all-to-alls (REDIST_INPLACE=0's path), for
          the in-place all-to-all's price in time (executed without the gate: its memory
          is over the proof).
exchange: one all_exchange, executed without the gate: in place in rounds where its class
          holds (core.ops.all_exchange.in_place: block + one chunk), else one Alltoallw
          over all ranks, which holds input and output at once (not memory-efficient:
          `redistribute` refuses it).
exchange-oop: the same exchange always as one Alltoallw (REDIST_INPLACE_EXCHANGE=0's
          path), for the in-place exchange's price in time.
chosen:   what `--collectives mpi` picks with the cost model (one of the two above).
direct:   one Alltoallv moving exactly the lower-bound bytes (benchmarks/direct.py).
The methods take turns within each repetition (their order rotating), so that their
medians are taken under the same load. Times of `redistribute` calls start after its
plan checks (hash agreement, verdict broadcast: a fixed cost per call). Every result is
checked element by element. The last repetition of each runs under tracemalloc, which
counts every NumPy buffer; the runtime's own count is reported beside it. Rank 0 prints
one JSON line per method.
"""

from __future__ import annotations

import functools
import json
import statistics
import sys

from mpi4py import MPI

from redist.core.model.problem import Problem
from redist.core.model.syntax import parse_layout, parse_mesh, parse_shape
from redist.core.ops import AllExchange
from redist.core.ops.all_exchange import in_place
from redist.core.plans.plan import Plan
from redist.core.synthesis.costmodel import load as load_model
from redist.core.synthesis.synthesize import normal, with_exchange
from redist.runtime import execute as runtime_steps
from redist.runtime.api import execute, mesh_comm
from redist.runtime.arrays import sample_block

from . import turns


def main() -> None:
    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    mesh_t, shape_t, src_t, dst_t, reps = sys.argv[1:6]
    problem = Problem(parse_mesh(mesh_t), parse_shape(shape_t), "float32",
                      parse_layout(src_t), parse_layout(dst_t))
    model = load_model()
    portable = normal(problem)
    chosen = with_exchange(problem, portable, model=model)
    plans = {"portable": portable.plan, "exchange": Plan(problem, (AllExchange(problem.dst),)),
             "chosen": chosen.plan}
    expected = sample_block(problem.mesh, problem.shape, problem.dst, rank, "float32")
    plans["portable-oop"] = portable.plan
    plans["exchange-oop"] = plans["exchange"]
    methods = ("portable", "portable-oop", "exchange", "exchange-oop", "chosen", "direct")

    def unchecked(method: str, box: list) -> tuple:
        """The runtime without the gate (its module switches set for this call)."""
        runtime_steps.INPLACE_ALL_TO_ALL = method != "portable-oop"
        runtime_steps.INPLACE_EXCHANGE = method != "exchange-oop"
        try:
            mc = mesh_comm(plans[method].problem.mesh, comm)
            out, peak = execute(box, plans[method], mc, donate=True)
        finally:
            runtime_steps.INPLACE_ALL_TO_ALL = runtime_steps.INPLACE_EXCHANGE = True
        return out, peak, None

    def call(method: str, trace: bool) -> tuple[float, int, int, bool]:
        if method == "direct":
            how = turns.direct(plans["portable"], comm)
        elif method in ("exchange", "exchange-oop", "portable-oop"):
            how = functools.partial(unchecked, method)
        else:
            how = turns.redistribute(plans[method], comm)
        return turns.timed_call(problem, comm, expected, how, trace)

    done = turns.take_turns(methods, int(reps), call)
    times, counted, traced = done["times"], done["counted"], done["traced"]
    matched = done["matched"]
    for method in methods:
        ok = comm.allreduce(matched[method], op=MPI.LAND)
        peak_counted = comm.allreduce(counted[method], op=MPI.MAX)
        peak_traced = comm.allreduce(traced[method], op=MPI.MAX)
        if rank == 0:
            plan = plans.get(method, plans["portable"])
            fig = plan.figures()
            print(json.dumps({
                "method": method, "median_s": statistics.median(times[method]),
                "min_s": min(times[method]), "times_s": times[method],
                "peak_counted": peak_counted,
                "peak_traced": peak_traced, "bound_bytes": fig.bound_bytes,
                "proved_peak": None if method in ("direct", "portable-oop", "exchange-oop")
                else fig.runtime_peak_bytes,
                "volume_bytes": fig.lower_bound_bytes if method == "direct" else fig.volume_bytes,
                "steps": ["alltoallv"] if method == "direct" else [s.op for s in plan.steps],
                "predicted_s": model.seconds(plan) if method != "direct" else None,
                "chosen_is": "exchange" if isinstance(plans["chosen"].steps[0:1] and
                                                      plans["chosen"].steps[0], AllExchange)
                else "portable",
                "same_as_portable": plans["chosen"] == plans["portable"],
                "exchange_fits": plans["exchange"].figures().memory_efficient,
                "exchange_in_place": in_place(problem.mesh, problem.shape, problem.src,
                                              problem.dst) is not None,
                "model": model.source, "all_match": ok}), flush=True)


if __name__ == "__main__":
    main()
