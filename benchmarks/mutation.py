"""Mutation testing of core/ and runtime/: apply one small mutation at a time (an operator
swapped, a comparison loosened, a constant off by one, a condition dropped or negated, a
returned value replaced by None), run a fast subset of the tests, and report which
mutants no test kills.

    python -m benchmarks.mutation [--sample N] [--seed S] [--minutes M] [--out FILE.md]

The source is never edited in place: the package is copied to a temporary directory and
the tests run against the copy (PYTHONPATH puts it before the editable install), from a
scratch working directory (no hypothesis database or cache written into the worktree).
Each mutant runs `pytest -x -n 0` on the tests mapped to its file, `nice -n 19`, with a
time limit (a mutant that hangs counts as killed, and is listed as a timeout). Mutants
are sampled at random (seeded), round-robin over the packages, so a run is repeatable.
"""

from __future__ import annotations

import argparse
import ast
import copy
import datetime
import itertools
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAIRING = ["tests/test_runtime_pairing.py", "-k", "not three"]
RULES = ["tests/test_rules.py"]
PINNED = ["tests/test_pinned.py"]

# file -> (tests to run, functions to mutate: None = all). Runtime files: the functions
# the no-MPI tests reach (the rest needs mpiexec and runs in test_runtime.py).
TARGETS: dict[str, tuple[list[str], tuple[str, ...] | None]] = {
    "core/model/mesh.py": (RULES + ["tests/test_layout.py"], None),
    "core/model/axes.py": (RULES + ["tests/test_layout.py"], None),
    "core/model/layout.py": (RULES + PINNED + ["tests/test_layout.py"], None),
    "core/ops/common.py": (RULES + PINNED + PAIRING, None),
    "core/ops/all_slice.py": (RULES + PINNED, None),
    "core/ops/all_gather.py": (RULES + PINNED, None),
    "core/ops/all_to_all.py": (RULES + PINNED, None),
    "core/ops/all_permute.py": (RULES + PINNED + PAIRING, None),
    "core/ops/all_exchange.py": (RULES + PINNED, None),
    "core/semantics/blocks.py": (PAIRING + PINNED, None),
    "core/semantics/costs.py": (PINNED, None),
    "core/smt/obligations.py": (PINNED + RULES, None),
    "core/smt/typing_rules.py": (RULES + PINNED, None),
    "core/plans/plan.py": (PINNED + RULES, None),
    "core/plans/simulator.py": (PAIRING + PINNED, None),
    "core/synthesis/search.py": (PINNED, None),
    "core/synthesis/synthesize.py": (PINNED, None),
    "core/synthesis/exhaustive.py": (PINNED, None),
    "runtime/inplace.py": (PAIRING, None),
    "runtime/groups.py": (PAIRING, ("pair_rounds",)),
    "runtime/execute.py": (PAIRING, ("_slice", "_shrunk", "_permute", "_owned",
                                     "_sendrecv_replace", "_all_to_all", "_inplace_ok",
                                     "_transposes", "_all_to_all_inplace")),
}

BINOPS = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.FloorDiv, ast.FloorDiv: ast.Mult,
          ast.Mod: ast.FloorDiv}
CMPOPS = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt,
          ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In,
          ast.Is: ast.IsNot, ast.IsNot: ast.Is}


@dataclass(frozen=True)
class Mutant:
    path: str
    index: int          # which site (in walk order) of the file
    line: int
    kind: str
    before: str         # the original line
    after: str          # the mutated node, unparsed


def _sites(tree: ast.AST, functions: tuple[str, ...] | None):
    """(node, kind, replacement factory) for every mutation site, in a fixed order. Strings,
    f-strings (messages) and docstrings are never mutated."""
    out = []

    def visit(node: ast.AST, inside: bool) -> None:
        if isinstance(node, ast.JoinedStr):
            return
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            inside = functions is None or node.name in functions
        elif functions is not None and isinstance(node, ast.ClassDef):
            inside = False
        if inside:
            out.extend(_node_sites(node))
        for child in ast.iter_child_nodes(node):
            visit(child, inside)
    visit(tree, functions is None)
    return out


def _node_sites(node: ast.AST):
    if isinstance(node, ast.BinOp) and type(node.op) in BINOPS:
        new = BINOPS[type(node.op)]
        yield node, f"{type(node.op).__name__} -> {new.__name__}", \
            lambda n, new=new: ast.BinOp(n.left, new(), n.right)
    if isinstance(node, ast.AugAssign) and type(node.op) in BINOPS:
        new = BINOPS[type(node.op)]
        yield node, f"{type(node.op).__name__}= -> {new.__name__}=", \
            lambda n, new=new: ast.AugAssign(n.target, new(), n.value)
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in CMPOPS:
        new = CMPOPS[type(node.ops[0])]
        yield node, f"{type(node.ops[0]).__name__} -> {new.__name__}", \
            lambda n, new=new: ast.Compare(n.left, [new()], n.comparators)
    if isinstance(node, ast.Constant) and type(node.value) is int:
        yield node, f"{node.value} -> {node.value + 1}", \
            lambda n: ast.Constant(n.value + 1)
    if isinstance(node, ast.BoolOp):
        other = ast.Or if isinstance(node.op, ast.And) else ast.And
        yield node, f"{type(node.op).__name__} -> {other.__name__}", \
            lambda n, other=other: ast.BoolOp(other(), n.values)
        yield node, "drop the first condition", \
            lambda n: n.values[1] if len(n.values) == 2 else ast.BoolOp(n.op, n.values[1:])
        yield node, "drop the last condition", \
            lambda n: n.values[0] if len(n.values) == 2 else ast.BoolOp(n.op, n.values[:-1])
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        yield node, "drop `not`", lambda n: n.operand
    if isinstance(node, (ast.If, ast.While)):
        yield node, "negate the condition", \
            lambda n: type(n)(ast.UnaryOp(ast.Not(), n.test), n.body, n.orelse)
    if isinstance(node, ast.Return) and node.value is not None and not (
            isinstance(node.value, ast.Constant) and node.value.value is None):
        yield node, "return None", lambda n: ast.Return(ast.Constant(None))


def enumerate_mutants(path: str, text: str) -> list[Mutant]:
    _, functions = TARGETS[path]
    lines = text.splitlines()
    tree = ast.parse(text)
    out = []
    for k, (node, kind, make) in enumerate(_sites(tree, functions)):
        after = ast.unparse(ast.fix_missing_locations(make(copy.deepcopy(node))))
        out.append(Mutant(path, k, node.lineno, kind, lines[node.lineno - 1].strip(),
                          after.splitlines()[0][:100]))
    return out


def mutated_source(m: Mutant, text: str) -> str:
    _, functions = TARGETS[m.path]
    tree = ast.parse(text)
    node, _, make = _sites(tree, functions)[m.index]
    new = ast.copy_location(make(node), node)

    class Swap(ast.NodeTransformer):
        def generic_visit(self, n):
            return new if n is node else super().generic_visit(n)
    tree = ast.fix_missing_locations(Swap().visit(tree))
    return ast.unparse(tree)


def package_copy(where: str) -> str:
    """redist/ with core/, proofs/ and runtime/ inside it: the layout the install maps."""
    pkg = os.path.join(where, "pkg", "redist")
    shutil.copytree(os.path.join(ROOT, "redist"), pkg,
                    ignore=shutil.ignore_patterns("__pycache__"))
    for sub in ("core", "proofs", "runtime"):
        shutil.copytree(os.path.join(ROOT, sub), os.path.join(pkg, sub),
                        ignore=shutil.ignore_patterns("__pycache__"))
    return os.path.join(where, "pkg")


def run_mutant(m: Mutant, pkg: str, scratch: str, timeout: float) -> tuple[str, float, str]:
    """Mutate the copy's file (which holds the text the mutant was enumerated from: the
    worktree may change meanwhile), run its tests, put the file back."""
    target = os.path.join(pkg, "redist", m.path)
    original = open(target, encoding="utf-8").read()
    tests, _ = TARGETS[m.path]
    cmd = ["nice", "-n", "19", sys.executable, "-m", "pytest", "-x", "-n", "0", "-q",
           "-p", "no:cacheprovider", "-c", os.path.join(ROOT, "pyproject.toml"),
           "--rootdir", ROOT] + [t if t.startswith("-") or t == "not three"
                                 else os.path.join(ROOT, t) for t in tests]
    env = dict(os.environ, PYTHONPATH=pkg, PYTHONDONTWRITEBYTECODE="1")
    t0 = time.monotonic()
    try:
        with open(target, "w", encoding="utf-8") as f:
            f.write(mutated_source(m, original))
        r = subprocess.run(cmd, cwd=scratch, env=env, capture_output=True, text=True,
                           timeout=timeout, start_new_session=True)
        failed = [line for line in r.stdout.splitlines() if line.startswith("FAILED")]
        status = "survived" if r.returncode == 0 else "killed"
        detail = failed[0][7:120] if failed else r.stdout.strip().splitlines()[-1:][0][:120] \
            if r.stdout.strip() else ""
    except subprocess.TimeoutExpired:
        status, detail = "killed", "timeout"
    finally:
        with open(target, "w", encoding="utf-8") as f:
            f.write(original)
    return status, time.monotonic() - t0, detail


def package_of(path: str) -> str:
    return "/".join(path.split("/")[:2]) if path.startswith("core/") else "runtime"


def report(rows: list[dict], args, seconds: float) -> str:
    by_pkg: dict[str, list[int]] = {}
    for r in rows:
        k = by_pkg.setdefault(package_of(r["path"]), [0, 0])
        k[0] += r["status"] == "killed"
        k[1] += 1
    lines = [f"# Mutation testing, {datetime.date.today()}", "",
             f"`python -m benchmarks.mutation --sample {args.sample} --seed {args.seed}` "
             f"({len(rows)} mutants run in {seconds / 60:.0f} min, one at a time, `nice -n "
             "19`, on a machine shared with other engineers; each mutant against the fast "
             "test subset mapped to its file in benchmarks/mutation.py).", "",
             "| package | killed | sampled | score |", "|---|---|---|---|"]
    tk = tt = 0
    for pkg in sorted(by_pkg):
        k, t = by_pkg[pkg]
        tk, tt = tk + k, tt + t
        lines.append(f"| {pkg} | {k} | {t} | {100 * k / t:.0f}% |")
    lines += [f"| **all** | {tk} | {tt} | {100 * tk / max(tt, 1):.0f}% |", "",
              "## Surviving mutants", ""]
    surv = [r for r in rows if r["status"] == "survived"]
    if not surv:
        lines.append("None.")
    for r in surv:
        lines.append(f"- `{r['path']}:{r['line']}` {r['kind']}: `{r['before']}` -> "
                     f"`{r['after']}`")
    lines += ["", "## Every mutant", "", "| file:line | mutation | result | seconds |",
              "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['path']}:{r['line']} | {r['kind']} | {r['status']}"
                     f"{' (' + r['detail'] + ')' if r['detail'] == 'timeout' else ''} | "
                     f"{r['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sample", type=int, default=150, help="mutants to run (random, seeded)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--minutes", type=float, default=60, help="stop sampling after this")
    ap.add_argument("--timeout", type=float, default=300, help="seconds per mutant")
    ap.add_argument("--files", nargs="*", default=sorted(TARGETS))
    ap.add_argument("--list", action="store_true", help="count the mutants and stop")
    ap.add_argument("--rerun", metavar="FILE.json",
                    help="run again the survivors of an earlier run (same source)")
    ap.add_argument("--out", default=os.path.join(
        ROOT, "benchmarks", "results", f"mutation-{datetime.date.today()}.md"))
    args = ap.parse_args(argv)
    tmp = tempfile.TemporaryDirectory(prefix="redist-mutation-")
    pkg = package_copy(tmp.name)
    every = [m for f in args.files for m in enumerate_mutants(
        f, open(os.path.join(pkg, "redist", f), encoding="utf-8").read())]
    if args.list:
        for f in args.files:
            print(f"{f}: {sum(m.path == f for m in every)} mutants")
        print(f"total: {len(every)}")
        return 0
    # Round-robin over the packages (each shuffled, seeded): a run cut short by --minutes
    # still samples every package alike.
    rng = random.Random(args.seed)
    pools: dict[str, list[Mutant]] = {}
    for m in every:
        pools.setdefault(package_of(m.path), []).append(m)
    for pool in pools.values():
        rng.shuffle(pool)
    chosen = [m for group in itertools.zip_longest(*pools.values()) for m in group
              if m is not None][:args.sample]
    if args.rerun:
        keys = {(r["path"], r["index"]) for r in json.load(open(args.rerun))
                if r["status"] == "survived"}
        chosen = [m for m in every if (m.path, m.index) in keys]
    rows: list[dict] = []
    t0 = time.monotonic()
    with tmp:
        scratch = os.path.join(tmp.name, "cwd")
        os.makedirs(scratch)
        for i, m in enumerate(chosen):
            if time.monotonic() - t0 > args.minutes * 60:
                break
            status, secs, detail = run_mutant(m, pkg, scratch, args.timeout)
            row = dict(m.__dict__, status=status, seconds=secs, detail=detail)
            rows.append(row)
            print(json.dumps(row), flush=True)
            print(f"[{i + 1}/{len(chosen)}] {m.path}:{m.line} {m.kind}: {status}",
                  file=sys.stderr, flush=True)
    text = report(rows, args, time.monotonic() - t0)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(text)
    with open(args.out[:-3] + ".json", "w", encoding="utf-8") as f:
        json.dump(rows, f, indent=1)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
