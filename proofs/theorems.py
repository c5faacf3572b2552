"""The general theorems of DESIGN §4, discharged as SMT obligations or by exhaustive
evaluation (see docs/proofs.md).

  T0  a sub-axis is the mixed-radix number of its atoms (refinement is faithful);
  T1  each collective's typing rule is sound for its source map (divisible extents,
      symbolic sizes);
  T1u the same for uneven extents (ceil blocks, padding), by exhaustive evaluation;
  T2  normal-form plans with exact splits are memory-efficient and never discard a
      transfer;
  T3  the normal synthesizer returns a verifying normal-form plan for every pair of
      layouts in the stated range (divisible extents);
  T3u for uneven extents it returns a correct plan, and says so whenever that plan is not
      memory-efficient or not in normal form;
  T1x the two-mesh transfer's typing rule is sound for its source map (proofs/transfer.py).
  T1p, T1pu, T3p  the same for pending sums (proofs/pending_soundness.py).

Independent cases run in parallel worker processes.
"""

from __future__ import annotations

import itertools
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from multiprocessing import get_context

import numpy as np
import z3

from redist.core.errors import TypingError
from redist.core.model.layout import Layout
from redist.core.model.mesh import Mesh
from redist.core.model.problem import Problem
from redist.core.ops import AllSlice, Collective, apply, reshape, source
from redist.core.plans import simulator
from redist.core.plans.plan import Plan
from redist.core.smt.verify import verify
from redist.core.smt.z3algebra import Z3
from redist.core.synthesis.synthesize import is_normal_form, normal

from .soundness import soundness_query
from .symbolic import SymbolicMesh, all_layouts, all_steps

NAMES = ("x", "y", "z")


@dataclass
class TheoremResult:
    name: str
    statement: str
    bound: str
    cases: int = 0
    symbolic: int = 0             # cases proved for all sizes
    bounded: int = 0              # cases proved only for the stated concrete sizes
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def proved(self) -> bool:
        return not self.failures and self.cases == self.symbolic + self.bounded

    def line(self) -> str:
        status = "PROVED" if self.proved else "FAILED"
        how = f"{self.symbolic} symbolic in the sizes"
        if self.bounded:
            how += f", {self.bounded} for concrete sizes only"
        return (f"{status}  {self.name}: {self.cases} cases ({how}) in {self.seconds:.1f} s "
                f"— {self.bound}")


def _unsat(assertions: list[z3.BoolRef], timeout_ms: int, rlimit: int | None = None) -> str:
    s = z3.Solver()
    s.set("timeout", timeout_ms)
    if rlimit is not None:
        s.set("rlimit", rlimit)
    s.add(*assertions)
    return str(s.check())


# T1's symbolic attempt per configuration is bounded by z3's resource count, not the clock,
# so which configurations are proved for all sizes (and which fall back to bounded sizes)
# is the same on an idle and a loaded machine. Measured: every configuration of 1-2 axes
# and rank 1-2 needs at most 170,000; about 400 ms on an idle core. The clock limit only
# guards against a hang.
T1_RLIMIT = 250_000
T1_GUARD_MS = 60_000


def canonical(before: Layout, names: tuple[str, ...]) -> bool:
    """Is `before` the representative of its class under renaming axes? (Sizes are
    symbolic, so names are mere labels.) Representative: used axes read in dim order
    come first in name order, then the replicated axes in name order."""
    order = list(before.used_axes()) + [a for a in names if a not in before.used_axes()]
    return tuple(order) == names


def _parallel(fn: Callable, jobs: list, processes: int | None) -> Iterable:
    """fn over jobs, in worker processes when there is more than one core to use."""
    n = processes if processes is not None else (os.cpu_count() or 1)
    if n <= 1 or len(jobs) < 8:
        yield from map(fn, jobs)
        return
    with get_context("fork").Pool(n) as pool:
        yield from pool.imap(fn, jobs, chunksize=max(1, len(jobs) // (8 * n)))


# --- T0 -------------------------------------------------------------------------------

def t0_refinement(max_atoms: int = 3, timeout_ms: int = 5_000) -> TheoremResult:
    """An axis split into atoms a_1..a_k (major first, symbolic sizes >= 2) numbers its
    coordinate c = mixed radix of the atom digits; then for every run a_i..a_j the sub-axis
    coordinate (c // (|x| / (p·s))) % s, with p the product of the atoms before i and s of
    the run, equals the mixed radix of the run's digits (DESIGN §10)."""
    res = TheoremResult(
        "T0 sub-axes are runs of atoms",
        "the coordinate on x(p)s equals the mixed-radix number of the atoms it covers",
        f"axes split into 1..{max_atoms} atoms, all sizes symbolic")
    t0 = time.perf_counter()
    for k in range(1, max_atoms + 1):
        size = [z3.Int(f"a{i}") for i in range(k)]
        dig = [z3.Int(f"d{i}") for i in range(k)]
        hyp = [s >= 2 for s in size] + [z3.And(d >= 0, d < s) for d, s in
                                          zip(dig, size, strict=True)]
        c: z3.ArithRef = z3.IntVal(0)
        for d, s in zip(dig, size, strict=True):
            c = c * s + d
        full = math.prod(size)
        for i in range(k):
            for j in range(i, k):
                p = math.prod(size[:i]) if i else z3.IntVal(1)
                s = math.prod(size[i:j + 1])
                run: z3.ArithRef = z3.IntVal(0)
                for t in range(i, j + 1):
                    run = run * size[t] + dig[t]
                below = math.prod(size[j + 1:]) if j + 1 < k else z3.IntVal(1)
                # |x| / (p·s) is the product of the atoms after the run, exactly.
                claim = z3.And(full == p * s * below, (c / below) % s == run)
                res.cases += 1
                if _unsat(hyp + [z3.Not(claim)], timeout_ms) == "unsat":
                    res.symbolic += 1
                elif _t0_bounded(k, i, j):
                    res.bounded += 1
                else:
                    res.failures.append(f"{k} atoms, run {i}..{j}")
    res.seconds = time.perf_counter() - t0
    return res


def _t0_bounded(k: int, i: int, j: int, sizes: Iterable[int] = range(2, 6)) -> bool:
    for size in itertools.product(sizes, repeat=k):
        full = math.prod(size)
        s = math.prod(size[i:j + 1])
        below = math.prod(size[j + 1:])
        for c in range(full):
            digits, rest = [], c
            for a in reversed(size):
                digits.append(rest % a)
                rest //= a
            digits.reverse()
            run = 0
            for t in range(i, j + 1):
                run = run * size[t] + digits[t]
            if (c // below) % s != run:
                return False
    return True


# --- T1 -------------------------------------------------------------------------------

def _bounded_step(names: tuple[str, ...], before: Layout, step: Collective,
                  max_size: int) -> str | None:
    """Prove one configuration for every assignment of sizes 1..max_size (extents 1x and 2x
    the device count) by exhaustive evaluation of the source map over every device and
    element; None if proved, else a description of the failure."""
    after = reshape(step, before)
    for sizes in itertools.product(range(1, max_size + 1), repeat=len(names)):
        mesh = Mesh(tuple(zip(names, sizes, strict=True)))
        big = math.prod(sizes)
        for mult in (1, 2):
            shape = (big * mult,) * before.rank
            try:
                apply(step, mesh, shape, before)
            except TypingError:
                continue              # the typing rule rejects it: nothing to prove
            failure = _check_uneven_step(mesh, shape, before, after, step)
            if failure:
                return f"sizes {sizes}: {failure}"
    return None


def _t1_case(job: tuple) -> tuple[str, str | None]:
    names, before, step, max_size, rlimit = job
    answer = _unsat(soundness_query(names, before, step), T1_GUARD_MS, rlimit)
    if answer == "unsat":
        return "symbolic", None
    if answer == "sat":            # a counterexample for some sizes
        return "failed", f"{before} {step}: refuted for some sizes"
    # z3 gave up: prove it for every concrete size up to max_size instead.
    failure = _bounded_step(names, before, step, max_size)
    return ("bounded", None) if failure is None else ("failed", f"{before} {step}: {failure}")


def t1_soundness(max_axes: int = 3, max_rank: int = 3, max_size: int = 4,
                 rlimit: int = T1_RLIMIT, processes: int | None = None) -> TheoremResult:
    res = TheoremResult(
        "T1 collective soundness",
        "for every step a typing rule accepts (divisible extents), the source map lands in "
        "range on the element the destination layout assigns",
        f"meshes of 1..{max_axes} axes, arrays of rank 1..{max_rank}, the five steps (every "
        f"permute and exchange target): all sizes symbolically; configurations z3 leaves "
        f"open are proved for every size 1..{max_size}")
    t0 = time.perf_counter()
    jobs = []
    for n in range(1, max_axes + 1):
        names = NAMES[:n]
        for rank in range(1, max_rank + 1):
            for before in all_layouts(names, rank):
                if canonical(before, names):
                    jobs += [(names, before, step, max_size, rlimit) for step in
                             all_steps(names, before, permutes=True, exchanges=True)]
    for status, failure in _parallel(_t1_case, jobs, processes):
        res.cases += 1
        if status == "symbolic":
            res.symbolic += 1
        elif status == "bounded":
            res.bounded += 1
        else:
            res.failures.append(failure)
    res.seconds = time.perf_counter() - t0
    return res


# --- T1u ------------------------------------------------------------------------------

def _t1u_case(job: tuple) -> tuple[int, list[str]]:
    """Every accepted (step, extents) of one layout, checked element by element."""
    mesh, before, extents = job
    steps = all_steps(mesh.names, before, permutes=True, exchanges=True)
    return accepted_cases(mesh, before, steps, extents, _check_uneven_step)


def accepted_cases(mesh: Mesh, before: Layout, steps: Iterable, extents: list,
                   check: Callable) -> tuple[int, list[str]]:
    """`check(mesh, shape, before, after, step)` (a failure's text, or None) on every
    step and extents the typing rules accept from `before`: (cases, failures)."""
    cases, failures = 0, []
    for step in steps:
        for shape in extents:
            try:
                after = apply(step, mesh, shape, before)
            except TypingError:
                continue
            cases += 1
            failure = check(mesh, shape, before, after, step)
            if failure:
                failures.append(f"mesh {mesh} shape {shape} {before} {step}: {failure}")
    return cases, failures


def _check_uneven_step(mesh: Mesh, shape: tuple[int, ...], before: Layout, after: Layout,
                       step: Collective) -> str | None:
    """Every valid position after the step reads a valid position before it holding the
    same global element (the simulator raises if a valid position reads out of range)."""
    p = Problem(mesh, shape, "int64", before, after, base=mesh)
    plan = Plan(p, (step,))
    x = np.arange(math.prod(shape), dtype=np.int64).reshape(shape)
    try:
        got = simulator.run(plan, x)[-1]
    except AssertionError as e:
        return str(e)
    want = simulator.shards(mesh, shape, after, x)
    valid = simulator.valid_mask(mesh, shape, after)
    if not np.array_equal(got[valid], want[valid]):
        return "a valid element differs"
    return None


def t1_uneven(max_axes: int = 2, max_rank: int = 2, sizes: tuple[int, ...] = (2, 3),
              processes: int | None = None) -> TheoremResult:
    res = TheoremResult(
        "T1u collective soundness, uneven extents",
        "for every step a typing rule accepts on any extents (ceil blocks, padding), every "
        "valid element comes from the right valid element",
        f"meshes of 1..{max_axes} axes of sizes {set(sizes)}, rank 1..{max_rank}, every "
        "layout and step, every extent 1..2·devices+1 (rank 1) or 1..devices+1 per dim "
        "(rank 2): exhaustive evaluation of the source maps")
    t0 = time.perf_counter()
    jobs = []
    for n in range(1, max_axes + 1):
        for sz in itertools.combinations_with_replacement(sizes, n):
            mesh = Mesh(tuple(zip(NAMES[:n], sz, strict=True)))
            dev = mesh.num_devices
            for rank in range(1, max_rank + 1):
                top = 2 * dev + 1 if rank == 1 else dev + 1
                extents = list(itertools.product(range(1, top + 1), repeat=rank))
                jobs += [(mesh, before, extents) for before in all_layouts(mesh.names, rank)]
    for cases, failures in _parallel(_t1u_case, jobs, processes):
        res.cases += cases
        res.bounded += cases - len(failures)
        res.failures += failures
    res.seconds = time.perf_counter() - t0
    return res


# --- T2 -------------------------------------------------------------------------------

def t2_normal_form_memory(max_len: int = 4) -> TheoremResult:
    """Local sizes of a normal-form plan whose splits are exact: each slice divides by
    G >= 1, each all-to-all or permute keeps it, each gather multiplies by G >= 1 (the
    figures' definitions). For every phase pattern of up to max_len steps per phase: every
    local size <= max(first, last), with all sizes and group sizes symbolic."""
    res = TheoremResult(
        "T2 normal form is memory-efficient",
        "in a plan slices -> all-to-alls/permutes -> gathers whose splits are exact, every "
        "local size is at most max(src, dst); and no element that crossed the network is "
        "later sliced away",
        f"every phase pattern with up to {max_len} steps per phase (longer plans: by the "
        "same step-local facts, see docs/proofs.md); all sizes symbolic")
    t0 = time.perf_counter()
    for s, m, g in itertools.product(range(max_len + 1), repeat=3):
        n = s + m + g
        L = [z3.Int(f"L{k}") for k in range(n + 1)]
        G = [z3.Int(f"G{k}") for k in range(n)]
        hyp = [x >= 1 for x in L] + [x >= 1 for x in G]
        for k in range(n):
            if k < s:
                hyp.append(L[k] == L[k + 1] * G[k])
            elif k < s + m:
                hyp.append(L[k + 1] == L[k])
            else:
                hyp.append(L[k + 1] == L[k] * G[k])
        top = z3.If(L[0] >= L[n], L[0], L[n])
        res.cases += 1
        if _unsat(hyp + [z3.Not(z3.And(*[x <= top for x in L]))], 20_000) == "unsat":
            res.symbolic += 1
        else:
            res.failures.append(f"pattern {s} slices, {m} middle, {g} gathers")
    # No discard: in normal form every slice precedes every communicating step, so the
    # source chain of anything a slice drops never changes device: a slice's source map
    # keeps the device, for any sizes.
    for n in (1, 2, 3):
        names = NAMES[:n]
        for before in all_layouts(names, 2):
            for step in all_steps(names, before, permutes=False):
                if not isinstance(step, AllSlice) or not canonical(before, names):
                    continue
                mesh = SymbolicMesh(names)
                c = {a: z3.Int(f"c_{a}") for a in names}
                i = [z3.Int(f"i_{d}") for d in range(2)]
                shape = (z3.Int("N_0"), z3.Int("N_1"))
                c2, _ = source(step, mesh, shape, before, reshape(step, before), c, i, Z3)
                res.cases += 1
                if _unsat([z3.Or(*[c2[a] != c[a] for a in names])], 5000) == "unsat":
                    res.symbolic += 1
                else:
                    res.failures.append(f"slice {step} moves data")
    res.seconds = time.perf_counter() - t0
    return res


# --- T3 -------------------------------------------------------------------------------

def size_patterns(n: int, sizes: Iterable[int]) -> Iterable[tuple[int, ...]]:
    """Size assignments up to renaming: non-decreasing tuples."""
    return itertools.combinations_with_replacement(sorted(sizes), n)


def _canonical_pair(src: Layout, dst: Layout, sizes: dict[str, int]) -> tuple:
    """The smallest image of (src, dst) under renamings that preserve axis sizes."""
    names = tuple(sizes)
    best = None
    for perm in itertools.permutations(names):
        ren = dict(zip(names, perm, strict=True))
        if any(sizes[a] != sizes[ren[a]] for a in names):
            continue
        img = tuple(tuple(tuple(ren[a] for a in d) for d in lay.dims) for lay in (src, dst))
        best = img if best is None or img < best else best
    return best


def layout_pairs(max_axes: int, sizes: tuple[int, ...], ranks: Iterable[int]):
    """(mesh, rank, src, dst) for every mesh of 1..max_axes axes with the given sizes, every
    rank and every pair of layouts, one per class of renamings of equal-size axes."""
    for n in range(1, max_axes + 1):
        names = NAMES[:n]
        for sz in size_patterns(n, sizes):
            mesh = Mesh(tuple(zip(names, sz, strict=True)))
            size_of = dict(mesh.axes)
            for rank in ranks:
                lays = list(all_layouts(names, rank))
                seen = set()
                for src, dst in itertools.product(lays, lays):
                    key = _canonical_pair(src, dst, size_of)
                    if key not in seen:
                        seen.add(key)
                        yield mesh, rank, src, dst


def _t3_case(job: tuple) -> str | None:
    mesh, shape, src, dst, full_check = job
    p = Problem(mesh, shape, "float32", src, dst)
    s = normal(p)
    plan = s.plan
    fig = plan.figures()
    ok = (s.reason is None and plan.final_layout == plan.problem.dst
          and is_normal_form(plan) and fig.peak_bytes <= fig.bound_bytes)
    if ok and full_check:
        ok = verify(plan).all_proved
    return None if ok else f"mesh {mesh} {src} -> {dst}: {plan.steps} {s.reason}"


def t3_synthesizer(max_axes: int = 3, max_rank: int = 3, sizes: tuple[int, ...] = (2, 3, 4),
                   verify_sizes: tuple[int, ...] = (2,), processes: int | None = None,
                   on_progress=None) -> TheoremResult:
    """Exhaustive: for every mesh of 1..max_axes axes with the given sizes, every rank
    0..max_rank and every pair of layouts (up to renaming equal-size axes), with extents
    divisible by every product of axes, the normal synthesizer returns a well-typed plan
    in normal form that ends at dst with peak <= bound. For the meshes whose sizes are all
    in verify_sizes, every plan is also verified by the SMT checker (all five claims).
    Axes of size 1 shard nothing and are dropped before synthesis, so a mesh with them is
    the same problem as the mesh without them: they need no cases of their own."""
    res = TheoremResult(
        "T3 normal synthesizer",
        "for every pair of layouts the normal synthesizer returns a well-typed normal-form "
        "plan that reaches dst within the bound",
        f"meshes of 1..{max_axes} axes of sizes {set(sizes)} (size-1 axes are dropped, so "
        f"meshes with them are covered), rank 0..{max_rank}, extents divisible by every "
        f"axis product; every plan on meshes with all sizes in {set(verify_sizes)} also "
        "SMT-verified")
    t0 = time.perf_counter()
    jobs = [(mesh, (mesh.num_devices,) * rank, src, dst,
             all(s in verify_sizes for _, s in mesh.axes))
            for mesh, rank, src, dst in layout_pairs(max_axes, sizes, range(max_rank + 1))]
    for k, failure in enumerate(_parallel(_t3_case, jobs, processes)):
        res.cases += 1
        if failure is None:
            res.bounded += 1
        else:
            res.failures.append(failure)
        if on_progress and (k + 1) % 5000 == 0:
            on_progress(f"T3: {k + 1}/{len(jobs)} cases")
    res.seconds = time.perf_counter() - t0
    return res


def _t3u_case(job: tuple) -> str | None:
    mesh, shape, src, dst, smt = job
    p = Problem(mesh, shape, "float32", src, dst)
    s = normal(p)
    plan = s.plan
    if plan.final_layout != plan.problem.dst:
        return f"mesh {mesh} {shape} {src} -> {dst}: does not reach dst"
    dev = simulator.wrong_device(plan)
    if dev is not None:
        return f"mesh {mesh} {shape} {src} -> {dst}: wrong elements on device {dev}"
    fig = plan.figures()
    honest = (s.reason is None) == (fig.memory_efficient and is_normal_form(plan))
    if not honest:
        return f"mesh {mesh} {shape} {src} -> {dst}: reason {s.reason!r} does not fit the plan"
    if smt and s.reason is None and not verify(plan).all_proved:
        return f"mesh {mesh} {shape} {src} -> {dst}: a claim is not proved"
    return None


def t3_uneven(max_axes: int = 2, max_rank: int = 2, sizes: tuple[int, ...] = (2, 3),
              smt_every: int = 7, processes: int | None = None) -> TheoremResult:
    res = TheoremResult(
        "T3u normal synthesizer, uneven extents",
        "for every pair of layouts and any extents the synthesizer returns a plan that "
        "reaches dst with every element right, and says why whenever it is not "
        "memory-efficient or not in normal form",
        f"meshes of 1..{max_axes} axes of sizes {set(sizes)}, rank 1..{max_rank}, every "
        "extent 1..2·devices+1 (rank 1) or 1..devices+1 per dim (rank 2); elements checked "
        f"by the simulator, and every {smt_every}th plan without caveat SMT-verified")
    t0 = time.perf_counter()
    jobs = []
    for mesh, rank, src, dst in layout_pairs(max_axes, sizes, range(1, max_rank + 1)):
        top = 2 * mesh.num_devices + 1 if rank == 1 else mesh.num_devices + 1
        for shape in itertools.product(range(1, top + 1), repeat=rank):
            jobs.append((mesh, shape, src, dst, len(jobs) % smt_every == 0))
    for failure in _parallel(_t3u_case, jobs, processes):
        res.cases += 1
        if failure is None:
            res.bounded += 1
        else:
            res.failures.append(failure)
    res.seconds = time.perf_counter() - t0
    return res


def _t1x(**bounds) -> TheoremResult:
    from .transfer import t1_transfer  # (it imports TheoremResult from here)
    return t1_transfer(**bounds)


def _t1p(max_axes: int, max_rank: int) -> TheoremResult:
    from .pending_soundness import t1_pending
    t0 = time.perf_counter()
    cases, proved, failures = t1_pending(max_axes, max_rank)
    return TheoremResult(
        "T1p", "reduce_scatter and all_reduce are sound for their addend maps, and the "
        "moving steps keep every addend's pending coordinates (DESIGN §14)",
        f"layouts with pending axes on meshes of 1-{max_axes} axes, rank 1-{max_rank}; "
        "sizes symbolic, extents divisible", cases=cases, symbolic=proved,
        failures=failures, seconds=time.perf_counter() - t0)


def _t1pu(sizes: tuple[tuple[int, ...], ...]) -> TheoremResult:
    from .pending_soundness import t1_pending_uneven
    t0 = time.perf_counter()
    cases, failures = t1_pending_uneven(sizes)
    return TheoremResult(
        "T1pu", "on uneven extents too (ceil blocks, padding), the reductions read each "
        "member's addend of the right valid element, and moving steps keep pending "
        "coordinates",
        f"meshes {', '.join('x'.join(map(str, s)) for s in sizes)}, rank 1-2, every "
        "pending layout and accepted step, every extent 1..2·devices+1 (rank 1) or "
        "1..devices+1 per dim: exhaustive evaluation", cases=cases,
        bounded=cases - len(failures), failures=failures,
        seconds=time.perf_counter() - t0)


def _t3p(ranks: tuple[int, ...]) -> TheoremResult:
    from .pending_soundness import t3_pending
    t0 = time.perf_counter()
    count, failures = t3_pending(ranks=ranks)
    return TheoremResult(
        "T3p", "on pending problems the normal synthesizer returns a normal-form plan "
        "within the bound with all five claims proved",
        f"every pending src and dst on x=2,y=2, rank {'-'.join(map(str, ranks))}, "
        "divisible extents", cases=count, bounded=count - len(failures),
        failures=failures, seconds=time.perf_counter() - t0)


def run_all(quick: bool = False, on_progress=None,
            processes: int | None = None) -> list[TheoremResult]:
    say = on_progress or (lambda m: None)
    if quick:
        steps = [("T0", lambda: t0_refinement(max_atoms=2)),
                 ("T1", lambda: t1_soundness(max_axes=2, max_rank=2, processes=processes)),
                 ("T1u", lambda: t1_uneven(max_axes=1, max_rank=2, processes=processes)),
                 ("T2", lambda: t2_normal_form_memory(max_len=2)),
                 ("T3", lambda: t3_synthesizer(max_axes=2, max_rank=2, sizes=(2, 3),
                                               processes=processes)),
                 ("T3u", lambda: t3_uneven(max_axes=1, max_rank=1, processes=processes)),
                 ("T1x", lambda: _t1x(meshes=((("x", 2),),), shapes=((4,), (3,)))),
                 ("T1p", lambda: _t1p(max_axes=1, max_rank=1)),
                 ("T1pu", lambda: _t1pu(((2,), (3,)))),
                 ("T3p", lambda: _t3p(ranks=(1,)))]
    else:
        steps = [("T0", t0_refinement),
                 ("T1", lambda: t1_soundness(processes=processes)),
                 ("T1u", lambda: t1_uneven(processes=processes)),
                 ("T2", t2_normal_form_memory),
                 ("T3", lambda: t3_synthesizer(processes=processes, on_progress=say)),
                 ("T3u", lambda: t3_uneven(processes=processes)),
                 ("T1x", lambda: _t1x(meshes=((("x", 2),), (("x", 3),), (("x", 2), ("y", 2))),
                                      shapes=((4,), (6,), (5,)))),
                 ("T1p", lambda: _t1p(max_axes=2, max_rank=2)),
                 ("T1pu", lambda: _t1pu(((2,), (3,), (2, 2), (2, 3)))),
                 ("T3p", lambda: _t3p(ranks=(1, 2)))]
    out = []
    for name, fn in steps:
        say(f"{name} ...")
        out.append(fn())
        say(out[-1].line())
    return out
