"""A model of the time a plan takes on MPI ranks, whose terms follow what the runtime does
(runtime/execute.py, reduce.py). Per communicating step, for the device that has most to do:

  seconds = latency[kind] · messages + seconds_per_byte[kind] · wire bytes
            + copy_seconds_per_byte · bytes copied locally
            + transpose_seconds_per_byte · bytes transposed locally
            + seconds_per_run[kind] · contiguous runs packed or unpacked
            + seconds_per_step

`messages` counts what the runtime waits for: the in-place steps (permute, all-to-all)
move their data through one chunk of scratch (`chunk_elements`, core/semantics/working.py,
the runtime's own size), so a rank hands off one chunk message after another, and their
number, not only their bytes, sets the time; a gather or an exchange posts one message
per peer; reductions count MPI calls times peers. `wire` is what the busiest device
receives; the local terms are the memmoves, compactions and block transposes the in-place
paths make, and the contiguous runs MPI's datatype engine walks where a step sends or
receives a strided box (a derived datatype: strided gathers, the exchange's subarrays).
Each kind of step (an op, or one of its runtime paths: a gather whose pieces are strided in
the output moves with derived datatypes) has its own latency and bandwidth; the local
constants and the fixed cost of a step (Python, buffer resizing) are shared.

`redist calibrate` fits the constants on the machine where jobs run and saves them; `plan`
and `run` read that file ($REDIST_COST_MODEL, default ~/.config/redist/costmodel.json).
Without one (or with one of an older format), defaults measured on a 2-core machine with
the PyPI MPICH (shared memory, 8 ranks) apply."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from redist.core.errors import RedistError
from redist.core.files import parse_json, read_text
from redist.core.model.problem import Problem
from redist.core.ops import (
    AllExchange,
    AllGather,
    AllPermute,
    AllReduce,
    AllSlice,
    AllToAll,
    Collective,
    ReduceScatter,
    group_size,
)
from redist.core.ops.all_exchange import InPlace, InSlots, in_place, in_slots
from redist.core.ops.reduce_scatter import split_contiguous
from redist.core.plans.plan import Plan
from redist.core.semantics.blocks import changed_count, missing_elements, used_mesh
from redist.core.semantics.working import chunk_elements

FORMAT = "redist.costmodel/2"
# Files of this format charged latency·(1 + log2 g) per step: their constants mean
# something else, so they are not read (the defaults apply until `redist calibrate`).
OLD_FORMATS = ("redist.costmodel/1",)
# Gathers whose members' blocks are strided in the output (several dims gathered, or one
# dim after a split one): MPI moves them with derived datatypes, measured ~4x slower per
# byte than contiguous pieces (gather-all against random-0, benchmarks/results).
STRIDED_GATHER = "all_gather_strided"
# Gathers of several dims at once: one Allgatherv of a many-dim subarray type (not merged
# into fewer dims as the one-dim pieces are), measured far slower per run.
GATHER_DIMS = "all_gather_dims"
OP_OF_KIND = {STRIDED_GATHER: "all_gather", GATHER_DIMS: "all_gather"}
# Kinds whose steps move derived datatypes (their runs are charged).
RUN_KINDS = (STRIDED_GATHER, GATHER_DIMS, "all_exchange")
KINDS = ("all_slice", "all_gather", STRIDED_GATHER, GATHER_DIMS, "all_to_all", "all_permute",
         "all_exchange", "reduce_scatter", "all_reduce")


def default_path() -> str:
    return os.environ.get("REDIST_COST_MODEL") or os.path.join(
        os.path.expanduser("~"), ".config", "redist", "costmodel.json")


@dataclass(frozen=True)
class Load:
    """What the model charges one step: the work of the device that has the most."""
    kind: str           # whose constants: an op, or a runtime path of one (STRIDED_GATHER)
    messages: int       # messages it waits for (chunk handoffs, peers, calls times peers)
    wire: int           # bytes it receives
    copies: int = 0     # bytes it moves locally (memmoves, compactions, packing)
    transposes: int = 0  # bytes of its block transposed in place through the chunk
    runs: int = 0       # contiguous runs of the derived datatypes it packs and unpacks
    steps: int = 1      # 0: the step returns at once (nothing changes)
    group: int = 1      # devices that talk to each other


@dataclass(frozen=True)
class CostModel:
    """Seconds per message and per wire byte per kind, and per locally copied and
    transposed byte (module docstring)."""
    latency: dict[str, float] = field(default_factory=lambda: {
        "all_slice": 0.0, "all_gather": 30e-6, STRIDED_GATHER: 30e-6, GATHER_DIMS: 30e-6,
        "all_to_all": 40e-6,
        "all_permute": 40e-6, "all_exchange": 60e-6, "reduce_scatter": 40e-6,
        "all_reduce": 40e-6})
    seconds_per_byte: dict[str, float] = field(default_factory=lambda: {
        "all_slice": 0.0, "all_gather": 0.35e-9, STRIDED_GATHER: 1.4e-9, GATHER_DIMS: 1.4e-9,
        "all_to_all": 0.55e-9, "all_permute": 0.45e-9, "all_exchange": 0.6e-9,
        "reduce_scatter": 0.6e-9, "all_reduce": 0.6e-9})
    copy_seconds_per_byte: float = 0.2e-9
    source: str = "defaults (no calibration file)"
    transpose_seconds_per_byte: float = 0.6e-9
    # per kind: MPICH walks a many-dim subarray far slower per run than a 2-dim one
    seconds_per_run: dict[str, float] = field(default_factory=lambda: {
        k: 20e-9 if k in RUN_KINDS else 0.0 for k in KINDS})
    seconds_per_step: float = 0.2e-3

    def charge(self, load: Load) -> float:
        # A model made without the kind (by hand, in code) charges it as its op.
        kind = load.kind if load.kind in self.latency else OP_OF_KIND.get(load.kind, "")
        return (self.latency.get(kind, 0.0) * load.messages
                + self.seconds_per_byte.get(kind, 0.0) * load.wire
                + self.copy_seconds_per_byte * load.copies
                + self.transpose_seconds_per_byte * load.transposes
                + self.seconds_per_run.get(kind, 0.0) * load.runs
                + self.seconds_per_step * load.steps)

    def step_seconds(self, plan: Plan, k: int, before, after) -> float:
        load = step_load(plan, plan.steps[k], before, after)
        return 0.0 if load is None else self.charge(load)

    def seconds(self, plan: Plan) -> float:
        lays = plan.layouts()
        return sum(self.step_seconds(plan, k, lays[k], lays[k + 1])
                   for k in range(len(plan.steps)))

    def to_json(self) -> dict:
        return {"format": FORMAT, "latency": self.latency,
                "seconds_per_byte": self.seconds_per_byte,
                "copy_seconds_per_byte": self.copy_seconds_per_byte,
                "transpose_seconds_per_byte": self.transpose_seconds_per_byte,
                "seconds_per_run": self.seconds_per_run,
                "seconds_per_step": self.seconds_per_step,
                "source": self.source}


def chunk_messages(n: int, block: int) -> int:
    """Messages that move n elements through the scratch of an in-place step on a block
    of `block` elements: chunks of chunk_elements(block), at most the n (execute._swap)."""
    if n <= 0:
        return 0
    step = max(1, min(chunk_elements(block), n))
    return -(-n // step)


def box_runs(box: tuple[int, ...], within: tuple[int, ...]) -> int:
    """Contiguous runs of a box in a C-order array of shape `within`: one per index of
    the dims before the innermost dim the box does not span (0 for an empty box)."""
    if 0 in box:
        return 0
    k = len(box) - 1
    while k >= 0 and box[k] == within[k]:
        k -= 1
    return math.prod(box[:max(k, 0)])


def _slice(p: Problem, step: AllSlice, before, after) -> Load:
    # The kept sub-block is compacted to the start of the (handed-over) buffer.
    return Load("all_slice", 0, 0, copies=p.local_bytes(after))


def _gather(p: Problem, step: AllGather, before, after) -> Load:
    g = group_size(step, p.mesh)
    local = before.local_shape(p.mesh, p.shape)
    dims = [d for d, gone in enumerate(step.axes) if gone]
    strided = len(dims) > 1 or bool(dims and math.prod(local[:dims[0]]) > 1)
    lb = p.local_bytes(before)
    full = after.local_shape(p.mesh, p.shape)
    # One message per peer; this rank's block moves into its slot of the grown buffer;
    # strided slots are walked run by run, on the way out and in.
    runs = 2 * (g - 1) * box_runs(local, full) if strided else 0
    kind = GATHER_DIMS if len(dims) > 1 else STRIDED_GATHER if strided else "all_gather"
    return Load(kind, g - 1, (g - 1) * lb, copies=lb, group=g, runs=runs)


def _all_to_all(p: Problem, step: AllToAll, before, after) -> Load:
    """In place (execute._all_to_all_inplace): a block transpose into send order, g - 1
    pairwise swaps of a piece in chunk messages, a transpose into output order."""
    g = group_size(step, p.mesh)
    s, t = step.src_dim, step.dst_dim
    shape = list(before.local_shape(p.mesh, p.shape))
    piece_t = after.local_shape(p.mesh, p.shape)[t]
    shape[t] = g * piece_t                      # dst_dim held whole: padded to g pieces
    block = math.prod(shape)
    piece = block // g
    piece_shape = shape[:t] + [piece_t] + shape[t + 1:]
    # A transpose is a no-op where the pieces already lie in order (one row of them).
    passes = (math.prod(shape[:t]) > 1) + (math.prod(piece_shape[:s]) > 1)
    wire = (g - 1) * piece * p.itemsize
    # Each swap ends with a memmove of what it received (one chunk down).
    return Load("all_to_all", (g - 1) * chunk_messages(piece, block), wire, copies=wire,
                transposes=passes * block * p.itemsize, group=g)


def _permute(p: Problem, step: AllPermute, before, after) -> Load:
    """In place (execute._permute): the block in chunk messages, a memmove after."""
    if not changed_count(p.mesh, before, after):
        return Load("all_permute", 0, 0, group=p.mesh.num_devices, steps=0)
    n = math.prod(before.local_shape(p.mesh, p.shape))
    lb = p.local_bytes(before)
    return Load("all_permute", chunk_messages(n, n), lb, copies=lb, group=p.mesh.num_devices)


def _exchange_peers(p: Problem, before, after, own: bool) -> int:
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


def _exchange(p: Problem, step: AllExchange, before, after) -> Load:
    """One Alltoallw (execute._exchange): a message per peer, derived datatypes, the part
    the device already holds copied locally; in place where core.ops.all_exchange.in_place
    says so (_exchange_in_place)."""
    sub, _ = used_mesh(p.mesh, before, after)          # the same maximum, fewer devices
    missing = missing_elements(sub, p.shape, before, after)
    need = math.prod(after.local_shape(p.mesh, p.shape))
    most = int(missing.max())
    ip = in_place(p.mesh, p.shape, before, after)
    if ip is not None:
        return _exchange_in_place(p, ip, most)
    ins = in_slots(p.mesh, p.shape, before, after)
    if ins is not None:
        return _exchange_in_slots(p, ins, most)
    peers = _exchange_peers(p, before, after, most < need) if most else 0
    cb, ca = before.local_shape(p.mesh, p.shape), after.local_shape(p.mesh, p.shape)
    piece = tuple(min(b, a) for b, a in zip(cb, ca, strict=True))   # what one peer sends
    return Load("all_exchange", peers, most * p.itemsize,
                copies=(need - int(missing.min())) * p.itemsize, group=p.mesh.num_devices,
                runs=peers * (box_runs(piece, cb) + box_runs(piece, ca)))


def _exchange_in_place(p: Problem, ip: InPlace, most: int) -> Load:
    """In place (execute._exchange_in_place), the in-place all-to-all's mechanics:
    piece-order transposes, one swap of a piece in chunk messages per piece the device
    lacks, a memmove per swap, the pieces permuted into order. Its kind stays
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


def _exchange_in_slots(p: Problem, ins: InSlots, most: int) -> Load:
    """In slots (execute._exchange_in_slots): the box of needed pieces compacted and
    grouped, whole pieces received (the busiest receiver's count) in rounds, the pieces
    permuted into order and transposed into the after block. Its kind stays
    all_exchange."""
    piece = math.prod(ins.piece)
    moved = max(sum(k != j for j, k in enumerate(lands)) for lands in
                ins.schedule.lands.tolist())
    def passes(q) -> int:                       # elements transposed by _piece_order
        return sum(math.prod(ins.piece[:d]) > 1 and q[d] > 1 and math.prod(q) * piece
                   for d in range(len(q)))
    boxes = [tuple(q) for q in ins.box_q.tolist()]
    # The box of needed pieces compacted (where it is not the whole block), then grouped.
    compacted = max(math.prod(q) * piece * (q != ins.before) for q in boxes)
    return Load("all_exchange", ins.schedule.most_received,
                most * p.itemsize, copies=(moved * piece + compacted) * p.itemsize,
                transposes=(max(passes(q) for q in boxes) + passes(ins.after)) * p.itemsize,
                group=p.mesh.num_devices)


def _reduce_scatter(p: Problem, step: ReduceScatter, before, after) -> Load:
    """In place (runtime/reduce.py): one Reduce_scatter_block where the pieces lie in
    group order, else one per chunk (each part of every piece packed into the scratch)."""
    g = group_size(step, p.mesh)
    n_after = after.local_shape(p.mesh, p.shape)
    out = math.prod(n_after)
    wire = (g - 1) * out * p.itemsize
    if split_contiguous(tuple(n_after), step.axes):
        return Load("reduce_scatter", g - 1, wire, group=g)
    per_call = max(1, chunk_elements(math.prod(before.local_shape(p.mesh, p.shape))) // g)
    calls = -(-out // per_call)
    return Load("reduce_scatter", calls * (g - 1), wire,
                copies=p.local_bytes(before) + p.local_bytes(after), group=g)


def _all_reduce(p: Problem, step: AllReduce, before, after) -> Load:
    g = group_size(step, p.mesh)
    rounds = 2 * math.ceil(math.log2(g)) if g > 1 else 0
    return Load("all_reduce", rounds, 2 * (g - 1) * p.local_bytes(before) // g, group=g)


# One function per op (core/ops).
LOADS: dict[str, Callable[[Problem, Any, Any, Any], Load]] = {
    "all_slice": _slice,
    "all_gather": _gather,
    "all_to_all": _all_to_all,
    "all_permute": _permute,
    "all_exchange": _exchange,
    "reduce_scatter": _reduce_scatter,
    "all_reduce": _all_reduce,
}


def step_load(plan: Plan, step: Collective, before, after) -> Load:
    return LOADS[step.op](plan.problem, step, before, after)


def busiest_bytes(plan: Plan, step: Collective, before, after) -> int:
    """Bytes received by the device that receives the most in this step."""
    return step_load(plan, step, before, after).wire


def load(path: str | None = None) -> CostModel:
    """The calibrated model if the file exists (and is of this format), else the
    defaults."""
    path = path or default_path()
    if not os.path.exists(path):
        return CostModel()
    doc = parse_json(read_text(path, 1 << 20, "cost model"), "cost model")
    if isinstance(doc, dict) and doc.get("format") in OLD_FORMATS:
        return CostModel(source=f"defaults ({path} is of an older format: run "
                                "`redist calibrate` again)")
    return from_json(doc, f"cost model {path}", f"calibrated ({path})")


def from_json(doc: object, where: str, source: str) -> CostModel:
    """A cost model from its JSON form (a file, or calibrate's report), every constant a
    finite number >= 0, or a one-line RedistError naming `where`."""
    def number(v: object) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"constant {v!r:.40} is not a number")
        return float(v)
    try:
        if not isinstance(doc, dict):
            raise ValueError("the document must be a JSON object")
        if doc.get("format") != FORMAT:
            raise ValueError(f"unknown format {doc.get('format')!r:.60}")
        lat = {k: number(doc["latency"][k]) for k in KINDS}
        spb = {k: number(doc["seconds_per_byte"][k]) for k in KINDS}
        copy = number(doc["copy_seconds_per_byte"])
        trans = number(doc["transpose_seconds_per_byte"])
        run = {k: number(doc["seconds_per_run"][k]) for k in KINDS}
        per_step = number(doc["seconds_per_step"])
        if not all(math.isfinite(v) and v >= 0
                   for v in [*lat.values(), *spb.values(), copy, trans, *run.values(),
                             per_step]):
            raise ValueError("constants must be finite and >= 0")
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as e:
        what = f"missing {e}" if isinstance(e, KeyError) else str(e)
        raise RedistError(f"{where}: {what}") from None
    return CostModel(lat, spb, copy, source, trans, run, per_step)


def save(model: CostModel, path: str | None = None) -> str:
    path = path or default_path()
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(model.to_json(), f, indent=1)
    except (OSError, ValueError) as e:      # a full disk, /dev/full, a NUL in the path
        raise RedistError(f"cannot save the cost model to {path!r}: "
                          f"{getattr(e, 'strerror', None) or e}") from None
    return path
