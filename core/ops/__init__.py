"""The collectives (DESIGN §2): one module per op, and this registry.

Each op module holds its value (a frozen dataclass with an `op` name), typing rule,
source map, byte figures, cost-model load, file form, short description and symbolic
rule, collected in its `RULE` (common.OpRule). Everyone else calls the generic functions
below, which look the step's op up in `OPS`; nothing here is specific to one op. Adding an
op: its module,
one line in `OPS`, and one function in each backend's table (runtime/execute.py,
redist/jax_program.py, redist/torch.py, runtime/calibrate.py). See docs/ops.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from redist.core.errors import RedistError, TypingError
from redist.core.model.layout import Layout
from redist.core.model.mesh import Mesh
from redist.core.model.problem import Problem
from redist.core.ops import (
    all_exchange,
    all_gather,
    all_permute,
    all_reduce,
    all_slice,
    all_to_all,
    reduce_scatter,
)
from redist.core.ops.all_exchange import AllExchange
from redist.core.ops.all_gather import AllGather
from redist.core.ops.all_permute import AllPermute
from redist.core.ops.all_reduce import AllReduce
from redist.core.ops.all_slice import AllSlice
from redist.core.ops.all_to_all import AllToAll
from redist.core.ops.common import Coords, Index, Names, OpRule, expect, nests
from redist.core.ops.reduce_scatter import ReduceScatter
from redist.core.semantics.algebra import Algebra

__all__ = ["OPS", "AllExchange", "AllGather", "AllPermute", "AllReduce", "AllSlice",
           "AllToAll", "Collective", "OpRule", "ReduceScatter", "nests"]

OPS: dict[str, OpRule] = {r.name: r for r in (
    all_slice.RULE,
    all_gather.RULE,
    all_to_all.RULE,
    all_permute.RULE,
    all_exchange.RULE,
    reduce_scatter.RULE,
    all_reduce.RULE,
)}

Collective = (AllSlice | AllGather | AllToAll | AllPermute | AllExchange | ReduceScatter
              | AllReduce)


def rule(step: Any) -> OpRule:
    r = OPS.get(getattr(step, "op", None))          # type: ignore[arg-type]
    if r is None or not isinstance(step, r.cls):
        raise RedistError(f"unknown collective {step!r:.60}")
    return r


def named_axes(step: Collective) -> tuple[str, ...]:
    """The axes a step's groups span, in mixed-radix (major -> minor) order."""
    return rule(step).named_axes(step)


def group_size(step: Collective, mesh: Mesh) -> int:
    return math.prod(mesh.size(a) for a in named_axes(step))


def reshape(step: Collective, before: Layout) -> Layout:
    """The structural half of a typing rule: which axes go where (suffixes, replicated
    axes, dims in range). Extents are the other half, checked by `apply`; proofs/ states
    them as hypotheses over symbolic sizes instead. On a pending layout (DESIGN §14) a
    step that only moves data may not name a pending axis, and carries the pending set
    unchanged (a target layout must keep it)."""
    r = rule(step)
    if r.summed is not None or not before.sum:
        return r.reshape(step, before)
    for a in r.named_axes(step):
        if a in before.sum:
            raise TypingError(f"{step.op}: axis {a!r} is a pending-sum axis; reduce it first "
                              "(reduce_scatter or all_reduce)")
    after = r.reshape(step, before)
    if after.sum == before.sum:
        return after
    if after is getattr(step, "layout", None):
        raise TypingError(f"{step.op}: the target {after} must keep the pending sum "
                          f"{{{','.join(before.sum)}}}")
    return Layout(after.dims, before.sum)


def apply(step: Collective, mesh: Mesh, shape: tuple[int, ...], before: Layout,
          show: Callable[[Layout], Layout] | None = None) -> Layout:
    """Typing rule: the layout after `step`, or TypingError. `show` writes a layout of atoms
    in the user's form for the message (Problem.show)."""
    r = rule(step)
    for a in r.named_axes(step):
        if not mesh.has(a):
            raise TypingError(f"{step.op}: unknown axis {a!r:.40}")
    after = reshape(step, before)
    r.check_extents(step, mesh, shape, before, after, show)
    return after


def summed_axes(step: Collective) -> tuple[str, ...]:
    """The axes whose group members' values a step adds ((): it moves data only)."""
    r = rule(step)
    return r.summed(step) if r.summed is not None else ()


def addend(step: Collective, mesh: Mesh, shape: tuple[int, ...], before: Layout,
           after: Layout, coords: Coords, index: Index, k: Coords,
           alg: Algebra) -> tuple[Coords, Index]:
    """Member `k` (coordinates on summed_axes(step)) of the set of (device, local index)
    pairs before the step whose values are added into (coords, index) after it (DESIGN
    §14: source maps return sets of addends; one definition for the simulator, the solver
    and the runtime's tests). A step that moves data only has one addend: its source."""
    r = rule(step)
    if r.addend is None:
        return r.source(step, mesh, shape, before, after, coords, index, alg)
    return r.addend(step, mesh, shape, before, after, coords, index, k, alg)


def source(step: Collective, mesh: Mesh, shape: tuple[int, ...], before: Layout,
           after: Layout, coords: Coords, index: Index, alg: Algebra) -> tuple[Coords, Index]:
    """Where (device, local index) after `step` gets its value from, before `step` (DESIGN
    §2: one definition over an Algebra — NumPy arrays, ints or z3 terms)."""
    return rule(step).source(step, mesh, shape, before, after, coords, index, alg)


def step_volume(problem: Problem, step: Collective, before: Layout, after: Layout,
                valid: bool = True) -> int:
    """Bytes received in one step, summed over all devices: valid bytes (padding is never
    data, issue 18), or (valid=False, the search's fast upper bound) the padded buffers'
    bytes."""
    return rule(step).volume(problem, step, before, after, valid)


def step_working_bytes(problem: Problem, step: Collective, before: Layout,
                       after: Layout) -> int:
    """Bytes a device holds at once while the MPI runtime runs this step (semantics/working)."""
    return rule(step).working_bytes(problem, step, before, after)


def step_padding_bytes(problem: Problem, step: Collective, before: Layout,
                       after: Layout) -> int:
    """Of a step's working bytes, the pieces past the array's end (DESIGN §11) that the
    runtime holds beyond both blocks. Zero when extents divide."""
    return rule(step).padding_bytes(problem, step, before, after)


def working_bytes(problem: Problem, layouts: list[Layout], steps) -> tuple[int, ...]:
    return tuple(step_working_bytes(problem, s, layouts[k], layouts[k + 1])
                 for k, s in enumerate(steps))


def padding_bytes(problem: Problem, layouts: list[Layout], steps) -> tuple[int, ...]:
    return tuple(step_padding_bytes(problem, s, layouts[k], layouts[k + 1])
                 for k, s in enumerate(steps))


def describe(step: Collective, show: Names = lambda axes: axes) -> str:
    """Short human form, e.g. `all_to_all {y} dim 1->0`; `show` lifts atoms to refs."""
    return rule(step).describe(step, show)


def step_names(step: Collective) -> tuple[str, ...]:
    """Every axis name the step mentions (its lists, or its target layout)."""
    return rule(step).names(step)


def map_names(step: Collective, f: Names) -> Collective:
    """The same step with each of its axis lists rewritten by f (e.g. refs -> atoms)."""
    return rule(step).map_names(step, f)


_EXPECTED = ", ".join(list(OPS)[:-1]) + " or " + list(OPS)[-1]


def step_to_json(step: Collective, problem: Problem) -> dict[str, Any]:
    """The step's file form (DESIGN §3), in the user's names."""
    return rule(step).to_json(step, problem)


def step_from_json(js: Any, k: int) -> Collective:
    """A step of a plan file (untrusted), with the names as written (refs; lowered later)."""
    where = f"step {k + 1}"
    expect(isinstance(js, dict), f"{where} must be an object")
    op = js.get("op")
    if not isinstance(op, str) or op not in OPS:
        raise RedistError(f"{where}: unknown op {op!r:.40} (expected {_EXPECTED})")
    return OPS[op].from_json(js, where)
