"""The Python interface (DESIGN §6): parse -> synthesize -> verify -> certify."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redist.core import args
from redist.core.errors import RedistError
from redist.core.model.coerce import problem as coerce_problem
from redist.core.model.problem import Problem
from redist.core.plans.plan import Plan
from redist.core.smt.verify import Verdict, verify
from redist.core.synthesis.synthesize import synthesize_plan


@dataclass(frozen=True)
class Result:
    plan: Plan
    verdict: Verdict
    method: str
    reason: str | None = None     # why the plan is not memory-efficient, if it is not
    note: str | None = None       # e.g. what the optimal method proved about the plan

    @property
    def verified(self) -> bool:
        return self.verdict.all_proved


def synthesize(problem: Problem | None = None, method: str = "normal",
               budget: int | None = None, steps: int | None = None,
               collectives: str = "portable", timeout: float | None = None,
               objective: str = "bytes", *, rlimit: int | None = None,
               mesh: Any = None, shape: Any = None, dtype: Any = "float32", src: Any = None,
               dst: Any = None) -> Result:
    """Synthesize a plan and verify it before returning it. A plan whose claims are not all
    proved comes back with a verdict saying so; it is never reported as verified.
    collectives="mpi" also considers one all_exchange (MPI only, not portable) and keeps
    whichever the cost model predicts faster. objective ranks the normal method's
    candidates: "bytes" (default), "collectives" or "time" (the cost model's prediction).

    Instead of a Problem, give mesh, shape, dtype, src and dst in any accepted form: redist
    values or text, a jax Mesh with PartitionSpecs or NamedShardings, a torch DeviceMesh
    with DTensor placements."""
    where = "synthesize"
    if problem is not None:
        args.instance(problem, Problem, where, "problem", "a Problem or None")
    args.instance(method, str, where, "method", "'normal', 'optimal' or 'naive'")
    args.positive_int(budget, where, "budget", "a positive integer (bytes)", optional=True)
    args.positive_int(steps, where, "steps", "a positive integer", optional=True)
    args.instance(collectives, str, where, "collectives", "'portable' or 'mpi'")
    timeout = args.positive_seconds(timeout, where, "timeout")
    args.positive_int(rlimit, where, "rlimit", "a positive integer (z3 resource units)",
                      optional=True)
    if problem is None:
        if mesh is None or shape is None or src is None or dst is None:
            raise RedistError("synthesize: give a Problem, or mesh, shape, src and dst")
        problem = coerce_problem(mesh, shape, dtype, src, dst)
    if method == "optimal":
        from redist.core.synthesis.optimal import DEFAULT_RLIMIT, optimal

        o = optimal(problem, budget=budget, max_steps=steps,
                    timeout_ms=None if timeout is None else int(timeout * 1000),
                    exchange=collectives == "mpi",
                    rlimit=DEFAULT_RLIMIT if rlimit is None else rlimit)
        return Result(o.plan, verify(o.plan, budget), "optimal", o.reason, o.note)
    s = synthesize_plan(problem, method, collectives, budget, objective)
    return Result(s.plan, verify(s.plan, budget), s.method, s.reason, s.note)


__all__ = ["Plan", "Problem", "Result", "Verdict", "synthesize", "verify"]
