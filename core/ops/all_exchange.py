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
from redist.core.ops.load import EXCHANGE_SLOTS, Load, box_runs, chunk_messages
from redist.core.semantics.algebra import NUMPY, Algebra
from redist.core.semantics.blocks import device_coords, missing_elements, used_mesh
from redist.core.semantics.rounds import Schedule, schedule
from redist.core.semantics.slots import SlotSchedule, slot_schedule
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
    found = _pieces(mesh, shape, before, after)
    if found is None:
        return None
    m, qb, qa, dev, piece = found
    q, ndev = math.prod(qb), mesh.num_devices
    if math.prod(qa) != q:
        return None                                         # local sizes differ
    key = np.sort((dev * q + piece).reshape(-1))
    if not np.array_equal(key, np.arange(ndev * q)):
        return None                                         # fan-out: some piece twice
    return InPlace(m, qb, qa, dev, piece)


def _pieces(mesh: Mesh, shape: tuple[int, ...], before: Layout, after: Layout
            ) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], np.ndarray,
                       np.ndarray] | None:
    """The exchange cut into pieces (extent gcd(before, after) per dim), where no sums are
    pending and no block is padded: (piece extents, pieces per dim of a before block and
    of an after block, per device and after-piece its source device and before-piece);
    None elsewhere or beyond MAX_IN_PLACE_PAIRS."""
    if before.sum or after.sum or before.rank != len(shape):
        return None
    nb, na = before.local_shape(mesh, shape), after.local_shape(mesh, shape)
    for lay, n in ((before, nb), (after, na)):
        if any(n[d] * math.prod(mesh.size(a) for a in lay.dims[d]) != shape[d]
               for d in range(len(shape))):
            return None                                     # padded (uneven) blocks
    if math.prod(nb) == 0 or math.prod(na) == 0:
        return None
    m = tuple(math.gcd(b, a) for b, a in zip(nb, na, strict=True))
    qb = tuple(b // e for b, e in zip(nb, m, strict=True))
    qa = tuple(a // e for a, e in zip(na, m, strict=True))
    q, ndev = math.prod(qa), mesh.num_devices
    if ndev * max(q, math.prod(qb)) > MAX_IN_PLACE_PAIRS:
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
    dev.flags.writeable = piece.flags.writeable = False
    return m, qb, qa, dev, piece


@dataclass(frozen=True, eq=False)
class InSlots:
    """An exchange between blocks of different sizes (or with pieces sent to several
    devices) that runs in one buffer of max(before, after) blocks' size
    (runtime/execute._exchange_in_slots): both blocks cut into pieces of extent `piece`
    (`before` / `after` pieces per dim), the buffer into `schedule.cap` piece slots, every
    message received into a slot free at the time (core/semantics/slots.py). A device
    first compacts the box of its before-pieces that some device needs (the smallest box
    of the piece grid around them) to the start of the buffer: its pieces, grouped, take
    the first slots in row-major order, and pieces nobody needs from it are never
    moved."""
    piece: tuple[int, ...]
    before: tuple[int, ...]
    after: tuple[int, ...]
    schedule: SlotSchedule
    box_lo: np.ndarray      # per device: the first piece (per dim) of the box it keeps
    box_q: np.ndarray       # per device: the box's pieces per dim (0s: it needs none)
    scratch: bool           # whether any device needs the chunk (`needs_scratch`)

    @property
    def buffer(self) -> int:
        """Elements of the one buffer: max(before, after) block."""
        return self.schedule.cap * math.prod(self.piece)


def in_slots(mesh: Mesh, shape: tuple[int, ...], before: Layout,
             after: Layout) -> InSlots | None:
    """Whether the exchange before -> after, outside the equal-size class (`in_place`),
    runs in one buffer of max(L_before, L_after) plus one chunk: no pending sums, no
    padding, and the slot schedule finds, round after round, a free slot for some pending
    message (core/semantics/slots.slot_schedule: receives only into free slots, so no live
    byte is overwritten). The one rule that both the figure and the runtime read."""
    if in_place(mesh, shape, before, after) is not None:
        return None
    return _in_slots(mesh, tuple(shape), before, after)


@lru_cache(maxsize=256)
def _in_slots(mesh: Mesh, shape: tuple[int, ...], before: Layout,
              after: Layout) -> InSlots | None:
    found = _pieces(mesh, shape, before, after)
    if found is None:
        return None
    m, qb, qa, dev, piece = found
    ndev, nq = mesh.num_devices, math.prod(qb)
    needed = np.zeros((ndev, nq), bool)
    needed[dev.reshape(-1), piece.reshape(-1)] = True
    grid = np.stack(np.unravel_index(np.arange(nq), qb), axis=1)       # (nq, rank)
    lo = np.zeros((ndev, len(qb)), np.int64)
    q = np.zeros((ndev, len(qb)), np.int64)
    start = np.full((ndev, nq), -1, np.int64)
    for u in range(ndev):
        mine = grid[needed[u]]
        if not len(mine):
            continue
        lo[u] = mine.min(axis=0)
        q[u] = mine.max(axis=0) - lo[u] + 1
        if any(math.prod(m[:d]) > 1 and q[u][d] > 1 for d in range(len(qb))):
            lo[u], q[u] = 0, qb       # a box whose pieces need grouping: the whole block
        inside = np.all((grid >= lo[u]) & (grid < lo[u] + q[u]), axis=1)
        start[u, inside] = np.ravel_multi_index(tuple((grid[inside] - lo[u]).T), tuple(q[u]))
    sched = slot_schedule(dev, piece, start, max(nq, math.prod(qa)))
    if sched is None:
        return None
    for a in (lo, q):
        a.flags.writeable = False
    return InSlots(m, qb, qa, sched, lo, q, any(
        needs_scratch(m, tuple(q[u]), qa, sched.lands[u].tolist(), sched.cap)
        for u in range(ndev)))


def needs_scratch(piece: tuple[int, ...], box: tuple[int, ...], after: tuple[int, ...],
                  lands: list[int], cap: int) -> bool:
    """Whether a device of an exchange in slots moves data through the chunk: a
    piece-order transpose of its box or of its after block (execute._piece_order: a dim
    with pieces to move past), or a slot permutation where the buffer has no slot to spare
    (execute._arrange_slots rotates the others through a free slot: one in the cycle, or
    one past the after block)."""
    def transposes(q) -> bool:
        return any(math.prod(piece[:d]) > 1 and q[d] > 1 for d in range(len(q)))
    if transposes(box) or transposes(after):
        return True
    return cap == len(lands) and any(k != j for j, k in enumerate(lands))


def slot_cycles(lands: list[int], cap: int) -> tuple[list[list[int]], list[int | None]]:
    """The slot permutation that puts after-piece j (in slot lands[j]) into slot j, free
    slots filling the rest: its cycles (each listed from its start, where the hole is
    made), and per cycle a free slot in it (None: none, it needs the chunk)."""
    taken = set(lands)
    order = lands + [k for k in range(cap) if k not in taken]
    free = set(range(cap)) - taken
    seen, cycles, holes = [False] * cap, [], []
    for first in range(cap):
        if seen[first] or order[first] == first:
            continue
        cyc, k = [], first
        while not seen[k]:
            seen[k] = True
            cyc.append(k)
            k = order[k]
        hole = next((k for k in cyc if k in free), None)
        if hole is not None:          # start at the free slot: its data is needed nowhere
            i = cyc.index(hole)
            cyc = cyc[i:] + cyc[:i]
        cycles.append(cyc)
        holes.append(hole)
    return cycles, holes


def holds_one_buffer(mesh: Mesh, shape: tuple[int, ...], before: Layout,
                     after: Layout) -> bool:
    """Whether the exchange runs in one buffer (the larger block) plus one chunk, in
    place or in slots, rather than as one Alltoallw holding input and output."""
    return (in_place(mesh, shape, before, after) is not None
            or in_slots(mesh, shape, before, after) is not None)


def working_bytes(problem: Problem, step: AllExchange, before: Layout, after: Layout) -> int:
    """In place (`in_place`): the block + one chunk; in slots (`in_slots`): the larger
    block + one chunk (none where no device needs it); else input + output (one
    Alltoallw)."""
    lb = math.prod(before.local_shape(problem.mesh, problem.shape))
    la = math.prod(after.local_shape(problem.mesh, problem.shape))
    if in_place(problem.mesh, problem.shape, before, after) is not None:
        return (lb + chunk_elements(lb)) * problem.itemsize
    ins = in_slots(problem.mesh, problem.shape, before, after)
    if ins is not None:
        big = max(lb, la)
        return (big + chunk_elements(big) * ins.scratch) * problem.itemsize
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
    `in_place` says so (_load_in_place), in slots where `in_slots` does (_load_in_slots)."""
    sub, _ = used_mesh(p.mesh, before, after)          # the same maximum, fewer devices
    missing = missing_elements(sub, p.shape, before, after)
    need = math.prod(after.local_shape(p.mesh, p.shape))
    most = int(missing.max())
    ip = in_place(p.mesh, p.shape, before, after)
    if ip is not None:
        return _load_in_place(p, ip, most)
    ins = in_slots(p.mesh, p.shape, before, after)
    if ins is not None:
        return _load_in_slots(p, ins, most)
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


def _load_in_slots(p: Problem, ins: InSlots, most: int) -> Load:
    """In slots (runtime/execute.py _exchange_in_slots), its own kind (EXCHANGE_SLOTS):
    the buffer grown to the larger block (mremap: its new pages zero-filled by the kernel
    as they are first touched), the box of needed pieces compacted and grouped, whole
    pieces received (the busiest receiver's count) in rounds, the pieces permuted into
    order and transposed into the after block."""
    piece = math.prod(ins.piece)
    moved = max(sum(k != j for j, k in enumerate(lands)) for lands in
                ins.schedule.lands.tolist())

    def passes(q) -> int:                       # elements transposed by _piece_order
        return sum(math.prod(ins.piece[:d]) > 1 and q[d] > 1 and math.prod(q) * piece
                   for d in range(len(q)))
    boxes = [tuple(q) for q in ins.box_q.tolist()]
    # The box of needed pieces compacted (where it is not the whole block), then grouped.
    compacted = max(math.prod(q) * piece * (q != ins.before) for q in boxes)
    grown = ins.buffer - math.prod(ins.before) * piece        # zero-filled by the resize
    return Load(EXCHANGE_SLOTS, ins.schedule.most_received, most * p.itemsize,
                copies=(moved * piece + compacted + max(0, grown)) * p.itemsize,
                transposes=(max(passes(q) for q in boxes) + passes(ins.after)) * p.itemsize,
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
