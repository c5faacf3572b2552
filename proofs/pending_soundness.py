"""Theorem 1 for pending sums (DESIGN §14): the reductions' typing rules are sound for their
addend maps, and the other steps carry pending axes unchanged.

For a reduction taking pending layout B to A: for every device c, local index i of A and
every member k of c's group (coordinates on the summed axes), the addend map names a
device c' whose coordinates are k on the summed axes and c's elsewhere (so the members of
the set are exactly the group, one each), and a local index in range for B holding A's
global element at (c, i). For a step that only moves data from a pending B: its source
keeps c's coordinates on every pending axis (an addend never turns into another). Stated
with symbolic axis sizes and extents (divisible), symbolic coordinates and indices.

On uneven extents (ceil blocks, padding; DESIGN §11) the same statement for every valid
element, evaluated exhaustively on small meshes (`t1_pending_uneven`): every step the
typing rules accept on those extents, every device, valid index and group member.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
import z3

from redist.core.errors import TypingError
from redist.core.model.layout import Layout
from redist.core.model.mesh import Mesh
from redist.core.ops import (
    AllReduce,
    ReduceScatter,
    addend,
    reshape,
    source,
    summed_axes,
)
from redist.core.ops.common import global_index
from redist.core.plans.simulator import valid_mask
from redist.core.semantics.algebra import NUMPY
from redist.core.semantics.blocks import device_coords
from redist.core.smt.z3algebra import Z3

from .symbolic import all_layouts, all_steps, step_instance
from .theorems import accepted_cases


def pending_layouts(names: tuple[str, ...], rank: int) -> Iterator[Layout]:
    """Every layout with a non-empty pending set (each axis in a dim, replicated or
    pending)."""
    for lay in all_layouts(names, rank):
        free = [a for a in names if a not in lay.used_axes()]
        for k in range(1, len(free) + 1):
            for pend in itertools.combinations(free, k):
                yield Layout(lay.dims, pend)


def reductions(names: tuple[str, ...], before: Layout) -> Iterator:
    """Every reduce-scatter (pending axes into dims, in every order) and all-reduce."""
    rank = before.rank
    pend = before.sum
    for where in itertools.product(range(-1, rank), repeat=len(pend)):
        groups = [[a for a, w in zip(pend, where, strict=True) if w == d] for d in range(rank)]
        if all(w == -1 for w in where):
            continue
        for orders in itertools.product(*[itertools.permutations(g) for g in groups]):
            yield ReduceScatter(tuple(tuple(o) for o in orders))
    for k in range(1, len(pend) + 1):
        for sub in itertools.combinations(pend, k):
            yield AllReduce(sub)


def pending_query(names: tuple[str, ...], before: Layout, step) -> list[z3.BoolRef]:
    """Hypotheses and the negated claim: unsat proves it for all sizes."""
    q = step_instance(names, before, step)
    mesh, hyp = q.mesh, list(q.hyp)
    summed = summed_axes(step)
    k = {a: z3.Int(f"k_{a}") for a in summed}
    hyp += [z3.And(k[a] >= 0, k[a] < mesh.size(a)) for a in summed]
    if summed:
        c2, i2 = addend(step, mesh, q.shape, before, q.after, q.coords, q.index, k, Z3)
        ok = [c2[a] == (k[a] if a in summed else q.coords[a]) for a in names]
    else:
        c2, i2 = source(step, mesh, q.shape, before, q.after, q.coords, q.index, Z3)
        ok = [z3.And(c2[a] >= 0, c2[a] < mesh.size(a)) for a in names]
        ok += [c2[a] == q.coords[a] for a in before.sum]
    return hyp + [z3.Not(z3.And(*ok, *q.lands_on(c2, i2)))]


def pending_cases(max_axes: int, max_rank: int) -> Iterator[tuple]:
    for n in range(1, max_axes + 1):
        names = tuple("xyz"[:n])
        for rank in range(1, max_rank + 1):
            for before in pending_layouts(names, rank):
                for step in reductions(names, before):
                    yield names, before, step
                for step in all_steps(names, before, permutes=False):
                    try:
                        reshape(step, before)
                    except TypingError:
                        continue
                    yield names, before, step


def t1_pending(max_axes: int = 2, max_rank: int = 2, timeout_ms: int = 20_000) -> tuple:
    """(cases, proved, failures): every case's query must be unsat."""
    cases, proved, failures = 0, 0, []
    for names, before, step in pending_cases(max_axes, max_rank):
        cases += 1
        s = z3.Solver()
        s.set("timeout", timeout_ms)
        s.add(*pending_query(names, before, step))
        answer = s.check()
        if answer == z3.unsat:
            proved += 1
        else:
            failures.append(f"{before} {step}: {answer}")
    return cases, proved, failures


def t3_pending(axes: tuple[tuple[str, int], ...] = (("x", 2), ("y", 2)),
               ranks: tuple[int, ...] = (1, 2)) -> tuple[int, list[str]]:
    """T3 on pending problems: for every pending src and every dst (each pending axis
    reduced or kept) on this mesh, extents divisible by every product of axes, the default
    synthesizer returns a normal-form plan within the bound with all five claims proved.
    (problems, failures)."""
    from redist.core.model.mesh import Mesh
    from redist.core.model.problem import Problem
    from redist.core.smt.verify import verify
    from redist.core.synthesis.synthesize import is_normal_form, synthesize_plan

    mesh = Mesh(axes)
    names = mesh.names
    count, failures = 0, []
    for rank in ranks:
        shape = (2 * mesh.num_devices,) * rank
        for src in pending_layouts(names, rank):
            for dst in all_layouts(names, rank):
                free = [a for a in src.sum if a not in dst.used_axes()]
                for k in range(len(free) + 1):
                    for keep in itertools.combinations(free, k):
                        p = Problem(mesh, shape, "float32", src, Layout(dst.dims, keep))
                        plan = synthesize_plan(p).plan
                        count += 1
                        if not (plan.figures().memory_efficient and is_normal_form(plan)
                                and verify(plan).all_proved):
                            failures.append(f"{p.show(p.src)} -> {p.show(p.dst)}")
    return count, failures


def t1_pending_uneven(sizes: tuple[tuple[int, ...], ...] = ((2,), (3,), (2, 2)),
                      max_rank: int = 2) -> tuple[int, list[str]]:
    """T1p on uneven extents, by exhaustive evaluation: on each mesh (axis sizes), rank
    1..max_rank, every pending layout, every reduction and moving step the typing rules
    accept, every extent 1..2·devices+1 (rank 1) or 1..devices+1 per dim. (cases,
    failures)."""
    cases, failures = 0, []
    for sz in sizes:
        mesh = Mesh(tuple(zip("xyz", sz, strict=False)))
        dev = mesh.num_devices
        for rank in range(1, max_rank + 1):
            top = 2 * dev + 1 if rank == 1 else dev + 1
            extents = list(itertools.product(range(1, top + 1), repeat=rank))
            for before in pending_layouts(mesh.names, rank):
                steps = itertools.chain(reductions(mesh.names, before),
                                        all_steps(mesh.names, before, permutes=False))
                n, bad = accepted_cases(mesh, before, steps, extents, _uneven_failure)
                cases += n
                failures += bad
    return cases, failures


def _uneven_failure(mesh: Mesh, shape: tuple[int, ...], before: Layout, after: Layout,
                    step) -> str | None:
    """pending_query's claim, evaluated at every device, valid index and member."""
    rank = len(shape)
    n_before, n_after = before.local_shape(mesh, shape), after.local_shape(mesh, shape)
    full = (mesh.num_devices,) + n_after
    coords = {a: v.reshape((-1,) + (1,) * rank) for a, v in device_coords(mesh).items()}
    index = [np.arange(n).reshape((1,) + tuple(n if e == d else 1 for e in range(rank)))
             for d, n in enumerate(n_after)]
    valid = valid_mask(mesh, shape, after)
    want = global_index(mesh, shape, after, coords, index)
    summed = summed_axes(step)
    for member in itertools.product(*[range(mesh.size(a)) for a in summed]):
        k = dict(zip(summed, member, strict=True))
        if summed:
            c2, i2 = addend(step, mesh, shape, before, after, coords, index, k, NUMPY)
            same = [(a, k[a] if a in summed else coords[a]) for a in mesh.names]
        else:
            c2, i2 = source(step, mesh, shape, before, after, coords, index, NUMPY)
            same = [(a, coords[a]) for a in before.sum]
        for a, v in same:
            if np.any(valid & (np.broadcast_to(c2[a], full) != np.broadcast_to(v, full))):
                return f"member {k}: the source's coordinate on {a} is not the addend's"
        for d in range(rank):
            w = np.broadcast_to(i2[d], full)
            if np.any(valid & ((w < 0) | (w >= n_before[d]))):
                return f"member {k}: a source index is out of range in dim {d}"
        got = global_index(mesh, shape, before, c2, i2)
        for d in range(rank):
            if np.any(valid & (np.broadcast_to(got[d], full)
                               != np.broadcast_to(want[d], full))):
                return f"member {k}: a valid element reads another global element"
    return None
