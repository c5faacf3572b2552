"""Proof certificates (DESIGN §4): the problem, the plan, the memory limit the claims were
proved against, and per claim its SMT-LIB2 obligation (the negated claim), the solver's
answer and SHA-256 hashes.

A certificate is a directory (certificate.json, plan.json, obligations/*.smt2) or one
.json file with everything inline. Certificates come from other people, so checking one
never runs anything it contains: every obligation is regenerated from the stored plan and
memory limit, compared with the stored text (the first mismatch rejects the certificate,
before any solving), and only the regenerated text is solved, by z3 and by cvc5 when
installed. Files are read only from inside the certificate, only if regular, and only up
to the documented size limits.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from dataclasses import dataclass, field
from typing import Any

from redist.core import args
from redist.core.errors import RedistError, printable
from redist.core.files import open_nofollow, parse_json, read_fd, read_under
from redist.core.limits import MAX_CERTIFICATE_BYTES, MAX_OBLIGATION_BYTES, MAX_PLAN_FILE_BYTES
from redist.core.plans.plan import Plan
from redist.core.plans.planjson import plan_from_json, plan_to_json
from redist.core.smt.obligations import CLAIMS, obligations
from redist.core.smt.solvers import cvc5_version, solve_cvc5, solve_z3, z3_version
from redist.core.smt.verify import Verdict, verify

FORMAT = "redist.certificate/3"
STATUS_ANSWER = {"proved": "unsat", "refuted": "sat"}   # what a re-solve must answer
CHECK_CLAIM_MS = 60_000        # one solver on one obligation (as verification gives a claim)
CHECK_SECONDS = 300            # every solver call of one check together


def _now() -> float:
    return time.monotonic()


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def plan_text(plan: Plan) -> str:
    if _two_meshes(plan):
        from redist.core.cross.planjson import cross_plan_to_json
        return json.dumps(cross_plan_to_json(plan), indent=1, sort_keys=True) + "\n"
    return json.dumps(plan_to_json(plan), indent=1, sort_keys=True) + "\n"


# Two-mesh plans (DESIGN §15) are certified the same way: their file form, their claims.
def _two_meshes(plan: Any) -> bool:
    from redist.core.cross.plan import CrossPlan
    return isinstance(plan, CrossPlan)


def _legacy_no_discard(plan: Plan) -> str | None:
    from redist.core.smt.obligations import _over_bitvectors, no_discard

    lays, err = plan.typed_prefix()
    return None if err is not None else \
        _over_bitvectors(no_discard(plan, lays, legacy=True)).smt2()


def _obligations(plan: Any, budget: int | None) -> list:
    if _two_meshes(plan):
        from redist.core.cross.verify import obligations as cross_obligations
        return cross_obligations(plan, budget)
    return obligations(plan, budget)


def _plan_from_doc(doc: Any) -> Any:
    from redist.core.cross.planjson import cross_plan_from_json, is_cross
    return cross_plan_from_json(doc) if is_cross(doc) else plan_from_json(doc)


def memory_limit(plan: Plan, budget: int | None) -> dict[str, Any]:
    """What the memory claim is proved against: the plan's bound, or a user's budget."""
    if budget is None:
        return {"kind": "bound", "bytes": plan.figures().bound_bytes}
    return {"kind": "budget", "bytes": budget}


def statement_sha256(doc: dict[str, Any]) -> str:
    """Hash of everything that says what was proved: format, the solver that answered, plan
    hash, memory limit, and per claim its status, answer and obligation hash."""
    claims = doc.get("claims")
    core = {"format": doc.get("format"), "solver": doc.get("solver"),
            "plan_sha256": doc.get("plan_sha256"), "memory_limit": doc.get("memory_limit"),
            "claims": claims}
    if isinstance(claims, list):                # any other type is hashed as it is
        core["claims"] = [{k: c.get(k) for k in ("claim", "status", "answer", "sha256")}
                          if isinstance(c, dict) else c for c in claims]
    return sha256(json.dumps(core, sort_keys=True))


def write_certificate(plan: Plan, verdict: Verdict | None, path: str,
                      memory_budget: int | None = None) -> str:
    """Write a certificate for `plan` to `path` (a directory, or a file ending in .json)."""
    if not _two_meshes(plan):
        args.instance(plan, Plan, "write_certificate", "plan", "a Plan")
    if verdict is not None:
        args.instance(verdict, Verdict, "write_certificate", "verdict", "a Verdict or None")
    path = args.path(path, "write_certificate", "path")
    args.positive_int(memory_budget, "write_certificate", "memory_budget",
                      "a positive integer (bytes)", optional=True)
    if verdict is None:
        if _two_meshes(plan):
            from redist.core.cross.verify import verify_cross
            verdict = verify_cross(plan, memory_budget)
        else:
            verdict = verify(plan, memory_budget)
    if verdict.get("well_typed").status != "proved":
        raise RedistError("cannot certify a plan that is not well-typed: "
                          + verdict.get("well_typed").detail)
    obs = {o.claim: o.smt2() for o in _obligations(plan, memory_budget)}
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
    doc: dict[str, Any] = {"format": FORMAT, "solver": {"name": "z3", "version": z3_version()},
                           "plan_sha256": sha256(ptext),
                           "memory_limit": memory_limit(plan, memory_budget), "claims": claims}
    doc["sha256"] = statement_sha256(doc)
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
    except (OSError, ValueError) as e:          # ValueError: a NUL in the path
        raise RedistError(f"cannot write certificate to {path!r}: "
                          f"{getattr(e, 'strerror', None) or e}") from None
    return path


def _write(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


class CertificateRejected(Exception):
    """The certificate is not genuine, or does not say what it claims."""


@dataclass
class CheckReport:
    path: str
    genuine: bool = False              # every obligation follows and re-solves as recorded
    problems: list[str] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)   # per claim: status and solver answers
    limit: dict[str, Any] | None = None
    bound_bytes: int | None = None

    @property
    def refuted(self) -> list[str]:
        return [r["claim"] for r in self.rows if r["status"] != "proved"]

    @property
    def ok(self) -> bool:
        """Genuine, and every claim proved: the only case `certify check` exits 0."""
        return self.genuine and not self.refuted

    def to_json(self) -> dict:
        return {"certificate": self.path, "ok": self.ok, "genuine": self.genuine,
                "problems": self.problems, "memory_limit": self.limit,
                "bound_bytes": self.bound_bytes, "claims": self.rows}

    def limit_text(self) -> str:
        if self.limit is None:
            return "unknown"
        if self.limit["kind"] == "bound":
            return f"the bound, {self.limit['bytes']:,} bytes per device"
        return (f"a budget of {self.limit['bytes']:,} bytes per device (the plan's bound is "
                f"{self.bound_bytes:,})")

    def table(self) -> str:
        lines = [f"certificate {self.path}"]
        if self.genuine:
            lines.append(f"  memory claim proved against {self.limit_text()}")
        for r in self.rows:
            answers = ", ".join(f"{k} {v}" for k, v in r["answers"].items()) or \
                "not re-solved (an unknown claim claims nothing)"
            lines.append(f"  {r['claim']:<17} {r['status']:<8} re-solved: {answers}")
        for p in self.problems:
            lines.append(f"  REJECTED: {p}")
        if not self.genuine:
            lines.append("certificate REJECTED")
        elif self.refuted:
            lines.append("certificate is genuine but records claims that are not proved: "
                         + ", ".join(self.refuted))
        else:
            lines.append("certificate checks: all five claims proved")
        return "\n".join(lines)


def check_certificate(path: str, use_cvc5: bool = True, timeout_ms: int = CHECK_CLAIM_MS,
                      total_seconds: float = CHECK_SECONDS) -> CheckReport:
    """Check a certificate. A path that does not exist or is not a file or directory is bad
    input (RedistError); anything wrong inside it makes a report with genuine=False and the
    first reason. Each solver call gets `timeout_ms`, all of them `total_seconds`."""
    path = args.path(path, "check_certificate", "path")
    args.instance(use_cvc5, bool, "check_certificate", "use_cvc5", "True or False")
    args.positive_int(timeout_ms, "check_certificate", "timeout_ms", "a positive integer (ms)")
    report = CheckReport(path)
    if not os.path.lexists(path):
        raise RedistError(f"no certificate at {path!r}: no such file or directory")
    try:
        _check(path, use_cvc5, (timeout_ms, total_seconds), report)
        report.genuine = True
    except (CertificateRejected, RedistError) as e:
        report.problems.append(printable(str(e)))
    return report


def _inside(ref: Any, what: str) -> str:
    """A relative path inside the certificate directory, or a rejection. It is opened
    relative to the directory's descriptor, never through a symbolic link (read_under)."""
    if not isinstance(ref, str) or not ref or "\x00" in ref:
        raise CertificateRejected(f"{what}: the path must be a non-empty string")
    if os.path.isabs(ref) or ".." in ref.replace("\\", "/").split("/"):
        raise CertificateRejected(f"{what}: {ref!r} is not a path inside the certificate")
    return ref


# Every field is part of the statement or says where a part is; anything else would be an
# unhashed claim that a reader might take for part of the certificate.
_TOP_KEYS = {"format", "solver", "plan_sha256", "memory_limit", "claims", "sha256", "plan"}
_CLAIM_KEYS = {False: {"claim", "status", "answer", "sha256", "obligation"},
               True: {"claim", "status", "answer", "sha256", "smt2"}}


def _only_keys(obj: dict[str, Any], allowed: set[str], what: str) -> None:
    extra = sorted(set(obj) - allowed)
    _expect(not extra, f"{what} has a field the format does not define: {extra[0]!r:.60}"
            if extra else "")


def _expect(cond: bool, msg: str) -> None:
    if not cond:
        raise CertificateRejected(msg)


def _check(path: str, use_cvc5: bool, limits: tuple[int, float], report: CheckReport) -> None:
    # One descriptor for what `path` names (not through a link), kept open: a directory's
    # files are opened relative to it, so a rename or a swap in between cannot redirect them.
    fd = open_nofollow(path, "certificate")
    try:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            _check_open(fd, None, use_cvc5, limits, report)
        else:
            _check_open(None, read_fd(fd, MAX_CERTIFICATE_BYTES, "certificate", path), use_cvc5,
                        limits, report)
    finally:
        os.close(fd)


def _check_open(base: int | None, single_text: str | None, use_cvc5: bool,
                limits: tuple[int, float], report: CheckReport) -> None:
    """Check a certificate directory (`base`, its descriptor) or single file (its text)."""
    timeout_ms, total_seconds = limits
    single = base is None
    text = single_text if base is None else read_under(base, "certificate.json",
                                                       MAX_CERTIFICATE_BYTES, "certificate")
    doc = parse_json(text, "certificate")
    _expect(isinstance(doc, dict), "the certificate must be a JSON object")
    _expect(doc.get("format") == FORMAT, f"unknown certificate format {doc.get('format')!r:.60} "
                                         f"(expected {FORMAT!r})")
    _only_keys(doc, _TOP_KEYS, "the certificate")
    _expect(isinstance(doc.get("plan_sha256"), str), "'plan_sha256' must be a string")
    solver = doc.get("solver")
    _expect(isinstance(solver, dict) and set(solver) == {"name", "version"}
            and solver["name"] == "z3" and isinstance(solver["version"], str)
            and 0 < len(solver["version"]) <= 64,
            "'solver' must be {\"name\": \"z3\", \"version\": a short string}")
    _expect(isinstance(doc.get("sha256"), str), "'sha256' must be a string")
    _expect(doc.get("sha256") == statement_sha256(doc),
            "the certificate's sha256 does not match its statement (plan hash, memory limit, "
            "claims): a field was changed")
    # The plan: inline in a single file, a file inside the directory otherwise.
    ref = doc.get("plan")
    if isinstance(ref, dict):
        ptext = json.dumps(ref, indent=1, sort_keys=True) + "\n"
    else:
        _expect(not single, "a single-file certificate must hold its plan inline")
        ptext = read_under(base, _inside(ref, "plan"), MAX_PLAN_FILE_BYTES, "plan")
    _expect(sha256(ptext) == doc["plan_sha256"],
            "the plan's SHA-256 does not match plan_sha256: the plan was changed")
    try:
        plan = _plan_from_doc(parse_json(ptext, "plan"))
    except RedistError as e:
        raise CertificateRejected(f"the stored plan is invalid: {e}") from None
    report.bound_bytes = plan.figures().bound_bytes
    limit = doc.get("memory_limit")
    _expect(isinstance(limit, dict) and set(limit) == {"kind", "bytes"}
            and limit["kind"] in ("bound", "budget") and isinstance(limit["bytes"], int)
            and not isinstance(limit["bytes"], bool) and limit["bytes"] >= 1,
            "'memory_limit' must be {\"kind\": \"bound\" or \"budget\", \"bytes\": a positive "
            "integer}")
    if limit["kind"] == "bound":
        _expect(limit["bytes"] == report.bound_bytes,
                f"memory_limit says the bound is {limit['bytes']} bytes; the plan's bound is "
                f"{report.bound_bytes}")
    report.limit = limit
    budget = None if limit["kind"] == "bound" else limit["bytes"]
    claims = doc.get("claims")
    _expect(isinstance(claims, list) and len(claims) == len(CLAIMS)
            and all(isinstance(c, dict) for c in claims),
            f"'claims' must list the {len(CLAIMS)} claims")
    for c in claims:
        _only_keys(c, _CLAIM_KEYS[single], "a claim")
    by_name = {c["claim"]: c for c in claims if isinstance(c.get("claim"), str)}
    for name in CLAIMS:
        _expect(name in by_name, f"claim {name!r} is missing")
    # The cheap checks of every claim first (types, status, answer, hash of the stored
    # text); then regenerate and compare every obligation, before solving anything.
    stored: dict[str, str] = {}
    for name in CLAIMS:
        entry = by_name[name]
        status, answer = entry.get("status"), entry.get("answer")
        _expect(isinstance(status, str) and (status in STATUS_ANSWER or status == "unknown"),
                f"{name}: status {status!r:.40} is not proved, refuted or unknown")
        _expect(answer == STATUS_ANSWER.get(status, "unknown"),
                f"{name}: recorded answer {answer!r:.40} does not fit status {status!r}")
        _expect(isinstance(entry.get("sha256"), str), f"{name}: 'sha256' must be a string")
        if single:
            text = entry.get("smt2")
            _expect(isinstance(text, str), f"{name}: 'smt2' must be the obligation text")
        else:
            text = read_under(base, _inside(entry.get("obligation"), f"{name} obligation"),
                              MAX_OBLIGATION_BYTES, f"{name} obligation")
        _expect(sha256(text) == entry["sha256"],
                f"{name}: obligation SHA-256 mismatch: the obligation was changed")
        stored[name] = text
    generated = {o.claim: o.smt2() for o in _obligations(plan, budget)}
    if stored["no_discard"] != generated["no_discard"] and not _two_meshes(plan):
        # Certificates written before no_discard's one-chain encoding (obligations.py)
        # recorded one chain per slice: the same claim, regenerated here that way too.
        legacy = _legacy_no_discard(plan)
        if legacy is not None and stored["no_discard"] == legacy:
            generated["no_discard"] = legacy
    for name in CLAIMS:
        _expect(stored[name] == generated[name],
                f"{name}: the stored obligation does not follow from the plan (regenerated "
                "text differs)")
    # Only now solve, and only the text generated here.
    solvers = [("z3", solve_z3)]
    if use_cvc5 and cvc5_version() is not None:
        solvers.append(("cvc5", solve_cvc5))
    # Every solver call has its limit, and all of them together CHECK_SECONDS: a claim not
    # re-solved in time is reported unknown and the certificate is not confirmed.
    deadline = _now() + total_seconds
    for name in CLAIMS:
        status = by_name[name]["status"]
        answers: dict[str, str] = {}
        report.rows.append({"claim": name, "status": status, "answers": answers})
        for sname, fn in solvers if status in STATUS_ANSWER else ():   # unknown claims nothing
            left_ms = min(timeout_ms, int((deadline - _now()) * 1000))
            ans = answers[sname] = fn(generated[name], left_ms) if left_ms >= 1 else "unknown"
            if ans == "unknown":          # the first failure ends the check: no more solving
                raise CertificateRejected(
                    f"{name}: recorded {status}, but {sname} answers unknown within its limits "
                    f"({timeout_ms / 1000:g} s per obligation, {total_seconds:g} s for the whole "
                    "check): not confirmed")
            _expect(ans == STATUS_ANSWER[status],
                    f"{name}: recorded {status} but {sname} answers {ans}")
