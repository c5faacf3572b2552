"""How a pending sum can be reduced first (DESIGN §14), and the lower bound that follows.

A *prefix* is the start of a normal-form plan on a pending src: slices of axes src
replicates and dst shards (they shrink what is reduced), then one reduce-scatter (each
reduced axis appended minor-most to a dim), then one all-reduce (the reduced axes no dim
takes). Synthesis tries each prefix and moves the rest with the sum-free search; the lower
bound of a pending problem is the least, over the same prefixes, of the prefix's reduction
bytes at their bandwidth-optimal figures ((G−1)/G·L and 2(G−1)/G·L per device) plus what
must still cross the network from the prefix's end to dst (the sum-free lower bound).
For a pure pending-to-sharded problem (dst = src with the pending axes in its dims) that
is the reduce-scatter bound itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from redist.core.model.layout import Layout
from redist.core.model.problem import Problem
from redist.core.semantics.blocks import block_ranges, missing_elements

PerDim = tuple[tuple[str, ...], ...]
MAX_PREFIXES = 64


@dataclass(frozen=True)
class Prefix:
    sliced: PerDim            # all_slice axes per dim (before the reductions)
    scattered: PerDim         # reduce_scatter axes per dim
    reduced: tuple[str, ...]  # all_reduce axes

    def layouts(self, src: Layout) -> tuple[Layout, Layout, Layout]:
        """After the slices, after the reduce-scatter, after the all-reduce."""
        a = Layout(tuple(d + s for d, s in zip(src.dims, self.sliced, strict=True)), src.sum)
        gone = {x for dim in self.scattered for x in dim}
        b = Layout(tuple(d + s for d, s in zip(a.dims, self.scattered, strict=True)),
                   tuple(x for x in a.sum if x not in gone))
        c = Layout(b.dims, tuple(x for x in b.sum if x not in self.reduced))
        return a, b, c


def _valid(problem: Problem, layout: Layout) -> np.ndarray:
    lo, hi = block_ranges(problem.mesh, problem.shape, layout)
    return np.prod(hi - lo, axis=1)


def _nests(problem: Problem, layout: Layout, d: int, axes: tuple[str, ...]) -> bool:
    local = layout.local_shape(problem.mesh, problem.shape)[d]
    g = math.prod(problem.mesh.size(a) for a in axes)
    return local % g == 0 or local >= problem.shape[d]


def prefixes(problem: Problem) -> list[Prefix]:
    """The prefixes worth trying: with and without the slices; each reduced axis that dst
    shards scattered onto its dst dim where it nests (else all-reduced), or else onto the
    largest dim it nests in, or every reduced axis all-reduced."""
    p = problem
    src, dst = p.src, p.dst
    todo = [a for a in src.sum if a not in dst.sum]
    rank = src.rank
    free = [a for a in p.mesh.names if src.dim_of(a) is None and a not in src.sum]
    sliced_all = tuple(tuple(a for a in dst.dims[d] if a in free) for d in range(rank))
    out: list[Prefix] = []
    for sliced in dict.fromkeys((sliced_all, ((),) * rank)):
        ok = all(not s or _nests(p, src, d, s) for d, s in enumerate(sliced))
        if not ok:
            continue
        mid = Layout(tuple(d + s for d, s in zip(src.dims, sliced, strict=True)), src.sum)
        local = mid.local_shape(p.mesh, p.shape)
        widest = sorted(range(rank), key=lambda d: -local[d])
        for mode in ("dst", "scatter", "reduce"):
            per: list[list[str]] = [[] for _ in range(rank)]
            rest: list[str] = []
            for a in todo:
                d = None if mode == "reduce" else dst.dim_of(a)
                if d is not None and not _nests(p, mid, d, tuple(per[d]) + (a,)):
                    d = None
                if d is None and mode == "scatter":
                    d = next((e for e in widest if _nests(p, mid, e, tuple(per[e]) + (a,))),
                             None)
                if d is not None and _nests(p, mid, d, tuple(per[d]) + (a,)):
                    per[d].append(a)
                else:
                    rest.append(a)
            # within a dim, dst's order
            order = {a: i for dim in dst.dims for i, a in enumerate(dim)}
            scattered = tuple(tuple(sorted(x, key=lambda a: order.get(a, len(order))))
                              for x in per)
            cand = Prefix(sliced, scattered, tuple(rest))
            if cand not in out:
                out.append(cand)
    return out[:MAX_PREFIXES]


def prefix_bytes(problem: Problem, prefix: Prefix) -> int:
    """The prefix's reduction bytes at their bandwidth-optimal figures (valid elements)."""
    p = problem
    _, scattered, reduced = prefix.layouts(p.src)
    out = 0
    g = math.prod(p.mesh.size(a) for dim in prefix.scattered for a in dim)
    if g > 1:
        out += (g - 1) * int(_valid(p, scattered).sum())
    g = math.prod(p.mesh.size(a) for a in prefix.reduced)
    if g > 1:
        out += int((2 * (g - 1) * _valid(p, reduced) // g).sum())
    return out * p.itemsize


def pending_lower_bound(problem: Problem) -> int:
    """The least over the prefixes of their reduction bytes plus the sum-free lower bound
    from their end to dst (module doc)."""
    p = problem
    best = None
    for prefix in prefixes(p):
        end = prefix.layouts(p.src)[2]
        move = int(sum(missing_elements(p.mesh, p.shape, end, p.dst).tolist())) * p.itemsize
        total = prefix_bytes(p, prefix) + move
        best = total if best is None else min(best, total)
    return best or 0

