"""A model of the time a plan takes on MPI ranks: per communicating step, a latency that
grows with log2 of the group size plus the bytes the busiest device receives over a
bandwidth, both per kind of step (an op; a gather whose pieces are strided in the output
is a kind of its own). `redist calibrate` measures the constants on the
machine where jobs run and saves them; `plan` and `run` read that file
($REDIST_COST_MODEL, default ~/.config/redist/costmodel.json). Without one, defaults
measured on a 2-core machine with the PyPI MPICH (shared memory) apply."""

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
    AllToAll,
    Collective,
    ReduceScatter,
    group_size,
)
from redist.core.ops.all_exchange import in_place
from redist.core.plans.plan import Plan
from redist.core.semantics.blocks import changed_count, missing_elements, used_mesh

FORMAT = "redist.costmodel/1"
# Gathers whose members' blocks are strided in the output (several dims gathered, or one
# dim after a split one): MPI moves them with derived datatypes, measured ~4x slower per
# byte than contiguous pieces (gather-all against random-0, benchmarks/results).
STRIDED_GATHER = "all_gather_strided"


def default_path() -> str:
    return os.environ.get("REDIST_COST_MODEL") or os.path.join(
        os.path.expanduser("~"), ".config", "redist", "costmodel.json")


@dataclass(frozen=True)
class CostModel:
    """Seconds = latency[kind] * (1 + log2 g) + bytes received by the busiest device *
    seconds_per_byte[kind] (+ local copies at copy_seconds_per_byte)."""
    latency: dict[str, float] = field(default_factory=lambda: {
        "all_gather": 30e-6, "all_to_all": 40e-6, "all_permute": 20e-6, "all_exchange": 60e-6,
        "reduce_scatter": 40e-6, "all_reduce": 40e-6, STRIDED_GATHER: 30e-6})
    seconds_per_byte: dict[str, float] = field(default_factory=lambda: {
        "all_gather": 0.35e-9, "all_to_all": 0.55e-9, "all_permute": 0.45e-9,
        "all_exchange": 0.6e-9, "reduce_scatter": 0.6e-9, "all_reduce": 0.6e-9,
        STRIDED_GATHER: 1.4e-9})
    copy_seconds_per_byte: float = 0.2e-9
    source: str = "defaults (no calibration file)"

    def step_seconds(self, plan: Plan, k: int, before, after) -> float:
        step = plan.steps[k]
        load = step_load(plan, step, before, after)
        if load is None or load.busiest == 0:
            return 0.0
        # A model made without the kind (by hand, in code) charges it as its op.
        kind = load.kind if load.kind in self.latency else step.op
        return (self.latency[kind] * (1 + math.log2(max(load.group, 1)))
                + load.busiest * self.seconds_per_byte[kind]
                + load.copies * self.copy_seconds_per_byte)

    def seconds(self, plan: Plan) -> float:
        lays = plan.layouts()
        return sum(self.step_seconds(plan, k, lays[k], lays[k + 1])
                   for k in range(len(plan.steps)))

    def to_json(self) -> dict:
        return {"format": FORMAT, "latency": self.latency,
                "seconds_per_byte": self.seconds_per_byte,
                "copy_seconds_per_byte": self.copy_seconds_per_byte, "source": self.source}


@dataclass(frozen=True)
class Load:
    """What the model charges one communicating step."""
    busiest: int        # bytes received by the device that receives the most
    group: int          # devices that talk to each other (latency grows with log2 of it)
    copies: int         # bytes the runtime copies locally per device
    kind: str = ""      # the constants it is charged with: its op's unless set


def _gather(p: Problem, step: AllGather, before, after) -> Load:
    g = group_size(step, p.mesh)
    local = before.local_shape(p.mesh, p.shape)
    dims = [d for d, gone in enumerate(step.axes) if gone]
    strided = len(dims) > 1 or (dims and math.prod(local[:dims[0]]) > 1)
    return Load((g - 1) * p.local_bytes(before), g, p.local_bytes(after),
                STRIDED_GATHER if strided else "all_gather")


def _all_to_all(p: Problem, step: AllToAll, before, after) -> Load:
    g = group_size(step, p.mesh)
    lb = p.local_bytes(before)
    local = before.local_shape(p.mesh, p.shape)
    piece = lb // local[step.dst_dim] * after.local_shape(p.mesh, p.shape)[step.dst_dim]
    # In-place all-to-alls transpose twice locally.
    return Load((g - 1) * piece, g, 2 * p.local_bytes(after))


def _permute(p: Problem, step: AllPermute, before, after) -> Load:
    busiest = p.local_bytes(before) if changed_count(p.mesh, before, after) else 0
    return Load(busiest, p.mesh.num_devices, p.local_bytes(after))


def _exchange(p: Problem, step: AllExchange, before, after) -> Load:
    sub, _ = used_mesh(p.mesh, before, after)          # the same maximum, fewer devices
    busiest = int(missing_elements(sub, p.shape, before, after).max()) * p.itemsize
    if in_place(p.mesh, p.shape, before, after) is not None:
        # In place: pairwise swaps of pieces through one chunk between two local block
        # transposes, the in-place all-to-all's mechanics and constants.
        return Load(busiest, p.mesh.num_devices, 2 * p.local_bytes(after), "all_to_all")
    return Load(busiest, p.mesh.num_devices, p.local_bytes(after))     # unpacks once


def _reduce_scatter(p: Problem, step: ReduceScatter, before, after) -> Load:
    g = group_size(step, p.mesh)
    # G-1 pieces of the new block; packed piece by piece through the scratch
    return Load((g - 1) * p.local_bytes(after), g, p.local_bytes(before))


def _all_reduce(p: Problem, step: AllReduce, before, after) -> Load:
    g = group_size(step, p.mesh)
    return Load(2 * (g - 1) * p.local_bytes(before) // g, g, 0)


# One function per op (core/ops); None: the step is free (no communication).
LOADS: dict[str, Callable[[Problem, Any, Any, Any], Load] | None] = {
    "all_slice": None,
    "all_gather": _gather,
    "all_to_all": _all_to_all,
    "all_permute": _permute,
    "all_exchange": _exchange,
    "reduce_scatter": _reduce_scatter,
    "all_reduce": _all_reduce,
}
KINDS = tuple(op for op, f in LOADS.items() if f is not None) + (STRIDED_GATHER,)
# Kinds added after calibration files of this format were first written: a file without
# them keeps the defaults for them.
LATER_KINDS = ("reduce_scatter", "all_reduce", STRIDED_GATHER)


def step_load(plan: Plan, step: Collective, before, after) -> Load | None:
    f = LOADS[step.op]
    return None if f is None else f(plan.problem, step, before, after)


def busiest_bytes(plan: Plan, step: Collective, before, after) -> int:
    """Bytes received by the device that receives the most in this step."""
    load = step_load(plan, step, before, after)
    return 0 if load is None else load.busiest


def load(path: str | None = None) -> CostModel:
    """The calibrated model if the file exists, else the defaults."""
    path = path or default_path()
    if not os.path.exists(path):
        return CostModel()
    doc = parse_json(read_text(path, 1 << 20, "cost model"), "cost model")
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
        base = CostModel()
        lat = {k: number(doc["latency"][k]) if k in doc["latency"] or k not in LATER_KINDS
               else base.latency[k] for k in KINDS}
        spb = {k: number(doc["seconds_per_byte"][k])
               if k in doc["seconds_per_byte"] or k not in LATER_KINDS
               else base.seconds_per_byte[k] for k in KINDS}
        # A file from before strided gathers had a kind measured them as gathers: keep that.
        for table, have in ((lat, doc["latency"]), (spb, doc["seconds_per_byte"])):
            if STRIDED_GATHER not in have:
                table[STRIDED_GATHER] = table["all_gather"]
        copy = number(doc["copy_seconds_per_byte"])
        if not all(math.isfinite(v) and v >= 0 for v in [*lat.values(), *spb.values(), copy]):
            raise ValueError("constants must be finite and >= 0")
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as e:
        what = f"missing {e}" if isinstance(e, KeyError) else str(e)
        raise RedistError(f"{where}: {what}") from None
    return CostModel(lat, spb, copy, source=source)


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
