"""Meshes with symbolic axis sizes, and structural enumeration of layouts and steps.

The source maps (core/semantics.py) and the layout semantics only use +, *, and the
algebra's div/mod, so they run unchanged on a mesh whose sizes are z3 variables: the
proofs below are about that code, for all sizes at once.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import z3

from redist.core.model.layout import Layout
from redist.core.ops import (
    AllExchange,
    AllGather,
    AllPermute,
    AllSlice,
    AllToAll,
    Collective,
    reshape,
)
from redist.core.ops.common import global_index


@dataclass(frozen=True)
class SymbolicMesh:
    names: tuple[str, ...]

    def size(self, axis: str) -> z3.ArithRef:
        return z3.Int(f"size_{axis}")

    @property
    def axes(self) -> tuple[tuple[str, z3.ArithRef], ...]:
        return tuple((a, self.size(a)) for a in self.names)


@dataclass(frozen=True)
class StepInstance:
    """One step on symbolic sizes: the layouts either side, the shape, the local shapes,
    a symbolic device and dst index, and the hypotheses that bound them (every extent
    divisible: the divisible theorems' premise)."""
    mesh: SymbolicMesh
    before: Layout
    after: Layout
    shape: tuple[z3.ArithRef, ...]
    n_before: tuple[z3.ArithRef, ...]
    n_after: tuple[z3.ArithRef, ...]
    coords: dict[str, z3.ArithRef]
    index: list[z3.ArithRef]
    hyp: list[z3.BoolRef]

    def lands_on(self, c2: dict, i2) -> list[z3.BoolRef]:
        """The source index is inside the before block and holds the element wanted."""
        rank = self.before.rank
        ok = [z3.And(i2[d] >= 0, i2[d] < self.n_before[d]) for d in range(rank)]
        want = global_index(self.mesh, self.shape, self.after, self.coords, self.index)
        got = global_index(self.mesh, self.shape, self.before, c2, i2)
        return ok + [want[d] == got[d] for d in range(rank)]


def step_instance(names: tuple[str, ...], before: Layout, step) -> StepInstance:
    """A permute also assumes its typing rule's premise: the same shards per dim."""
    mesh = SymbolicMesh(names)
    after = reshape(step, before)
    rank = before.rank
    shape = tuple(z3.Int(f"N_{d}") for d in range(rank))
    hyp: list[z3.BoolRef] = [mesh.size(a) >= 1 for a in names]
    hyp += [n >= 1 for n in shape]
    for lay in (before, after):
        hyp += [shape[d] % lay.shards(mesh, d) == 0 for d in range(rank) if lay.dims[d]]
    if isinstance(step, AllPermute):
        hyp += [before.shards(mesh, d) == after.shards(mesh, d) for d in range(rank)]
    n_after = after.local_shape(mesh, shape)
    coords = {a: z3.Int(f"c_{a}") for a in names}
    index = [z3.Int(f"i_{d}") for d in range(rank)]
    hyp += [z3.And(coords[a] >= 0, coords[a] < mesh.size(a)) for a in names]
    hyp += [z3.And(index[d] >= 0, index[d] < n_after[d]) for d in range(rank)]
    return StepInstance(mesh, before, after, shape, before.local_shape(mesh, shape),
                        n_after, coords, index, hyp)


def all_layouts(names: tuple[str, ...], rank: int) -> Iterator[Layout]:
    """Every layout of these axes over `rank` dims (each axis replicated or in one dim,
    in every order)."""
    for where in itertools.product(range(-1, rank), repeat=len(names)):
        groups = [[a for a, w in zip(names, where, strict=True) if w == d]
                  for d in range(rank)]
        for orders in itertools.product(*[itertools.permutations(g) for g in groups]):
            yield Layout(tuple(tuple(o) for o in orders))


def all_steps(names: tuple[str, ...], before: Layout,
              permutes: bool = True, exchanges: bool = False) -> Iterator[Collective]:
    """Every structurally well-typed step from `before` (divisibility aside)."""
    rank = before.rank
    free = [a for a in names if a not in before.used_axes()]
    for where in itertools.product(range(-1, rank), repeat=len(free)):
        if all(w == -1 for w in where):
            continue
        groups = [[a for a, w in zip(free, where, strict=True) if w == d] for d in range(rank)]
        for orders in itertools.product(*[itertools.permutations(g) for g in groups]):
            yield AllSlice(tuple(tuple(o) for o in orders))
    for cut in itertools.product(*[range(len(d) + 1) for d in before.dims]):
        if any(cut):
            yield AllGather(tuple(d[len(d) - k:] if k else () for d, k in
                                  zip(before.dims, cut, strict=True)))
    for s in range(rank):
        for k in range(1, len(before.dims[s]) + 1):
            for t in range(rank):
                if t != s:
                    yield AllToAll(s, t, before.dims[s][len(before.dims[s]) - k:])
    if permutes:
        for target in all_layouts(names, rank):
            yield AllPermute(target)
    if exchanges:
        for target in all_layouts(names, rank):
            yield AllExchange(target)
