"""Verification: solve every obligation of a plan and report each claim as proved,
refuted (with a counterexample a person can read) or unknown (with the solver's reason)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import z3

from redist.core import args
from redist.core.plans.plan import Plan
from redist.core.smt.bitvec import IntView
from redist.core.smt.obligations import CLAIMS, TITLES, Obligation, obligations

DEFAULT_TIMEOUT_MS = 60_000


@dataclass(frozen=True)
class ClaimResult:
    claim: str
    status: str            # proved | refuted | unknown
    answer: str            # the solver's answer to the obligation: unsat | sat | unknown
    detail: str            # counterexample, reason, or ""
    seconds: float

    def to_json(self) -> dict:
        return {"claim": self.claim, "status": self.status, "answer": self.answer,
                "detail": self.detail, "seconds": round(self.seconds, 4)}


@dataclass(frozen=True)
class Verdict:
    results: tuple[ClaimResult, ...]
    solver: str = field(default_factory=lambda: f"z3 {z3.get_version_string()}")

    @property
    def all_proved(self) -> bool:
        return all(r.status == "proved" for r in self.results)

    def get(self, claim: str) -> ClaimResult:
        return next(r for r in self.results if r.claim == claim)

    def to_json(self) -> dict:
        return {"solver": self.solver, "all_proved": self.all_proved,
                "claims": [r.to_json() for r in self.results]}

    def table(self) -> str:
        mark = {"proved": "proved ", "refuted": "REFUTED", "unknown": "UNKNOWN"}
        lines = [f"claims ({self.solver}):"]
        for r in self.results:
            line = f"  {mark[r.status]}  {r.claim:<17} {TITLES[r.claim]}"
            if r.status == "proved":
                line += f"  [{r.seconds * 1000:.0f} ms]"
            lines.append(line)
            if r.detail and r.status != "proved":
                lines.append(f"           -> {r.detail}")
        lines.append("verdict: " + ("all five claims proved" if self.all_proved else
                                    "NOT verified"))
        return "\n".join(lines)


def solve(ob: Obligation, timeout_ms: int = DEFAULT_TIMEOUT_MS) -> ClaimResult:
    t0 = time.perf_counter()
    if ob.note is not None and not ob.assertions:
        return ClaimResult(ob.claim, "unknown", "unknown", ob.note, 0.0)
    s = z3.Solver()
    s.set("timeout", timeout_ms)
    s.add(*ob.assertions)
    answer = s.check()
    dt = time.perf_counter() - t0
    if ob.expect_sat:
        # A sat-check for a step the typing code rejected: unsat confirms the refutation.
        if answer == z3.unsat:
            return ClaimResult(ob.claim, "refuted", "unsat", ob.note or "", dt)
        why = s.reason_unknown() if answer == z3.unknown else \
            "the SMT typing rules accept a step the typing code rejected"
        return ClaimResult(ob.claim, "refuted", str(answer), f"{ob.note} (solver: {why})", dt)
    if answer == z3.unsat:
        return ClaimResult(ob.claim, "proved", "unsat", "", dt)
    if answer == z3.sat:
        if ob.integer is not None and not _integer_model(ob, s.model()):
            # Only a wrap of the bit-vectors, not a counterexample: answer the integer
            # obligation itself (never seen when the width estimate is right).
            return solve(replace(ob, assertions=ob.integer, integer=None, width=None),
                         timeout_ms)
        return ClaimResult(ob.claim, "refuted", "sat", ob.explain(s.model()), dt)
    return ClaimResult(ob.claim, "unknown", "unknown", f"solver: {s.reason_unknown()}", dt)


def _integer_model(ob: Obligation, model: z3.ModelRef) -> bool:
    """Do the bit-vector model's values satisfy the integer obligation?"""
    view = IntView(model)
    return all(z3.is_true(view.eval(a, model_completion=True)) for a in ob.integer or [])


def verify(plan: Plan, memory_budget: int | None = None,
           timeout_ms: int = DEFAULT_TIMEOUT_MS) -> Verdict:
    """Prove or refute the five claims of DESIGN §4 for `plan`."""
    args.instance(plan, Plan, "verify", "plan", "a Plan")
    args.positive_int(memory_budget, "verify", "memory_budget", "a positive integer (bytes)",
                      optional=True)
    args.positive_int(timeout_ms, "verify", "timeout_ms", "a positive integer (ms)")
    obs = obligations(plan, memory_budget)
    assert tuple(o.claim for o in obs) == CLAIMS
    return Verdict(tuple(solve(o, timeout_ms) for o in obs))
