"""The `redist` command line (DESIGN §6). Exit codes: 0 success, 1 a claim fails,
2 bad input (one line `redist: error: ...` on stderr, never a traceback)."""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from collections.abc import Callable
from typing import NoReturn

from redist.core.errors import RedistError, printable
from redist.core.plans.plan import Plan
from redist.core.plans.planjson import claimed_verdict, plan_from_json, plan_to_json, read_doc
from redist.core.plans.report import plan_table

EXIT_OK, EXIT_CLAIM, EXIT_INPUT = 0, 1, 2
MAX_SECONDS = 30 * 86400         # --timeout: beyond this, clocks and timers overflow

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
  redist audit --mesh x=2,y=4 --shape 64,64 --src '[{x},{}]' --dst '[{},{y}]'
  redist normalize plan.json --json -
  redist demo
"""

# Options whose value may look like a negative number (`--shape -64,64`): argparse would
# take it for an option, so such values are glued on (`--shape=-64,64`) and then refused
# by the value's own parser with a message that names it.
_VALUE_OPTIONS = {"--mesh", "--shape", "--src", "--dst", "--budget", "--np", "--repeat",
                  "--timeout", "--max-steps", "--dtype", "--layout", "--dst-mesh",
                  "--rlimit"}
_NEGATIVE = re.compile(r"^-[\d.,]")


class OneLineParser(argparse.ArgumentParser):
    """argparse with one-line errors and exit code 2 (no usage block)."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("redist").strip()
        where = f"{command}: " if command else ""
        print(f"redist: error: {where}{printable(message)}", file=sys.stderr)
        sys.exit(EXIT_INPUT)


def positive_int(text: str) -> int:
    try:
        if not text.isascii():             # int() reads other scripts' digits ("٢")
            raise ValueError
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r:.40} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def positive_seconds(text: str) -> float:
    try:
        if not text.isascii():
            raise ValueError
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r:.40} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r:.40} must be a positive, finite number of "
                                         "seconds")
    if value > MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"{text!r:.40} is over the limit of {MAX_SECONDS:,} "
                                         "seconds (30 days)")
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

    return Problem(parse_mesh(args.mesh), parse_shape(args.shape),
                   "float32" if args.dtype is None else args.dtype,
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
    except (OSError, ValueError) as e:      # ValueError: a NUL in the path
        raise RedistError(f"cannot write {target!r}: "
                          f"{getattr(e, 'strerror', None) or e}") from None


def say(args: argparse.Namespace, text: str) -> None:
    """Human output, unless the JSON goes to stdout."""
    if getattr(args, "json", None) != "-":
        print(text)


def progress(args: argparse.Namespace, text: str) -> None:
    """A progress line on a terminal's stderr (silent when piped or with --json -)."""
    if sys.stderr.isatty() and getattr(args, "json", None) != "-":
        print(f"... {text}", file=sys.stderr, flush=True)


def cmd_plan(args: argparse.Namespace) -> int:
    from redist.api import synthesize
    from redist.cross_cli import two_meshes

    if two_meshes(args):
        from redist.cross_cli import cmd_plan as cross_plan
        return cross_plan(args)

    problem = problem_from_args(args)
    if args.method == "optimal":
        progress(args, "searching for an optimal plan with z3")
    result = synthesize(problem, method=args.method, budget=args.budget, steps=args.max_steps,
                        collectives=args.collectives, timeout=args.timeout,
                        objective=getattr(args, "objective", "bytes"),
                        rlimit=getattr(args, "rlimit", None))
    progress(args, "plan found and verified" if result.verified else "plan found")
    note = "; ".join(x for x in (result.method, result.note) if x)
    if args.plot:
        from redist.core.synthesis.synthesize import naive
        from redist.plot import plot_plans

        path = plot_plans([(f"{args.method} plan", result.plan),
                           ("naive plan", naive(result.plan.problem))], args.plot)
        say(args, f"plot written to {path}")
    return report_plan(args, result.plan, result.reason, result.verdict, note)


def report_plan(args: argparse.Namespace, plan: Plan, reason: str | None, verdict,
                note: str | None = None) -> int:
    say(args, plan_table(plan))
    if getattr(args, "show", False) and getattr(args, "json", None) != "-":
        from redist.core.plans.show import plan_pictures, render
        print()
        render(plan_pictures(plan))
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
    if isinstance(doc, dict) and "dst_mesh" in doc:
        from redist.cross_cli import cmd_verify as cross_verify
        return cross_verify(args, doc)
    plan = plan_from_json(doc)
    claimed = claimed_verdict(doc)
    verdict = verify(plan, memory_budget=args.budget)
    say(args, plan_table(plan))
    say(args, "")
    say(args, verdict.table())
    ours = {r.claim: r.status for r in verdict.results}
    disagree = [printable(f"the file says {c} is {s}, recomputed: "
                          f"{ours.get(c, 'no such claim')}")
                 for c, s in claimed.items() if ours.get(c) != s]
    for line in disagree:
        say(args, f"REJECTED: {line}")
    emit_json(verdict.to_json(), args.json)
    return EXIT_OK if verdict.all_proved and not disagree else EXIT_CLAIM


def cmd_show(args: argparse.Namespace) -> int:
    from redist.core.plans.show import layout_header, layout_picture, plan_pictures, render

    if args.plan:
        if any(getattr(args, k) for k in ("mesh", "shape", "layout")):
            raise RedistError("show: give a plan file or --mesh/--shape/--layout, not both")
        plan = plan_from_json(read_doc(args.plan))
        if plan.typed_prefix()[1] is not None:
            raise RedistError(f"show: the plan is not well-typed ({plan.typed_prefix()[1]})")
        render(plan_pictures(plan))
        return EXIT_OK
    missing = [f"--{k}" for k in ("mesh", "shape", "layout") if getattr(args, k) is None]
    if missing:
        raise RedistError(f"show: give a plan file, or {', '.join(missing)}")
    from redist.core.model.problem import Problem
    from redist.core.model.syntax import parse_layout, parse_mesh, parse_shape

    lay = parse_layout(args.layout)
    p = Problem(parse_mesh(args.mesh), parse_shape(args.shape),
                "float32" if args.dtype is None else args.dtype, lay, lay)
    print(layout_header(p, p.src))
    render(layout_picture(p, p.src))
    return EXIT_OK


def cmd_certify(args: argparse.Namespace) -> int:
    from redist.core.smt.certificate import check_certificate

    progress(args, f"checking {args.dir}: regenerating and comparing obligations, then "
                   "solving them with z3 (and cvc5)")
    report = check_certificate(args.dir)
    say(args, report.table())
    emit_json(report.to_json(), args.json)
    return EXIT_OK if report.ok else EXIT_CLAIM


def cmd_run(args: argparse.Namespace) -> int:
    from redist.cross_cli import two_meshes
    from redist.runtime.launch import run_command

    if two_meshes(args):
        from redist.runtime.cross_launch import run_cross_command
        return run_cross_command(args)
    return run_command(args)


def cmd_regress(args: argparse.Namespace) -> int:
    import os as _os

    if args.jax:
        _os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
        try:
            import jax  # noqa: F401
        except Exception as e:        # not installed, or broken: ImportError and worse
            raise RedistError(f"--jax needs JAX, which cannot be imported here "
                              f"({type(e).__name__}: {str(e)[:80]}); pip install "
                              "'redist[jax]'") from None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
    from rich.table import Table

    from redist import regress
    from redist.core.plans.show import QuietConsole

    if args.replay:
        from redist.core.plans.planjson import load

        problem = load(args.replay).problem
        np_ranks = problem.mesh.num_devices if args.np else None
        failures = regress.replay(args.replay, np_ranks, args.jax, args.mpiexec, args.torch)
        p = problem
        print(f"replayed {args.replay}: mesh {p.base}, shape {','.join(map(str, p.shape))} "
              f"{p.dtype}: {p.show(p.src)} -> {p.show(p.dst)}")
        for f in failures:
            print(f"  FAILED: {f}")
        print("all properties hold" if not failures else "the failure reproduces")
        return EXIT_CLAIM if failures else EXIT_OK
    err = Console(stderr=True)
    live = err.is_terminal and args.json != "-"
    bar = Progress(TextColumn("regress"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[what]}"), console=err, disable=not live)
    with bar:
        task = bar.add_task("", total=args.examples, what="")

        def tick(tally) -> None:
            bar.update(task, completed=min(tally.checked, args.examples),
                       what=f"{tally.failures} failures" if tally.failures else "")
        outcome = regress.run(args.examples, args.seed, args.np, args.jax, args.max_devices,
                              args.database, args.mpiexec, tick, not args.no_database,
                              args.torch)
    t = outcome.tally
    table = Table(title=f"redist regress: {t.checked} problems in {outcome.seconds:.1f} s",
                  title_justify="left", show_header=False, box=None)
    table.add_column(justify="left")
    table.add_column(justify="right")
    for kind, n in sorted(t.kinds.items()):
        table.add_row(f"  problems: {kind}", str(n))
    table.add_row("  plans with all five claims proved", str(t.verified))
    table.add_row("  plans over the bound or out of normal form (said so)", str(t.caveat))
    table.add_row("  plans at the lower bound of volume", str(t.at_lower_bound))
    if args.np:
        table.add_row(f"  executed on {args.np} MPI ranks, every element compared",
                      str(t.mpi_runs))
        table.add_row("    of which one all_exchange (mpi collectives)", str(t.exchange_chosen))
    if args.jax:
        table.add_row("  compared inside JAX with jax.device_put", str(t.jax_runs))
    if args.torch:
        table.add_row("  run on 8 torchrun ranks, every DTensor block compared", str(t.torch_runs))
    table.add_row("  failures", str(t.failures))
    if args.json != "-":
        QuietConsole().print(table)
    doc = {"checked": t.checked, "kinds": dict(t.kinds), "verified": t.verified,
           "caveat": t.caveat, "at_lower_bound": t.at_lower_bound, "mpi_runs": t.mpi_runs,
           "jax_runs": t.jax_runs, "torch_runs": t.torch_runs,
           "failures": t.failures, "seconds": outcome.seconds}
    if outcome.failure:
        path = regress.save_failure(outcome.problem)
        p = outcome.problem
        doc.update(failure=outcome.failure, saved=path)
        if args.json != "-":
            print(f"\nFAILED on mesh {p.base}, shape {','.join(map(str, p.shape))} {p.dtype}: "
                  f"{p.show(p.src)} -> {p.show(p.dst)}")
            for f in outcome.failure:
                print(f"  {f}")
            replay_cmd = f"redist regress --replay {path}" + (" --np 1" if args.np else "") + \
                (" --jax" if args.jax else "") + (" --torch" if args.torch else "")
            print(f"saved to {path}; replay with:\n  {replay_cmd}")
    emit_json(doc, args.json)
    return EXIT_CLAIM if outcome.failure else EXIT_OK


def cmd_calibrate(args: argparse.Namespace) -> int:
    import sys as _sys

    from redist.core.plans.report import human_bytes
    from redist.core.synthesis.costmodel import default_path, from_json, save
    from redist.runtime.calibrate import REPEAT, cases
    from redist.runtime.launch import launch

    n_plans = len(cases(args.np))
    say(args, f"calibrating on {args.np} MPI ranks: {n_plans} one-step plans, "
              f"{REPEAT + 1} runs each (about a minute on 8 ranks on a shared 2-core "
              "machine)...")
    res = launch({}, args.np, args.mpiexec, timeout=args.timeout,
                 program=[_sys.executable, "-m", "redist.runtime.calibrate"])
    if not res.timed_out and res.returncode == 0 and not isinstance(res.report, dict):
        raise RedistError("the calibration job ended without a report from redist; is "
                          f"{args.mpiexec or 'the mpiexec used'} an mpiexec?")
    if res.timed_out or res.returncode != 0 or res.report is None:
        raise RedistError(f"calibration failed (exit {res.returncode}): "
                          f"{res.stderr.strip().splitlines()[-1] if res.stderr.strip() else ''}")
    report = res.report
    model = from_json(report.get("model") if isinstance(report, dict) else None,
                      "the calibration job's report", f"calibrated on {args.np} ranks")
    if not isinstance(report.get("measurements"), list):
        raise RedistError("the calibration job's report has no list of measurements")
    path = save(model, args.out or default_path())
    fit = report.get("fit") if isinstance(report.get("fit"), dict) else {}

    def err(kind: str) -> str:
        e = fit.get(kind)
        try:
            return f"{e['median']:.0%} / {e['max']:.0%} ({e['rows']})"
        except (TypeError, KeyError, ValueError):
            return "-"
    rows = [("step", "per message", "bandwidth", "fit error: median / worst (rows)")]
    rows += [(k, f"{model.latency[k] * 1e6:.3g} us",
              f"{human_bytes(1 / model.seconds_per_byte[k])}/s"
              if model.seconds_per_byte[k] else "-", err(k)) for k in model.latency]
    widths = [max(len(r[c]) for r in rows) for c in range(4)]
    for r in rows:
        say(args, "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    say(args, f"local copies {model.copy_seconds_per_byte * 1e9:.3g} ns/B, block transposes "
              f"{model.transpose_seconds_per_byte * 1e9:.3g} ns/B; buffers beyond "
              f"{human_bytes(model.cache_bytes)} (the cache): "
              f"+{model.memory_seconds_per_byte * 1e9:.3g} ns per byte moved")
    took = report.get("seconds")
    if isinstance(took, (int, float)):
        say(args, f"measured in {took:.0f} s")
    say(args, f"{len(report['measurements'])} measurements; cost model saved to {path}")
    emit_json({"path": path, **report}, args.json)
    return EXIT_OK


def cmd_audit(args: argparse.Namespace) -> int:
    """XLA's plan for the problem (compiled here, or read from --hlo), proved or refuted."""
    problem = problem_from_args(args)
    from redist.audit import audit_hlo, compiled_hlo, ensure_host_devices

    if args.hlo is not None:
        from redist.core.audit.hlo import MAX_HLO_BYTES
        from redist.core.files import read_text

        text = read_text(args.hlo, MAX_HLO_BYTES, "HLO file")
    else:
        import os as _os

        ensure_host_devices(problem.mesh.num_devices)
        _os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")   # XLA's own warnings
        progress(args, "compiling the resharding with JAX")
        text = compiled_hlo(problem)
    progress(args, "reconstructing XLA's plan and proving its claims")
    report = audit_hlo(problem, text, args.method)
    say(args, report.text())
    emit_json(report.to_json(), args.json)
    return EXIT_OK if report.proved else EXIT_CLAIM


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
    p.add_argument("--dst-mesh", default=None, help="the mesh of dst, on other ranks of the "
                   "world: e.g. --mesh fsdp=4,tp=2@0-7 --dst-mesh tp=4@8-11 (DESIGN 15)")
    p.add_argument("--budget", type=positive_int, default=None,
                   help="per-device memory budget in bytes (default: the bound)")
    p.add_argument("--max-steps", type=positive_int, default=None,
                   help="optimal method: longest plan searched (default: one more step than "
                        "the normal plan, at least 4; at most 16)")
    p.add_argument("--timeout", type=positive_seconds, default=None,
                   help="optimal method: a wall-clock limit on the search (default none: "
                        "--rlimit bounds it, whatever the machine's load)")
    p.add_argument("--rlimit", type=positive_int, default=None,
                   help="optimal method: z3 resource units the search may use (default "
                        "150000000, about 15-20 s of CPU); deterministic")
    p.add_argument("--collectives", choices=["portable", "mpi"], default="portable",
                   help="portable (default): the four collectives every engine has; mpi: "
                        "also one all_exchange (Alltoallv), kept when predicted faster")
    p.add_argument("--objective", choices=["bytes", "time", "collectives"], default="bytes",
                   help="normal method: rank plans by bytes moved (default), by number of "
                        "collectives, or by the cost model's predicted time")
    p.add_argument("--json", metavar="F", help="write the plan JSON to F ('-' for stdout)")
    p.add_argument("--certificate", metavar="DIR", help="write a proof certificate to DIR")
    p.add_argument("--show", action="store_true", help="also draw the layout after each step")
    p.add_argument("--plot", metavar="FILE", help="draw memory and bytes moved per step, this "
                   "plan beside the naive one (.png, .svg or .pdf; needs matplotlib)")

    p = add("show", cmd_show, "draw a layout on its mesh, or a plan step by step")
    p.add_argument("plan", nargs="?", help="plan JSON file (or give --mesh, --shape, --layout)")
    p.add_argument("--mesh", help="mesh axes and sizes, e.g. x=2,y=2,z=2")
    p.add_argument("--shape", help="array shape, e.g. 8,8,8")
    p.add_argument("--layout", help="the layout to draw, e.g. '[{x},{y},{z}]'")
    p.add_argument("--dtype", default=None, help="element type (default float32)")

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
    p.add_argument("--dst-mesh", default=None, help="the mesh of dst, on other ranks of the "
                   "world: e.g. --mesh fsdp=4,tp=2@0-7 --dst-mesh tp=4@8-11 (DESIGN 15)")
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

    p = add("regress", cmd_regress, "property-based regressions on random problems: "
            "synthesize, verify, simulate, and run on MPI ranks or inside JAX")
    p.add_argument("--examples", type=positive_int, default=100,
                   help="random problems to check (default 100)")
    p.add_argument("--seed", type=int, default=None, help="fix the random problems")
    p.add_argument("--np", type=positive_int, default=None,
                   help="also execute every plan on this many MPI ranks")
    p.add_argument("--jax", action="store_true",
                   help="also compare redist.jax.reshard with jax.device_put (8 host devices)")
    p.add_argument("--torch", action="store_true",
                   help="also run redist.torch.redistribute on 8 torchrun ranks (gloo) and "
                        "compare every DTensor block")
    p.add_argument("--max-devices", type=positive_int, default=64,
                   help="largest mesh without --np (default 64)")
    p.add_argument("--replay", metavar="FILE", help="check the problem of a saved failure")
    p.add_argument("--database", default=None, help="where failures are kept and replayed "
                   "first (default ~/.cache/redist/regress-examples)")
    p.add_argument("--no-database", action="store_true", help="do not keep or replay failures")
    p.add_argument("--mpiexec", default=None, help="mpiexec to use")
    p.add_argument("--json", metavar="F", help="write the summary JSON to F ('-' for stdout)")

    p = add("calibrate", cmd_calibrate, "measure this machine's MPI for the cost model that "
            "chooses between portable plans and one all_exchange")
    p.add_argument("--np", type=positive_int, default=8, help="ranks (default 8)")
    p.add_argument("--out", metavar="FILE", default=None, help="where to save the model "
                   "(default $REDIST_COST_MODEL or ~/.config/redist/costmodel.json)")
    p.add_argument("--mpiexec", default=None, help="mpiexec to use")
    p.add_argument("--timeout", type=positive_seconds, default=600,
                   help="seconds before the job is killed (default 600)")
    p.add_argument("--json", metavar="F", help="write the measurements JSON to F ('-' for "
                   "stdout)")

    p = add("audit", cmd_audit, "prove or refute the plan XLA compiles for a resharding, "
            "beside redist's plan")
    problem_options(p)
    p.add_argument("--hlo", metavar="FILE", help="audit this HLO text (a compiled module's "
                   "as_text(), partition p = device p of the mesh) instead of compiling with JAX")
    p.add_argument("--json", metavar="F", help="write the audit JSON to F ('-' for stdout)")

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
        code = args.fn(args)
        sys.stdout.flush()            # a closed pipe shows here, not at interpreter exit
        return code
    except RedistError as e:
        print(f"redist: error: {printable(str(e))}", file=sys.stderr)
        return EXIT_INPUT
    except BrokenPipeError:
        # The reader went away (`redist plan ... | head -1`): stop quietly, as a process
        # ended by SIGPIPE would (exit 128 + 13), with nothing left to flush.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13
    except MemoryError:
        print("redist: error: out of memory (the problem is too large for this machine)",
              file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("redist: interrupted", file=sys.stderr)
        return 130




if __name__ == "__main__":
    sys.exit(main())
