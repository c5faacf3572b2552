"""DTensor's nested chunks and the regrid between them and DESIGN §11's ceil blocks.

DTensor shards a tensor dim over mesh dims m1 < m2 < ... by torch.chunk'ing the extent
over m1 and each piece again over m2, and so on (torch 2.13,
`_utils._compute_local_shape_and_global_offset`: `Shard.local_shard_size_and_offset` on
the current local size, mesh dims left to right). The pieces tile the extent in
mixed-radix order, like §11's ceil blocks, and the largest is ⌈N/S⌉ in both, since
⌈⌈N/a⌉/b⌉ = ⌈N/(a·b)⌉; only the cuts differ when N is not divisible (N=10 over 2x4:
2,2,1,0 | 2,2,1,0 against 2,2,2,2,2,0,0,0). §11 cannot express the nested cuts (a
partial outer piece is re-chunked with a smaller chunk), so redist.torch moves the rows
between the two at the boundary: a *regrid* of one tensor dim inside each group of the
mesh dims that shard it, checked exactly here (every member receives exactly its block,
once, from members that hold those rows).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from redist.core.errors import RedistError
from redist.core.model.layout import Layout
from redist.core.model.mesh import Mesh

Span = tuple[int, int]


def nested_blocks(n: int, sizes: Sequence[int]) -> list[Span]:
    """DTensor's pieces of an extent n split over mesh dims of `sizes` (major first): each
    piece is torch.chunk'ed again by the next mesh dim. Block k in mixed-radix order."""
    pieces = [(0, n)]
    for s in sizes:
        nxt = []
        for lo, hi in pieces:
            c = -(-(hi - lo) // s) if hi > lo else 0
            nxt += [(min(lo + k * c, hi), min(lo + (k + 1) * c, hi)) for k in range(s)]
        pieces = nxt
    return pieces


def ceil_blocks(n: int, s: int) -> list[Span]:
    """DESIGN §11: block k of s holds [k·c, min((k+1)·c, n)), c = ceil(n / s)."""
    c = -(-n // s)
    return [(min(k * c, n), min((k + 1) * c, n)) for k in range(s)]


@dataclass(frozen=True)
class Regrid:
    """Rows of tensor dim `dim` move inside each group of the mesh dims `axes` (major
    first) from blocks `frm` to blocks `to` (member k in mixed-radix order holds frm[k]
    and must end with to[k]). `moves`: (sender, receiver, lo, hi) row ranges, checked
    when the regrid is made (`transfers`)."""

    dim: int
    axes: tuple[str, ...]
    frm: tuple[Span, ...]
    to: tuple[Span, ...]
    moves: tuple[tuple[int, int, int, int], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "moves", transfers(self.frm, self.to))


def _tiles(blocks: Sequence[Span], n: int) -> bool:
    at = 0
    for lo, hi in blocks:
        if lo != min(at, n) or hi < lo:
            return False
        at = hi
    return at == n


def transfers(frm: Sequence[Span], to: Sequence[Span]) -> tuple[tuple[int, int, int, int], ...]:
    """(sender, receiver, lo, hi) for every non-empty overlap of a held block and a needed
    block; raises unless both tile one extent and the receivers' pieces are exactly their
    blocks, each row once, each sent row held by its sender."""
    n = frm[-1][1] if frm else 0
    if len(frm) != len(to) or not _tiles(frm, n) or not _tiles(to, n):
        raise RedistError(f"regrid: {list(frm)} and {list(to)} do not tile one extent")
    out = []
    for j, (a, b) in enumerate(to):
        for k, (c, d) in enumerate(frm):
            lo, hi = max(a, c), min(b, d)
            if hi > lo:
                out.append((k, j, lo, hi))
    for j, (a, b) in enumerate(to):
        got = sorted((lo, hi) for k, r, lo, hi in out if r == j)
        at = a
        for lo, hi in got:
            if lo != at:
                raise RedistError(f"regrid: member {j} would miss or repeat row {at}")
            at = hi
        if at != b:
            raise RedistError(f"regrid: member {j} would miss rows [{at},{b})")
    if any(not (frm[k][0] <= lo and hi <= frm[k][1]) for k, _, lo, hi in out):
        raise RedistError("regrid: a member would send rows it does not hold")
    return tuple(out)


@lru_cache(maxsize=1024)
def regrids(mesh: Mesh, shape: tuple[int, ...], layout: Layout, to_dtensor: bool
            ) -> tuple[Regrid, ...]:
    """The tensor dims of `layout` whose DTensor pieces are not §11's ceil blocks, as
    regrids from DTensor's pieces to the ceil blocks (or back, `to_dtensor`)."""
    out = []
    for d, dim in enumerate(layout.dims):
        if len(dim) < 2:
            continue                          # one mesh dim: torch.chunk is the ceil block
        sizes = [mesh.size(a) for a in dim]
        nested = tuple(nested_blocks(shape[d], sizes))
        flat = tuple(ceil_blocks(shape[d], math.prod(sizes)))
        if nested != flat:
            out.append(Regrid(d, tuple(dim), flat, nested) if to_dtensor
                       else Regrid(d, tuple(dim), nested, flat))
    return tuple(out)


def group_devices(mesh: Mesh, axes: tuple[str, ...], device: int) -> list[int]:
    """The devices of `device`'s group on `axes`, in the mixed-radix order of their
    coordinates on `axes` (major first)."""
    c = dict(mesh.coords(device))
    out = []
    for k in range(math.prod(mesh.size(a) for a in axes)):
        rest = k
        for a in reversed(axes):
            c[a], rest = rest % mesh.size(a), rest // mesh.size(a)
        out.append(mesh.device(c))
    return out
