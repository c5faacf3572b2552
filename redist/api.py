"""The Python interface (DESIGN §6): parse -> synthesize -> verify -> certify."""

from __future__ import annotations

from dataclasses import dataclass

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


def synthesize(problem: Problem, method: str = "normal", budget: int | None = None,
               steps: int | None = None) -> Result:
    """Synthesize a plan and verify it before returning it. A plan whose claims are not all
    proved comes back with a verdict saying so; it is never reported as verified."""
    if method == "optimal":
        from redist.core.synthesis.optimal import optimal

        o = optimal(problem, budget=budget, max_steps=steps)
        return Result(o.plan, verify(o.plan, budget), "optimal", o.reason, o.note)
    s = synthesize_plan(problem, method)
    return Result(s.plan, verify(s.plan, budget), s.method, s.reason, s.note)


__all__ = ["Plan", "Problem", "Result", "Verdict", "synthesize", "verify"]
