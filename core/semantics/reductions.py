"""How a pending sum can be reduced first (DESIGN §14), and the lower bound of what any
plan must receive.

A *prefix* is the start of a normal-form plan on a pending src: slices of axes src
replicates and dst shards (they shrink what is reduced), then one reduce-scatter (each
reduced axis appended minor-most to a dim), then one all-reduce (the reduced axes no dim
takes). Synthesis tries each prefix and moves the rest with the sum-free search. The
lower bound (pending_lower_bound) counts what any plan must receive; for a pure
pending-to-sharded problem (dst = src with the pending axes in its dims) it is the
reduce-scatter bound (G−1)/G·L per device itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from redist.core.model.layout import Layout
from redist.core.model.problem import Problem
from redist.core.semantics.blocks import block_ids, block_ranges, device_coords

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
    options = [sliced_all, ((),) * rank]
    # Replicas of an addend each reducing their own copy move it once per replica: slicing
    # the axes src and dst both replicate first (into a dim no reduced axis goes to, the
    # widest) lets them reduce disjoint parts; the rest of the way gathers them back.
    replicas = tuple(a for a in free if dst.dim_of(a) is None and a not in dst.sum)
    aims = {dst.dim_of(a) for a in todo}
    local = src.local_shape(p.mesh, p.shape)
    spare = sorted(range(rank), key=lambda d: (d in aims, -local[d]))
    for base in list(options) if replicas else ():
        e = next((d for d in spare if _nests(p, src, d, base[d] + replicas)), None)
        if e is not None:
            options.append(tuple(s + replicas if d == e else s for d, s in enumerate(base)))
    for sliced in dict.fromkeys(options):
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


def pending_lower_bound(problem: Problem) -> int:
    """A lower bound of what any plan must receive when it reduces pending axes (module
    doc): the largest of three counts, in valid elements, each counting received values
    one per element (a value is a partial sum of one global element).

    - receive: every device must receive at least one value for every element of its dst
      block (its sum has addends it does not hold);
    - send: a contribution (an addend u of an element g) is held by the devices of a class
      (same src block, same coordinates u; they differ in replicated axes only); unless
      one of them holds g at the end, one of them must send it, and each send is the first
      to leave at most one class. Per class: its block's elements minus the elements its
      members hold at the end, counted with overlaps (so at most the true number);
    - connect (`_connect_count`): per element, the messages carrying it must connect every
      device that holds its sum at the end with a holder of each of its addends.
    For a pure pending-to-sharded problem the connect count is what slicing the
    replicated axes, one reduce-scatter and gathering them back moves."""
    p = problem
    mesh, shape = p.mesh, p.shape
    receive = int(_valid(p, p.dst).sum())
    lo_s, hi_s = block_ranges(mesh, shape, p.src)
    lo_d, hi_d = block_ranges(mesh, shape, p.dst)
    overlap = np.prod(np.maximum(np.minimum(hi_s, hi_d) - np.maximum(lo_s, lo_d), 0), axis=1)
    held = np.prod(hi_s - lo_s, axis=1)
    coords = device_coords(mesh)
    key = np.concatenate([block_ids(mesh, p.src)] + [coords[a].reshape(-1, 1)
                                                      for a in p.src.sum], axis=1)
    _, cls = np.unique(key, axis=0, return_inverse=True)
    cls = cls.reshape(-1)
    kept = np.bincount(cls, weights=overlap.astype(np.float64))
    first = np.zeros(kept.size, dtype=np.int64)
    first[cls[::-1]] = np.arange(cls.size)[::-1]          # one member per class
    send = int(np.maximum(held[first] - kept.round().astype(np.int64), 0).sum())
    return max(send, receive, _connect_count(p, int(overlap.sum()))) * p.itemsize


def _connect_count(p: Problem, overlap_sum: int) -> int:
    """Per element g and coordinates v on the pending axes dst keeps: the devices that
    hold g's sum over v at the end (|D| of them) must each get every addend u (u's
    coordinates on the kept axes = v; G of them), and an addend travels only in messages
    carrying g. Those messages join D and at least one holder of each addend into one
    connected graph: with the addends none of D holds, |D| + G − (addends D holds) nodes,
    so one fewer messages at least. D holds addends only where some device's src and dst
    blocks both contain g (then those of the reduced axes outside dst's dims: c); the
    elements where that is so are the devices' src∩dst overlaps, counted once per
    combination of coordinates on the axes either layout shards by."""
    mesh = p.mesh
    size = lambda axes: math.prod(mesh.size(a) for a in axes)  # noqa: E731
    sharded_s, sharded_d = set(p.src.used_axes()), set(p.dst.used_axes())
    reduced = [a for a in p.src.sum if a not in p.dst.sum]
    kept = size(p.dst.sum)
    holders = mesh.num_devices // (size(sharded_d) * kept)
    g = size(reduced)
    c = size(a for a in reduced if a not in sharded_d)
    both = overlap_sum // (mesh.num_devices // size(sharded_s | sharded_d))
    return kept * ((holders + g - 1) * math.prod(p.shape) - c * both)
