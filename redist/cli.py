"""The `redist` command line (DESIGN §6). Exit codes: 0 success, 1 a claim fails,
2 bad input."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from redist.core.errors import RedistError
from redist.core.model.problem import Problem
from redist.core.model.syntax import parse_layout, parse_mesh, parse_shape
from redist.core.plans.plan import Plan
from redist.core.plans.planjson import load, plan_to_json
from redist.core.plans.report import plan_table
from redist.core.synthesis.search import normalize

EXIT_OK, EXIT_CLAIM, EXIT_INPUT = 0, 1, 2

DESCRIPTION = """\
Synthesize, prove and run memory-efficient redistributions of sharded arrays.

A mesh names device axes (x=2,y=4: 8 devices, row-major). A layout says, per array
dimension, which mesh axes shard it, major to minor: [{x},{y}] splits dim 0 over x
and dim 1 over y; [{},{y,x}] replicates dim 0 and splits dim 1 over y then x.
"""

EXAMPLES = """\
examples:
  redist plan --mesh x=2,y=4 --shape 4096,4096 --src '[{x},{}]' --dst '[{},{y}]'
  redist plan --mesh x=2,y=4 --shape 4096,4096 --src '[{x},{y}]' --dst '[{y},{x}]' --json plan.json
  redist verify plan.json
  redist normalize plan.json --json -
  redist demo
"""


def problem_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("problem")
    g.add_argument("--mesh", required=True, help="mesh axes and sizes, e.g. x=2,y=4")
    g.add_argument("--shape", required=True, help="global array shape, e.g. 4096,4096")
    g.add_argument("--dtype", default="float32", help="element type (default float32)")
    g.add_argument("--src", required=True, help="source layout, e.g. '[{x},{y}]'")
    g.add_argument("--dst", required=True, help="destination layout, e.g. '[{y},{x}]'")
    g.add_argument("--method", default="normal", choices=["normal", "optimal", "naive"],
                   help="synthesis method (default normal: slices, all-to-alls, gathers)")


def problem_from_args(args: argparse.Namespace) -> Problem:
    return Problem(parse_mesh(args.mesh), parse_shape(args.shape), args.dtype,
                   parse_layout(args.src), parse_layout(args.dst))


def emit_json(doc: dict, target: str | None) -> None:
    if target is None:
        return
    text = json.dumps(doc, indent=1)
    if target == "-":
        print(text)
        return
    try:
        with open(target, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    except OSError as e:
        raise RedistError(f"cannot write {target!r}: {e.strerror}") from None


def say(args: argparse.Namespace, text: str) -> None:
    """Human output, unless the JSON goes to stdout."""
    if getattr(args, "json", None) != "-":
        print(text)


def cmd_plan(args: argparse.Namespace) -> int:
    from redist.api import synthesize

    problem = problem_from_args(args)
    result = synthesize(problem, method=args.method, budget=args.budget, steps=args.max_steps)
    return report_plan(args, result.plan, result.reason, result.verdict, result.note)


def report_plan(args: argparse.Namespace, plan: Plan, reason: str | None, verdict,
                note: str | None = None) -> int:
    say(args, plan_table(plan))
    if note:
        say(args, f"method      {note}")
    if reason:
        say(args, f"note        {reason}")
    doc = plan_to_json(plan)
    if verdict is not None:
        say(args, "")
        say(args, verdict.table())
        doc["verdict"] = verdict.to_json()
    if getattr(args, "certificate", None):
        from redist.core.smt.certificate import write_certificate

        path = write_certificate(plan, verdict, args.certificate)
        say(args, f"certificate written to {path}")
    emit_json(doc, args.json)
    return EXIT_OK if verdict is None or verdict.all_proved else EXIT_CLAIM


def cmd_normalize(args: argparse.Namespace) -> int:
    from redist.api import verify

    plan = load(args.plan)
    result = normalize(plan)
    verdict = verify(result.plan)
    return report_plan(args, result.plan, result.reason, verdict,
                       f"normalized from {len(plan.steps)} steps")


def cmd_verify(args: argparse.Namespace) -> int:
    from redist.api import verify

    plan = load(args.plan)
    verdict = verify(plan, memory_budget=args.budget)
    say(args, plan_table(plan))
    say(args, "")
    say(args, verdict.table())
    disagree = claimed_statuses(args.plan, verdict)
    for line in disagree:
        say(args, f"REJECTED: {line}")
    emit_json(verdict.to_json(), args.json)
    return EXIT_OK if verdict.all_proved and not disagree else EXIT_CLAIM


def claimed_statuses(path: str, verdict) -> list[str]:
    """Where a writer's "verdict" in the plan file disagrees with the recomputed one."""
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    claimed = doc.get("verdict", {}).get("claims", []) if isinstance(doc, dict) else []
    ours = {r.claim: r.status for r in verdict.results}
    return [f"the file says {c.get('claim')} is {c.get('status')}, recomputed: "
            f"{ours.get(c.get('claim'))}" for c in claimed
            if isinstance(c, dict) and ours.get(c.get("claim")) != c.get("status")]


def cmd_certify(args: argparse.Namespace) -> int:
    from redist.core.smt.certificate import check_certificate

    report = check_certificate(args.dir)
    say(args, report.table())
    emit_json(report.to_json(), args.json)
    return EXIT_OK if report.ok else EXIT_CLAIM


def cmd_run(args: argparse.Namespace) -> int:
    from redist.runtime.launch import run_command

    return run_command(args)


def cmd_demo(args: argparse.Namespace) -> int:
    from redist.runtime.demo import demo

    return demo(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="redist", description=DESCRIPTION, epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    fmt = argparse.RawDescriptionHelpFormatter

    def add(name: str, fn: Callable, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_, formatter_class=fmt)
        p.set_defaults(fn=fn)
        return p

    p = add("plan", cmd_plan, "synthesize a plan, prove it, print a table")
    problem_options(p)
    p.add_argument("--budget", type=int, default=None,
                   help="per-device memory budget in bytes (default: the bound)")
    p.add_argument("--max-steps", type=int, default=None,
                   help="optimal method: longest plan searched (default 6)")
    p.add_argument("--json", metavar="F", help="write the plan JSON to F ('-' for stdout)")
    p.add_argument("--certificate", metavar="DIR", help="write a proof certificate to DIR")

    p = add("verify", cmd_verify, "prove the five claims of a plan file")
    p.add_argument("plan", help="plan JSON file (format redist.plan/1)")
    p.add_argument("--budget", type=int, default=None,
                   help="per-device memory budget in bytes (default: the bound)")
    p.add_argument("--json", metavar="F", help="write the verdict JSON to F ('-' for stdout)")

    p = add("normalize", cmd_normalize, "rewrite a plan into memory-efficient normal form")
    p.add_argument("plan", help="plan JSON file (format redist.plan/1)")
    p.add_argument("--json", metavar="F", help="write the new plan JSON to F ('-' for stdout)")
    p.add_argument("--certificate", metavar="DIR", help="write a proof certificate to DIR")

    c = add("certify", None, "work with proof certificates")  # type: ignore[arg-type]
    csub = c.add_subparsers(dest="certify_command", metavar="ACTION", required=True)
    p = csub.add_parser("check", help="re-derive and re-solve every obligation of a "
                        "certificate", description="re-derive and re-solve every obligation "
                        "of a certificate")
    p.set_defaults(fn=cmd_certify)
    p.add_argument("dir", help="certificate directory (or its certificate.json)")
    p.add_argument("--json", metavar="F", help="write the report JSON to F ('-' for stdout)")

    p = add("run", cmd_run, "execute a plan on MPI ranks and check every element")
    problem_options(p)
    p.add_argument("--np", type=int, required=True, help="number of MPI ranks (= devices)")
    p.add_argument("--repeat", type=int, default=5, help="timed repetitions (default 5)")
    p.add_argument("--plan", dest="plan_file", metavar="PLAN.json",
                   help="run this plan file instead of synthesizing one")
    p.add_argument("--mpiexec", default=None, help="mpiexec to use (default: the one "
                   "installed beside Python, else $REDIST_MPIEXEC, else PATH)")
    p.add_argument("--timeout", type=float, default=300, help="seconds before the job is "
                   "killed (default 300)")
    p.add_argument("--json", metavar="F", help="write the run report JSON to F ('-' for stdout)")

    p = add("demo", cmd_demo, "the main job: synthesize, prove, execute on 8 local ranks")
    p.add_argument("--np", type=int, default=8, help="ranks (default 8)")
    p.add_argument("--mpiexec", default=None, help="mpiexec to use")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "fn", None) is None:
        parser.print_help()
        return EXIT_INPUT
    try:
        return args.fn(args)
    except RedistError as e:
        print(f"redist: error: {e}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("redist: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
