"""The general theorems of DESIGN §4, discharged as SMT obligations (see PROOFS.md).

  T1  each collective's typing rule is sound for its source map;
  T2  normal-form plans are memory-efficient, and never discard a transfer;
  T3  the normal synthesizer returns a verifying normal-form plan for every pair of
      layouts in the stated range.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import z3

from redist.core.errors import TypingError
from redist.core.model.layout import Layout
from redist.core.model.mesh import Mesh
from redist.core.model.problem import Problem
from redist.core.plans.plan import Plan
from redist.core.semantics.collectives import AllSlice, Collective, apply, reshape
from redist.core.semantics.sourcemap import source
from redist.core.smt.obligations import obligations
from redist.core.smt.verify import solve, verify
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


def _unsat(assertions: list[z3.BoolRef], timeout_ms: int) -> str:
    s = z3.Solver()
    s.set("timeout", timeout_ms)
    s.add(*assertions)
    return str(s.check())


def canonical(before: Layout, names: tuple[str, ...]) -> bool:
    """Is `before` the representative of its class under renaming axes? (Sizes are
    symbolic, so names are mere labels.) Representative: used axes read in dim order
    come first in name order, then the replicated axes in name order."""
    order = list(before.used_axes()) + [a for a in names if a not in before.used_axes()]
    return tuple(order) == names


# --- T1 -------------------------------------------------------------------------------

def _bounded_step(names: tuple[str, ...], before: Layout, step: Collective,
                  max_size: int) -> str | None:
    """Prove one configuration for every assignment of sizes 1..max_size (generous
    extents); None if proved, else a description of the failure."""
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
            p = Problem(mesh, shape, "int8", before, after)
            ob = next(o for o in obligations(Plan(p, (step,))) if o.claim == "element_correct")
            r = solve(ob)
            if r.status != "proved":
                return f"sizes {sizes}: {r.detail}"
    return None


def t1_soundness(max_axes: int = 3, max_rank: int = 3, max_size: int = 4,
                 timeout_ms: int = 1000) -> TheoremResult:
    res = TheoremResult(
        "T1 collective soundness",
        "for every step a typing rule accepts, the source map lands in range on the element "
        "the destination layout assigns",
        f"meshes of 1..{max_axes} axes, arrays of rank 1..{max_rank}: all sizes symbolically; "
        f"configurations z3 leaves open are proved for every size 1..{max_size}")
    t0 = time.perf_counter()
    for n in range(1, max_axes + 1):
        names = NAMES[:n]
        for rank in range(1, max_rank + 1):
            for before in all_layouts(names, rank):
                if not canonical(before, names):
                    continue
                for step in all_steps(names, before, permutes=True):
                    res.cases += 1
                    answer = _unsat(soundness_query(names, before, step), timeout_ms)
                    if answer == "unsat":
                        res.symbolic += 1
                        continue
                    if answer == "sat":            # a counterexample for some sizes
                        res.failures.append(f"{before} {step}: refuted for some sizes")
                        continue
                    # z3 gave up: prove it for every concrete size up to max_size instead.
                    failure = _bounded_step(names, before, step, max_size)
                    if failure is None:
                        res.bounded += 1
                    else:
                        res.failures.append(f"{before} {step}: {failure}")
    res.seconds = time.perf_counter() - t0
    return res


# --- T2 -------------------------------------------------------------------------------

def t2_normal_form_memory(max_len: int = 4) -> TheoremResult:
    """Local sizes of a normal-form plan: each slice divides by G >= 1, each all-to-all or
    permute keeps it, each gather multiplies by G >= 1 (the figures' definitions). For
    every phase pattern of up to max_len steps per phase: every local size <= max(first,
    last), with all sizes and group sizes symbolic."""
    res = TheoremResult(
        "T2 normal form is memory-efficient",
        "in a plan slices -> all-to-alls/permutes -> gathers every local size is at most "
        "max(src, dst); and no element that crossed the network is later sliced away",
        f"every phase pattern with up to {max_len} steps per phase (longer plans: by the "
        "same step-local facts, see PROOFS.md); all sizes symbolic")
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
    # source chain of anything a slice drops never changes device. Checked per pattern on
    # the actual no_discard obligation of a generic plan is T3's job; here the lemma that
    # a slice's source map keeps the device, for any sizes:
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

def size_patterns(n: int, max_size: int) -> Iterable[tuple[int, ...]]:
    """Size assignments up to renaming: non-decreasing tuples."""
    return itertools.combinations_with_replacement(range(1, max_size + 1), n)


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


def t3_synthesizer(max_axes: int = 3, max_rank: int = 3, max_size: int = 4,
                   verify_sizes: tuple[int, ...] = (2,), on_progress=None) -> TheoremResult:
    """Exhaustive: for every mesh of 1..max_axes axes with sizes 1..max_size, every rank
    0..max_rank and every pair of layouts (up to renaming equal-size axes), with extents
    divisible by every product of axes, the normal synthesizer returns a well-typed plan
    in normal form that ends at dst with peak <= bound. For the meshes whose sizes are all
    in verify_sizes, every plan is also verified by the SMT checker (all five claims)."""
    res = TheoremResult(
        "T3 normal synthesizer",
        "for every pair of layouts the normal synthesizer returns a well-typed normal-form "
        "plan that reaches dst within the bound",
        f"meshes of 1..{max_axes} axes of sizes 1..{max_size}, rank 0..{max_rank}, extents "
        f"divisible by every axis product; every plan on meshes with all sizes in "
        f"{set(verify_sizes)} also SMT-verified")
    t0 = time.perf_counter()
    for n in range(1, max_axes + 1):
        names = NAMES[:n]
        for sizes in size_patterns(n, max_size):
            mesh = Mesh(tuple(zip(names, sizes, strict=True)))
            size_of = dict(mesh.axes)
            full_check = all(s in verify_sizes for s in sizes)
            for rank in range(max_rank + 1):
                shape = (mesh.num_devices,) * rank
                lays = list(all_layouts(names, rank))
                seen = set()
                for src, dst in itertools.product(lays, lays):
                    key = _canonical_pair(src, dst, size_of)
                    if key in seen:
                        continue
                    seen.add(key)
                    res.cases += 1
                    p = Problem(mesh, shape, "float32", src, dst)
                    s = normal(p)
                    plan = s.plan
                    fig = plan.figures()
                    ok = (s.reason is None and plan.final_layout == dst
                          and is_normal_form(plan) and fig.peak_bytes <= fig.bound_bytes)
                    if ok and full_check:
                        ok = verify(plan).all_proved
                    if ok:
                        res.bounded += 1
                    else:
                        res.failures.append(f"mesh {mesh} {src} -> {dst}: {plan.steps} "
                                            f"{s.reason}")
            if on_progress:
                on_progress(f"T3 mesh sizes {sizes}: {res.cases} cases so far")
    res.seconds = time.perf_counter() - t0
    return res


def run_all(quick: bool = False, on_progress=None) -> list[TheoremResult]:
    if quick:
        return [t1_soundness(max_axes=2, max_rank=2), t2_normal_form_memory(max_len=2),
                t3_synthesizer(max_axes=2, max_rank=2, max_size=3)]
    return [t1_soundness(), t2_normal_form_memory(), t3_synthesizer(on_progress=on_progress)]
