"""`all_exchange` (DESIGN §2, the MPI extension): any layout of the same array, one
Alltoallv/Alltoallw over all devices, every element sent once by its canonical holder.
Not portable (XLA, NCCL and TPUs have no general exchange). Bytes received = the bytes of
each new block its old block lacks: the lower bound."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any

import numpy as np

from redist.core.model.layout import Layout
from redist.core.model.mesh import Mesh
from redist.core.model.problem import Problem
from redist.core.ops.common import (
    Coords,
    Index,
    OpRule,
    check_target,
    describe_target,
    digits,
    layout_from_json,
    layout_to_json,
    map_target,
    mixed_radix,
    no_bytes,
    pin_nothing,
    received_bytes,
    retarget,
    smt_target,
)
from redist.core.ops.load import Load, box_runs, chunk_messages
from redist.core.semantics.algebra import NUMPY, Algebra
from redist.core.semantics.blocks import device_coords, missing_elements, used_mesh
from redist.core.semantics.rounds import Schedule, schedule
from redist.core.semantics.working import chunk_elements
from redist.core.smt import symvars as V


@dataclass(frozen=True)
class AllExchange:
    """The MPI extension (DESIGN §2): any layout, one Alltoallv over all devices, every
    element sent once by its canonical holder. Not portable (no XLA/NCCL equivalent)."""
    layout: Layout
    op = "all_exchange"


def check_extents(step: AllExchange, mesh: Mesh, shape: tuple[int, ...], before: Layout,
                  after: Layout, show: Any) -> None:
    check_target(step, mesh, shape, after)


def source(step: AllExchange, mesh: Mesh, shape: tuple[int, ...], before: Layout,
           after: Layout, coords: Coords, index: Index, alg: Algebra) -> tuple[Coords, Index]:
    # Element by element: the block holding global index g before is g // c_before; its
    # canonical holder as for a permute (our own coordinates on the axes replicated
    # before, so a device that held the element is its own source).
    n_before = before.local_shape(mesh, shape)
    n_after = after.local_shape(mesh, shape)
    src_c, src_i = dict(coords), list(index)
    for d in range(after.rank):
        g = mixed_radix(mesh, after.dims[d], coords) * n_after[d] + index[d]
        src_c.update(digits(mesh, before.dims[d], alg.div(g, n_before[d]), alg))
        src_i[d] = alg.mod(g, n_before[d])
    return src_c, src_i


def volume(problem: Problem, step: AllExchange, before: Layout, after: Layout,
           valid: bool = True) -> int:
    return received_bytes(problem, before, after)


# The in-place exchange's schedule is computed over every (device, piece) pair; beyond
# this many it runs out of place (figure and runtime decide it by the same function).
MAX_IN_PLACE_PAIRS = 1 << 16


@dataclass(frozen=True, eq=False)
class InPlace:
    """An exchange that runs in place (runtime/execute._exchange_in_place): every block is
    cut into Q equal pieces (extent `piece` per dim: `before` pieces per dim of a before
    block, `after` of an after block), and the pieces' sources form a bijection. Per
    receiving device c and after-piece j (row-major over `after`): `src_device[c, j]` sends
    its before-piece `src_piece[c, j]` (row-major over `before`)."""
    piece: tuple[int, ...]
    before: tuple[int, ...]
    after: tuple[int, ...]
    src_device: np.ndarray
    src_piece: np.ndarray

    @property
    def pieces(self) -> int:
        return math.prod(self.before)

    @cached_property
    def rounds(self) -> Schedule:
        """Who sends which piece to whom, round by round (the same on every rank)."""
        return schedule(self.src_device, self.src_piece)


def in_place(mesh: Mesh, shape: tuple[int, ...], before: Layout,
             after: Layout) -> InPlace | None:
    """Whether the exchange before -> after runs in place, and its pieces: the one rule
    that both the figure (working_bytes) and the runtime read, so they cannot drift.
    In place iff no pending sums, every extent even under both layouts (no padding), equal
    local sizes, and every piece of a before block goes to exactly one device (the source
    map, read piece by piece, is a bijection: no fan-out to several holders of a
    replicated after block), so every device sends and receives the same Q equal pieces.
    Per dim the piece extent is gcd(before extent, after extent)."""
    return _in_place(mesh, tuple(shape), before, after)


@lru_cache(maxsize=256)
def _in_place(mesh: Mesh, shape: tuple[int, ...], before: Layout,
              after: Layout) -> InPlace | None:
    if before.sum or after.sum or before.rank != len(shape):
        return None
    nb, na = before.local_shape(mesh, shape), after.local_shape(mesh, shape)
    for lay, n in ((before, nb), (after, na)):
        if any(n[d] * math.prod(mesh.size(a) for a in lay.dims[d]) != shape[d]
               for d in range(len(shape))):
            return None                                     # padded (uneven) blocks
    if math.prod(nb) != math.prod(na) or math.prod(nb) == 0:
        return None
    m = tuple(math.gcd(b, a) for b, a in zip(nb, na, strict=True))
    qb = tuple(b // e for b, e in zip(nb, m, strict=True))
    qa = tuple(a // e for a, e in zip(na, m, strict=True))
    q, ndev = math.prod(qb), mesh.num_devices
    if ndev * q > MAX_IN_PLACE_PAIRS:
        return None
    # The source of the first element of every after-piece of every device, through the
    # op's own source map (as the simulator reads it): a whole before-piece, since pieces
    # are aligned in both layouts.
    r = len(shape)
    coords = {a: v.reshape(-1, 1) for a, v in device_coords(mesh).items()}
    j = np.arange(q).reshape(1, -1)
    index, rest = [], j
    for d in reversed(range(r)):
        index.append((rest % qa[d]) * m[d])
        rest = rest // qa[d]
    index.reverse()
    src_c, src_i = source(AllExchange(after), mesh, shape, before, after, coords, index,
                          NUMPY)
    dev = np.zeros((ndev, q), dtype=np.int64)
    for name, size in mesh.axes:
        dev = dev * size + np.broadcast_to(src_c[name], (ndev, q))
    piece = np.zeros((ndev, q), dtype=np.int64)
    for d in range(r):
        piece = piece * qb[d] + np.broadcast_to(src_i[d] // m[d], (ndev, q))
    key = np.sort((dev * q + piece).reshape(-1))
    if not np.array_equal(key, np.arange(ndev * q)):
        return None                                         # fan-out: some piece twice
    dev.flags.writeable = piece.flags.writeable = False
    return InPlace(m, qb, qa, dev, piece)


def working_bytes(problem: Problem, step: AllExchange, before: Layout, after: Layout) -> int:
    """In place (`in_place`): the block + one chunk; else input + output (one
    Alltoallw)."""
    lb = math.prod(before.local_shape(problem.mesh, problem.shape))
    la = math.prod(after.local_shape(problem.mesh, problem.shape))
    if in_place(problem.mesh, problem.shape, before, after) is not None:
        return (lb + chunk_elements(lb)) * problem.itemsize
    return (lb + la) * problem.itemsize


def _exchange_peers(p: Problem, before: Layout, after: Layout, own: bool) -> int:
    """Devices the busiest receiver hears from: per dim, the most source blocks one
    destination block overlaps (each sent by one canonical holder), multiplied; less one
    where it holds part of its new block itself (`own`: copied locally)."""
    out = 1
    for n, cb, ca in zip(p.shape, before.local_shape(p.mesh, p.shape),
                         after.local_shape(p.mesh, p.shape), strict=True):
        most = 1
        for lo in range(0, n, max(1, ca)):
            hi = min(n, lo + ca)
            most = max(most, (hi - 1) // max(1, cb) - lo // max(1, cb) + 1)
        out *= most
    return max(1, min(out - own, p.mesh.num_devices - 1))


def load(p: Problem, step: AllExchange, before: Layout, after: Layout) -> Load:
    """Cost model (runtime/execute.py _exchange): one Alltoallw, a message per peer,
    derived datatypes, the part the device already holds copied locally; in place where
    `in_place` says so (_load_in_place)."""
    sub, _ = used_mesh(p.mesh, before, after)          # the same maximum, fewer devices
    missing = missing_elements(sub, p.shape, before, after)
    need = math.prod(after.local_shape(p.mesh, p.shape))
    most = int(missing.max())
    ip = in_place(p.mesh, p.shape, before, after)
    if ip is not None:
        return _load_in_place(p, ip, most)
    peers = _exchange_peers(p, before, after, most < need) if most else 0
    cb, ca = before.local_shape(p.mesh, p.shape), after.local_shape(p.mesh, p.shape)
    piece = tuple(min(b, a) for b, a in zip(cb, ca, strict=True))   # what one peer sends
    return Load("all_exchange", peers, most * p.itemsize,
                copies=(need - int(missing.min())) * p.itemsize, group=p.mesh.num_devices,
                runs=peers * (box_runs(piece, cb) + box_runs(piece, ca)))


def _load_in_place(p: Problem, ip: InPlace, most: int) -> Load:
    """In place (runtime/execute.py _exchange_in_place), the in-place all-to-all's
    mechanics: piece-order transposes, one swap of a piece in chunk messages per piece the
    device lacks, a memmove per swap, the pieces permuted into order. Its kind stays
    all_exchange: calibrate's exchange cases run in place where the class holds."""
    block = math.prod(ip.piece) * ip.pieces
    piece = math.prod(ip.piece)
    # execute._piece_order: a transpose per dim with pieces to move past (both ways).
    passes = sum(math.prod(ip.piece[:d]) > 1 and q[d] > 1
                 for q in (ip.before, ip.after) for d in range(len(q)))
    wire = most * p.itemsize
    return Load("all_exchange", (most // piece) * chunk_messages(piece, block), wire,
                copies=wire + block * p.itemsize, transposes=passes * block * p.itemsize,
                group=p.mesh.num_devices)


RULE = OpRule(
    name="all_exchange", cls=AllExchange, portable=False,
    named_axes=lambda step: (), names=lambda step: step.layout.used_axes() + step.layout.sum,
    map_names=map_target, reshape=retarget, check_extents=check_extents, source=source,
    volume=volume, working_bytes=working_bytes, padding_bytes=no_bytes,
    to_json=layout_to_json, from_json=layout_from_json(AllExchange), describe=describe_target,
    # Any layout of the array: well-formedness is its whole symbolic rule.
    smt_kind=V.EXCHANGE, smt_rule=None, smt_extents=None, smt_listed=smt_target,
    smt_pin=pin_nothing, load=load)
