"""The `redist` command line (DESIGN §6). Exit codes: 0 success, 1 a claim fails,
2 bad input (one line `redist: error: ...` on stderr, never a traceback)."""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Callable
from typing import NoReturn

from redist.core.errors import RedistError
from redist.core.plans.plan import Plan
from redist.core.plans.planjson import claimed_verdict, plan_from_json, plan_to_json, read_doc
from redist.core.plans.report import plan_table

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

# Options whose value may look like a negative number (`--shape -64,64`): argparse would
# take it for an option, so such values are glued on (`--shape=-64,64`) and then refused
# by the value's own parser with a message that names it.
_VALUE_OPTIONS = {"--mesh", "--shape", "--src", "--dst", "--budget", "--np", "--repeat",
                  "--timeout", "--max-steps", "--dtype"}
_NEGATIVE = re.compile(r"^-[\d.,]")


class OneLineParser(argparse.ArgumentParser):
    """argparse with one-line errors and exit code 2 (no usage block)."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("redist").strip()
        where = f"{command}: " if command else ""
        print(f"redist: error: {where}{message}", file=sys.stderr)
        sys.exit(EXIT_INPUT)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r:.40} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r:.40} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r:.40} must be a positive, finite number of "
                                         "seconds")
    return value


def problem_options(p: argparse.ArgumentParser, required: bool = True) -> None:
    g = p.add_argument_group("problem")
    g.add_argument("--mesh", required=required, help="mesh axes and sizes, e.g. x=2,y=4")
    g.add_argument("--shape", required=required, help="global array shape, e.g. 4096,4096")
    g.add_argument("--dtype", default=None, help="element type (default float32)")
    g.add_argument("--src", required=required, help="source layout, e.g. '[{x},{y}]'")
    g.add_argument("--dst", required=required, help="destination layout, e.g. '[{y},{x}]'")
    g.add_argument("--method", default="normal", choices=["normal", "optimal", "naive"],
                   help="synthesis method (default normal: slices, all-to-alls, gathers)")


def problem_from_args(args: argparse.Namespace):
    from redist.core.model.problem import Problem
    from redist.core.model.syntax import parse_layout, parse_mesh, parse_shape

    return Problem(parse_mesh(args.mesh), parse_shape(args.shape), args.dtype or "float32",
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
    result = synthesize(problem, method=args.method, budget=args.budget, steps=args.max_steps,
                        collectives=args.collectives, timeout=args.timeout)
    note = "; ".join(x for x in (result.method, result.note) if x)
    return report_plan(args, result.plan, result.reason, result.verdict, note)


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

        path = write_certificate(plan, verdict, args.certificate, getattr(args, "budget", None))
        say(args, f"certificate written to {path}")
    emit_json(doc, args.json)
    return EXIT_OK if verdict is None or verdict.all_proved else EXIT_CLAIM


def cmd_normalize(args: argparse.Namespace) -> int:
    from redist.api import verify
    from redist.core.synthesis.synthesize import normalize

    plan = plan_from_json(read_doc(args.plan))
    if plan.typed_prefix()[1] is not None:
        say(args, plan_table(plan))
        say(args, "")
        say(args, verify(plan).table())
        say(args, "nothing to normalize: the plan is not well-typed")
        return EXIT_CLAIM
    result = normalize(plan)
    return report_plan(args, result.plan, result.reason, verify(result.plan),
                       f"normalized from {len(plan.steps)} steps")


def cmd_verify(args: argparse.Namespace) -> int:
    from redist.api import verify

    doc = read_doc(args.plan)
    plan = plan_from_json(doc)
    claimed = claimed_verdict(doc)
    verdict = verify(plan, memory_budget=args.budget)
    say(args, plan_table(plan))
    say(args, "")
    say(args, verdict.table())
    ours = {r.claim: r.status for r in verdict.results}
    disagree = [f"the file says {c} is {s}, recomputed: {ours.get(c, 'no such claim')}"
                for c, s in claimed.items() if ours.get(c) != s]
    for line in disagree:
        say(args, f"REJECTED: {line}")
    emit_json(verdict.to_json(), args.json)
    return EXIT_OK if verdict.all_proved and not disagree else EXIT_CLAIM


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


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("redist")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="redist", description=DESCRIPTION, epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"redist {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    fmt = argparse.RawDescriptionHelpFormatter

    def add(name: str, fn: Callable | None, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_, formatter_class=fmt)
        p.set_defaults(fn=fn)
        return p

    p = add("plan", cmd_plan, "synthesize a plan, prove it, print a table")
    problem_options(p)
    p.add_argument("--budget", type=positive_int, default=None,
                   help="per-device memory budget in bytes (default: the bound)")
    p.add_argument("--max-steps", type=positive_int, default=None,
                   help="optimal method: longest plan searched (default: one more step than "
                        "the normal plan, at least 4; at most 16)")
    p.add_argument("--timeout", type=positive_seconds, default=None,
                   help="optimal method: seconds the solver may search (default 120)")
    p.add_argument("--collectives", choices=["portable", "mpi"], default="portable",
                   help="portable (default): the four collectives every engine has; mpi: "
                        "also one all_exchange (Alltoallv), kept when predicted faster")
    p.add_argument("--json", metavar="F", help="write the plan JSON to F ('-' for stdout)")
    p.add_argument("--certificate", metavar="DIR", help="write a proof certificate to DIR")

    p = add("verify", cmd_verify, "prove the five claims of a plan file")
    p.add_argument("plan", help="plan JSON file (format redist.plan/1)")
    p.add_argument("--budget", type=positive_int, default=None,
                   help="per-device memory budget in bytes (default: the bound)")
    p.add_argument("--json", metavar="F", help="write the verdict JSON to F ('-' for stdout)")

    p = add("normalize", cmd_normalize, "rewrite a plan into memory-efficient normal form")
    p.add_argument("plan", help="plan JSON file (format redist.plan/1)")
    p.add_argument("--json", metavar="F", help="write the new plan JSON to F ('-' for stdout)")
    p.add_argument("--certificate", metavar="DIR", help="write a proof certificate to DIR")

    c = add("certify", None, "work with proof certificates")
    csub = c.add_subparsers(dest="certify_command", metavar="ACTION", required=True,
                            parser_class=OneLineParser)
    p = csub.add_parser("check", help="re-derive and re-solve every obligation of a "
                        "certificate", description="re-derive every obligation of a "
                        "certificate from its plan, compare, and re-solve; exit 0 only if it is "
                        "genuine and every claim is proved")
    p.set_defaults(fn=cmd_certify)
    p.add_argument("dir", help="certificate directory (or its single .json file)")
    p.add_argument("--json", metavar="F", help="write the report JSON to F ('-' for stdout)")

    p = add("run", cmd_run, "execute a plan on MPI ranks and check every element")
    problem_options(p, required=False)
    p.add_argument("--np", type=positive_int, required=True,
                   help="number of MPI ranks (= devices)")
    p.add_argument("--repeat", type=positive_int, default=5, help="timed repetitions "
                   "(default 5)")
    p.add_argument("--plan", dest="plan_file", metavar="PLAN.json",
                   help="run this plan file; the problem comes from the file (problem options, "
                        "if given, must agree with it)")
    p.add_argument("--mpiexec", default=None, help="mpiexec to use (default: $REDIST_MPIEXEC, "
                   "else the one installed beside Python, else PATH)")
    p.add_argument("--timeout", type=positive_seconds, default=300,
                   help="seconds before the job is killed (default 300)")
    p.add_argument("--collectives", choices=["portable", "mpi"], default="mpi",
                   help="mpi (default for run): the four portable collectives or one "
                        "all_exchange, whichever the cost model predicts faster; portable: "
                        "only the four")
    p.add_argument("--json", metavar="F", help="write the run report JSON to F ('-' for stdout)")

    p = add("demo", cmd_demo, "the main job: synthesize, prove, execute on 8 local ranks")
    p.add_argument("--np", type=positive_int, default=8, help="ranks (default 8)")
    p.add_argument("--mpiexec", default=None, help="mpiexec to use")
    return parser


def glue_negative_values(argv: list[str]) -> list[str]:
    """`--shape -64,64` -> `--shape=-64,64`, so the value reaches its own parser."""
    out: list[str] = []
    k = 0
    while k < len(argv):
        if argv[k] in _VALUE_OPTIONS and k + 1 < len(argv) and _NEGATIVE.match(argv[k + 1]):
            out.append(f"{argv[k]}={argv[k + 1]}")
            k += 2
        else:
            out.append(argv[k])
            k += 1
    return out


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(glue_negative_values(sys.argv[1:] if argv is None else argv))
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
