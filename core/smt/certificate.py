"""Proof certificates (DESIGN §4): the problem, the plan, and per claim its SMT-LIB2
obligation (the negated claim), the solver's answer, and SHA-256 hashes.

Checking regenerates every obligation from the stored plan and compares it with the
stored text, checks every hash, and re-solves each obligation with z3 and (if
installed) cvc5. A certificate is a directory (certificate.json, plan.json,
obligations/*.smt2) or a single .json file with everything inline.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field

from redist.core.errors import RedistError
from redist.core.plans.plan import Plan
from redist.core.plans.planjson import plan_from_json, plan_to_json
from redist.core.smt.obligations import CLAIMS, obligations
from redist.core.smt.solvers import cvc5_version, solve_cvc5, solve_z3, z3_version
from redist.core.smt.verify import Verdict, verify

FORMAT = "redist.certificate/1"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def plan_text(plan: Plan) -> str:
    return json.dumps(plan_to_json(plan), indent=1, sort_keys=True) + "\n"


def write_certificate(plan: Plan, verdict: Verdict | None, path: str,
                      memory_budget: int | None = None) -> str:
    """Write a certificate for `plan` to `path` (a directory, or a file ending in .json)."""
    if verdict is None:
        verdict = verify(plan, memory_budget)
    if verdict.get("well_typed").status != "proved":
        raise RedistError("cannot certify a plan that is not well-typed: "
                          + verdict.get("well_typed").detail)
    obs = {o.claim: o.smt2() for o in obligations(plan, memory_budget)}
    ptext = plan_text(plan)
    single = path.endswith(".json")
    claims = []
    for r in verdict.results:
        entry = {"claim": r.claim, "status": r.status, "answer": r.answer,
                 "sha256": sha256(obs[r.claim])}
        if single:
            entry["smt2"] = obs[r.claim]
        else:
            entry["obligation"] = f"obligations/{r.claim}.smt2"
        claims.append(entry)
    doc = {"format": FORMAT, "solver": {"name": "z3", "version": z3_version()},
           "memory_budget": memory_budget, "plan_sha256": sha256(ptext), "claims": claims}
    try:
        if single:
            doc["plan"] = json.loads(ptext)
            _write(path, json.dumps(doc, indent=1) + "\n")
            return path
        os.makedirs(os.path.join(path, "obligations"), exist_ok=True)
        _write(os.path.join(path, "plan.json"), ptext)
        for claim, text in obs.items():
            _write(os.path.join(path, "obligations", f"{claim}.smt2"), text)
        doc["plan"] = "plan.json"
        _write(os.path.join(path, "certificate.json"), json.dumps(doc, indent=1) + "\n")
    except OSError as e:
        raise RedistError(f"cannot write certificate to {path!r}: {e.strerror}") from None
    return path


def _write(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise CertificateRejected(f"cannot read {path}: {e.strerror}") from None


class CertificateRejected(Exception):
    pass


@dataclass
class CheckReport:
    path: str
    ok: bool
    problems: list[str] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)   # per claim: status and solver answers

    def to_json(self) -> dict:
        return {"certificate": self.path, "ok": self.ok, "problems": self.problems,
                "claims": self.rows}

    def table(self) -> str:
        lines = [f"certificate {self.path}"]
        for r in self.rows:
            answers = ", ".join(f"{k} {v}" for k, v in r["answers"].items())
            lines.append(f"  {r['claim']:<17} {r['status']:<8} re-solved: {answers}")
        for p in self.problems:
            lines.append(f"  REJECTED: {p}")
        lines.append("certificate " + ("checks" if self.ok else "REJECTED"))
        return "\n".join(lines)


def check_certificate(path: str, use_cvc5: bool = True) -> CheckReport:
    """Check a certificate; a report with ok=False lists every reason for rejection."""
    report = CheckReport(path, False)
    try:
        _check(path, use_cvc5, report)
    except CertificateRejected as e:
        report.problems.append(str(e))
    except RedistError as e:
        report.problems.append(f"the stored plan is invalid: {e}")
    report.ok = not report.problems
    return report


def _check(path: str, use_cvc5: bool, report: CheckReport) -> None:
    if os.path.isdir(path):
        base, cert_file = path, os.path.join(path, "certificate.json")
    elif os.path.isfile(path):
        base, cert_file = os.path.dirname(path), path
    else:
        raise RedistError(f"no certificate at {path!r}")
    try:
        doc = json.loads(_read(cert_file))
    except json.JSONDecodeError as e:
        raise CertificateRejected(f"{cert_file} is not valid JSON ({e.msg})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        got = doc.get("format") if isinstance(doc, dict) else None
        raise CertificateRejected(f"unknown certificate format {got!r} (expected {FORMAT!r})")
    plan_ref = doc.get("plan")
    ptext = _read(os.path.join(base, plan_ref)) if isinstance(plan_ref, str) else \
        json.dumps(plan_ref, indent=1, sort_keys=True) + "\n"
    if sha256(ptext) != doc.get("plan_sha256"):
        report.problems.append("the plan's SHA-256 does not match plan_sha256: the plan "
                               "was changed")
    try:
        plan = plan_from_json(json.loads(ptext))
    except json.JSONDecodeError as e:
        raise CertificateRejected(f"the stored plan is not valid JSON ({e.msg})") from None
    budget = doc.get("memory_budget")
    regenerated = {o.claim: o.smt2() for o in obligations(plan, budget)}
    claims = doc.get("claims")
    if not isinstance(claims, list):
        raise CertificateRejected("'claims' is missing or not a list")
    listed = {c.get("claim") for c in claims if isinstance(c, dict)}
    for missing in [c for c in CLAIMS if c not in listed]:
        report.problems.append(f"claim {missing!r} is missing")
    solvers = [("z3", solve_z3)]
    if use_cvc5 and cvc5_version() is not None:
        solvers.append(("cvc5", solve_cvc5))
    for entry in claims:
        if not isinstance(entry, dict) or entry.get("claim") not in CLAIMS:
            report.problems.append(f"unknown claim entry {entry!r:.80}")
            continue
        claim = entry["claim"]
        if "smt2" in entry:
            text = entry["smt2"]
        elif isinstance(entry.get("obligation"), str):
            text = _read(os.path.join(base, entry["obligation"]))
        else:
            report.problems.append(f"{claim}: obligation is missing")
            continue
        if sha256(text) != entry.get("sha256"):
            report.problems.append(f"{claim}: obligation SHA-256 mismatch: the obligation "
                                   "was changed")
        if text != regenerated[claim]:
            report.problems.append(f"{claim}: the stored obligation does not follow from the "
                                   "plan (regenerated text differs)")
        answers = {name: fn(text) for name, fn in solvers}
        status = entry.get("status")
        want = {"proved": "unsat", "refuted": "sat"}.get(status)
        if want is None:
            report.problems.append(f"{claim}: status {status!r} is not proved or refuted")
        for name, ans in answers.items():
            if want is not None and ans != want:
                report.problems.append(f"{claim}: marked {status} but {name} answers {ans}")
        report.rows.append({"claim": claim, "status": status, "answers": answers})
