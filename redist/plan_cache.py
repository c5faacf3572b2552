"""Verified plans per problem: proved once per process, and optionally once per machine.

`verified_plan(problem, method, budget)` synthesizes and proves a plan the first time a
problem is seen and hands back the same plan afterwards without proving anything again
(the key is the problem, the method and the budget). A plan that does not verify raises
RedistError and is never cached or executed. redist.jax and redist.torch share it;
`exchange_fallback=True` (redist.torch, whose backend has an all_exchange) takes, where no
portable plan is within the memory bound, the all_exchange plan proved against its own
runtime peak (as the MPI runtime does), and is part of the key.

With a cache directory (argument `cache_dir`, or the environment variable
REDIST_PLAN_CACHE) verified plans and their verdicts are also written to disk, keyed by
the problem and redist's version, so a restarted job does not prove them again. Cache
files are untrusted input and are *authenticated*, not re-proved: each entry carries an
HMAC-SHA256 of its contents under a per-user secret key kept outside the cache directory
(REDIST_PLAN_CACHE_KEY names the key file; default ~/.config/redist/plan-cache.key,
created 0600). Re-proving would cost what the cache exists to save; a bare hash would
let anyone who can write the directory (a shared file system) plant a plan that was never
proved. An entry whose MAC, format, version or problem does not match, or whose plan the
plan-file reader rejects (layouts and figures recomputed), is ignored with a warning and
replaced by a freshly proved plan.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import tempfile
import warnings
from typing import Any

from redist.core.errors import RedistError
from redist.core.files import parse_json, read_text
from redist.core.limits import MAX_PLAN_FILE_BYTES
from redist.core.model.problem import Problem
from redist.core.plans.plan import Plan
from redist.core.plans.planjson import claimed_verdict, plan_from_json, plan_to_json
from redist.core.smt.obligations import CLAIMS
from redist.core.smt.verify import Verdict

FORMAT = "redist.plan-cache/1"
ENV_DIR = "REDIST_PLAN_CACHE"
ENV_KEY = "REDIST_PLAN_CACHE_KEY"

_plans: dict[tuple[Problem, str, int | None, bool], Plan] = {}


def _version() -> str:
    from redist.cli import version

    return version()


def prove(problem: Problem, method: str = "normal", budget: int | None = None,
          exchange_fallback: bool = False) -> tuple[Plan, Verdict]:
    """Synthesize and verify; RedistError unless every claim is proved."""
    from redist.api import synthesize, verify
    from redist.core.plans.plan import own_budget

    result = synthesize(problem, method=method, budget=budget)
    verdict = result.verdict
    if not result.verified and exchange_fallback and method == "normal" and budget is None:
        # No portable plan within the bound (uneven extents, DESIGN §11): one all_exchange,
        # proved against what it holds while it runs: what runs is what is proved.
        result = synthesize(problem, method=method, collectives="mpi")
        own = own_budget(result.plan)
        verdict = result.verdict if own is None else verify(result.plan, own)
    if not verdict.all_proved:
        failed = "; ".join(f"{r.claim} {r.status}" for r in verdict.results
                           if r.status != "proved")
        raise RedistError(f"refusing to compile an unverified plan ({failed})"
                          + (f": {result.reason}" if result.reason else ""))
    return result.plan, verdict


def cached(problem: Problem, method: str = "normal", budget: int | None = None,
           exchange_fallback: bool = False) -> Plan | None:
    """The plan this process holds for the problem, or None (never proves, never reads
    the disk)."""
    return _plans.get((problem, method, budget, exchange_fallback))


def remember(plan: Plan, problem: Problem, method: str, budget: int | None,
             exchange_fallback: bool = False) -> None:
    """Hold a plan that a peer of this job proved (redist.torch's rank 0 proves once and
    broadcasts; every rank keeps what it received)."""
    _plans[(problem, method, budget, exchange_fallback)] = plan


def verified_plan(problem: Problem, method: str = "normal", budget: int | None = None,
                  cache_dir: str | None = None, exchange_fallback: bool = False) -> Plan:
    """The verified plan for `problem`, proved at most once per process (and per cache
    directory, when there is one)."""
    key = (problem, method, budget, exchange_fallback)
    plan = _plans.get(key)
    if plan is not None:
        return plan
    where = cache_dir or os.environ.get(ENV_DIR) or None
    if where:
        plan = load(where, problem, method, budget, exchange_fallback)
    if plan is None:
        plan, verdict = prove(problem, method, budget, exchange_fallback)
        if where:
            store(where, plan, verdict, method, budget, exchange_fallback)
    _plans[key] = plan
    return plan


def clear() -> None:
    """Forget the plans of this process (the disk cache is untouched)."""
    _plans.clear()


def _key_path() -> str:
    home = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"),
                                                             ".config")
    return os.environ.get(ENV_KEY) or os.path.join(home, "redist", "plan-cache.key")


def _secret() -> bytes:
    path = _key_path()
    try:
        with open(path, "rb") as f:
            key = f.read()
        if len(key) >= 32:
            return key
    except FileNotFoundError:
        pass
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(os.urandom(32))
    with open(path, "rb") as f:         # another process may have won the race
        return f.read()


def _problem_doc(problem: Problem, method: str, budget: int | None,
                 exchange_fallback: bool = False) -> dict[str, Any]:
    doc = plan_to_json(Plan(problem, ()), with_figures=False)
    del doc["steps"], doc["format"]
    out = {"redist": _version(), "problem": doc, "method": method, "budget": budget}
    if exchange_fallback:
        out["exchange_fallback"] = True
    return out


def problem_id(problem: Problem, method: str, budget: int | None,
               exchange_fallback: bool = False) -> str:
    """A name for the problem (with method, budget, fallback and redist's version)."""
    text = json.dumps(_problem_doc(problem, method, budget, exchange_fallback),
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:40]


def plan_sha256(plan: Plan) -> str:
    return hashlib.sha256(json.dumps(plan_to_json(plan), sort_keys=True).encode()).hexdigest()


def entry_path(cache_dir: str, problem: Problem, method: str, budget: int | None,
               exchange_fallback: bool = False) -> str:
    return os.path.join(cache_dir, problem_id(problem, method, budget, exchange_fallback)
                        + ".json")


def _mac(payload: str) -> str:
    return hmac.new(_secret(), payload.encode(), hashlib.sha256).hexdigest()


def store(cache_dir: str, plan: Plan, verdict: Verdict, method: str,
          budget: int | None, exchange_fallback: bool = False) -> None:
    """Write a verified plan and its verdict (atomically; a failure to write is a warning,
    never an error: the cache is an optimisation)."""
    doc = _problem_doc(plan.problem, method, budget, exchange_fallback)
    doc["plan"] = dict(plan_to_json(plan), verdict=verdict.to_json())
    payload = json.dumps(doc, sort_keys=True)
    entry = json.dumps({"format": FORMAT, "payload": payload, "hmac": _mac(payload)})
    path = entry_path(cache_dir, plan.problem, method, budget, exchange_fallback)
    try:
        os.makedirs(cache_dir, mode=0o700, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache_dir, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(entry)
        os.replace(tmp, path)
    except OSError as e:
        warnings.warn(f"redist: cannot write the plan cache {cache_dir!r}: {e.strerror}",
                      stacklevel=3)


def load(cache_dir: str, problem: Problem, method: str, budget: int | None,
         exchange_fallback: bool = False) -> Plan | None:
    """The cached plan for the problem, or None (absent, or rejected with a warning)."""
    path = entry_path(cache_dir, problem, method, budget, exchange_fallback)
    if not os.path.exists(path):
        return None
    try:
        return _check(path, problem, method, budget, exchange_fallback)
    except RedistError as e:
        warnings.warn(f"redist: ignoring plan cache entry {path}: {e}", stacklevel=3)
        return None


def _check(path: str, problem: Problem, method: str, budget: int | None,
           exchange_fallback: bool) -> Plan:
    entry = parse_json(read_text(path, MAX_PLAN_FILE_BYTES, "plan cache entry"),
                       "plan cache entry")
    if not isinstance(entry, dict) or entry.get("format") != FORMAT:
        raise RedistError(f"not a {FORMAT} entry")
    payload, mac = entry.get("payload"), entry.get("hmac")
    if not isinstance(payload, str) or not isinstance(mac, str):
        raise RedistError("no payload or no MAC")
    if not hmac.compare_digest(_mac(payload), mac):
        raise RedistError("its MAC does not match (written under another key, or altered)")
    doc = parse_json(payload, "plan cache entry")
    want = _problem_doc(problem, method, budget, exchange_fallback)
    if not isinstance(doc, dict) or set(doc) != {*want, "plan"} or any(
            doc.get(k) != v for k, v in want.items()):
        raise RedistError("it is for another problem, method, budget or redist version")
    plan = plan_from_json(doc.get("plan"))
    claims = claimed_verdict(doc["plan"])
    # The plan's problem is the file's, refined into the atoms its steps use.
    if _problem_doc(plan.problem, method, budget, exchange_fallback) != want \
            or set(claims) != set(CLAIMS) \
            or set(claims.values()) != {"proved"}:
        raise RedistError("its plan is not a proved plan of this problem")
    mine = plan.problem
    if plan.typed_prefix()[1] is not None or mine.show(plan.final_layout) != mine.show(
            mine.dst):
        raise RedistError("its plan does not take src to dst")
    return plan
