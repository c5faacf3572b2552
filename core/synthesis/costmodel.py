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
from dataclasses import dataclass, field, replace

from redist.core.errors import RedistError
from redist.core.files import parse_json, read_text
from redist.core.ops import Collective, rule
from redist.core.ops.load import (
    EXCHANGE_SLOTS,
    GATHER_DIMS,
    GATHER_DIMS3,
    STRIDED_GATHER,
    Load,
)
from redist.core.plans.plan import Plan

FORMAT = "redist.costmodel/4"
# Files of these formats mean something else by their constants (/1 charged
# latency·(1 + log2 g) per step; /2 had no memory term, so its per-byte constants averaged
# the cached and the uncached regime; /3 charged the exchange in slots all_exchange's
# constants, fitted where transposes were all but absent): they are not read, the
# defaults apply until `redist calibrate`.
OLD_FORMATS = ("redist.costmodel/1", "redist.costmodel/2", "redist.costmodel/3")
OP_OF_KIND = {STRIDED_GATHER: "all_gather", GATHER_DIMS: "all_gather",
              GATHER_DIMS3: "all_gather", EXCHANGE_SLOTS: "all_exchange"}
# Kinds whose steps move derived datatypes (their runs are charged).
RUN_KINDS = (STRIDED_GATHER, GATHER_DIMS, GATHER_DIMS3, "all_exchange")
KINDS = ("all_slice", "all_gather", STRIDED_GATHER, GATHER_DIMS, GATHER_DIMS3, "all_to_all",
         "all_permute", "all_exchange", EXCHANGE_SLOTS, "reduce_scatter", "all_reduce")


def default_path() -> str:
    return os.environ.get("REDIST_COST_MODEL") or os.path.join(
        os.path.expanduser("~"), ".config", "redist", "costmodel.json")


@dataclass(frozen=True)
class CostModel:
    """Seconds per message and per wire byte per kind, and per locally copied and
    transposed byte (module docstring)."""
    latency: dict[str, float] = field(default_factory=lambda: {
        "all_slice": 0.0, "all_gather": 30e-6, STRIDED_GATHER: 30e-6, GATHER_DIMS: 30e-6,
        GATHER_DIMS3: 30e-6, "all_to_all": 40e-6,
        "all_permute": 40e-6, "all_exchange": 60e-6, EXCHANGE_SLOTS: 30e-6,
        "reduce_scatter": 40e-6, "all_reduce": 40e-6})
    seconds_per_byte: dict[str, float] = field(default_factory=lambda: {
        "all_slice": 0.0, "all_gather": 0.35e-9, STRIDED_GATHER: 1.4e-9, GATHER_DIMS: 1.4e-9,
        GATHER_DIMS3: 1.4e-9, "all_to_all": 0.55e-9, "all_permute": 0.45e-9, "all_exchange": 0.6e-9,
        EXCHANGE_SLOTS: 0.35e-9, "reduce_scatter": 0.6e-9, "all_reduce": 0.6e-9})
    copy_seconds_per_byte: float = 0.2e-9
    source: str = "defaults (no calibration file)"
    transpose_seconds_per_byte: float = 0.6e-9
    # per kind: MPICH walks a many-dim subarray far slower per run than a 2-dim one
    seconds_per_run: dict[str, float] = field(default_factory=lambda: {
        k: 160e-9 if k == GATHER_DIMS3 else 20e-9 if k in RUN_KINDS else 0.0 for k in KINDS})
    seconds_per_step: float = 0.2e-3
    # Beyond the cache: every byte a step moves costs this much more where the device's
    # buffers during the step (Load.working) exceed cache_bytes (calibrate picks the size).
    memory_seconds_per_byte: float = 0.15e-9
    cache_bytes: int = 8 << 20

    def charge(self, load: Load) -> float:
        # A model made without the kind (by hand, in code) charges it as its op.
        kind = load.kind if load.kind in self.latency else OP_OF_KIND.get(load.kind, "")
        return (self.latency.get(kind, 0.0) * load.messages
                + self.seconds_per_byte.get(kind, 0.0) * load.wire
                + self.copy_seconds_per_byte * load.copies
                + self.transpose_seconds_per_byte * load.transposes
                + self.seconds_per_run.get(kind, 0.0) * load.runs
                + self.seconds_per_step * load.steps
                + self.memory_seconds_per_byte * beyond_cache(load, self.cache_bytes))

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
                "memory_seconds_per_byte": self.memory_seconds_per_byte,
                "cache_bytes": self.cache_bytes,
                "source": self.source}


def beyond_cache(load: Load, cache_bytes: int) -> int:
    """Bytes the step moves while its buffers outgrow the cache (0 while they fit)."""
    return load.moved if load.working > cache_bytes else 0


def step_load(plan: Plan, step: Collective, before, after) -> Load:
    """The op's own load (its module's `load`, core/ops) and the bytes the device holds
    during the step: its buffers before and after, the larger (the runtime grows or
    shrinks one buffer in place)."""
    p = plan.problem
    got = rule(step).load(p, step, before, after)
    return replace(got, working=max(p.local_bytes(before), p.local_bytes(after)))


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
        memory = number(doc["memory_seconds_per_byte"])
        cache = number(doc["cache_bytes"])
        if not all(math.isfinite(v) and v >= 0
                   for v in [*lat.values(), *spb.values(), copy, trans, *run.values(),
                             per_step, memory, cache]):
            raise ValueError("constants must be finite and >= 0")
        if cache > 1 << 50:
            raise ValueError(f"cache_bytes {cache:.3g} is not a size")
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as e:
        what = f"missing {e}" if isinstance(e, KeyError) else str(e)
        raise RedistError(f"{where}: {what}") from None
    return CostModel(lat, spb, copy, source, trans, run, per_step, memory, int(cache))


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
