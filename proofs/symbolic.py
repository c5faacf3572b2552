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
from redist.core.ops import AllExchange, AllGather, AllPermute, AllSlice, AllToAll, Collective


@dataclass(frozen=True)
class SymbolicMesh:
    names: tuple[str, ...]

    def size(self, axis: str) -> z3.ArithRef:
        return z3.Int(f"size_{axis}")

    @property
    def axes(self) -> tuple[tuple[str, z3.ArithRef], ...]:
        return tuple((a, self.size(a)) for a in self.names)


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
