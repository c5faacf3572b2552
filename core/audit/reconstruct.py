"""XLA's plan as a redist plan (DESIGN §16): execute the HLO on tagged data
(interpret.py), read the layout every device's data is in before and after each
collective, and name the redist step that takes one to the other.

Nothing is guessed: a layout is read off the global elements each device holds (and
checked against the buffer's size: padding the layout model cannot express is reported);
a collective becomes a step only if the step's typing rule gives exactly the layout
observed after it and its groups are the groups of the step's axes; local work between
collectives may only slice (an all_slice) or rearrange in place. Anything else is
*inexpressible*, reported with its HLO line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from redist.core.audit.groups import axes_of_groups, digits_of
from redist.core.audit.hlo import Array, Module, parse_module
from redist.core.audit.interpret import PAD, Event, Trace, Unsupported, interpret
from redist.core.errors import RedistError, TypingError
from redist.core.model.axes import lift_axes, prime_cuts, refine
from redist.core.model.layout import Layout
from redist.core.model.mesh import Mesh
from redist.core.model.problem import Problem
from redist.core.ops import (
    AllGather,
    AllPermute,
    AllSlice,
    AllToAll,
    Collective,
    apply,
    step_to_json,
)
from redist.core.plans.plan import Plan
from redist.core.plans.planjson import FORMAT, plan_from_json
from redist.core.plans.simulator import expected_from_index, valid_mask
from redist.core.semantics.blocks import block_ranges


@dataclass(frozen=True)
class Inexpressible:
    line: str          # the HLO line
    why: str


@dataclass(frozen=True)
class Reconstruction:
    problem: Problem
    plan: Plan | None                       # None when something is inexpressible
    inexpressible: tuple[Inexpressible, ...]
    hlo_volume: tuple[int, ...]             # bytes XLA's collectives receive, all devices
    collective_lines: tuple[str, ...]       # the collectives, in program order


class _Stop(Exception):
    def __init__(self, line: str, why: str) -> None:
        super().__init__(why)
        self.item = Inexpressible(line, why)


def fine_mesh(base: Mesh) -> Mesh:
    """The user's mesh split into prime-sized atoms: every sub-axis is a run of them."""
    atoms = refine(base, [])
    return refine(base, [], prime_cuts(base, atoms)).mesh


def _tags(problem: Problem, fine: Mesh, layout: Layout) -> list[np.ndarray]:
    tags = expected_from_index(fine, problem.shape, layout)
    tags[~valid_mask(fine, problem.shape, layout)] = PAD
    return [tags[d] for d in range(fine.num_devices)]


def observe(problem: Problem, fine: Mesh, arrays: list[list[np.ndarray]], line: str,
            where: str) -> Layout:
    """The layout (of fine atoms) in which every device holds exactly the elements its
    buffers hold, the buffers being exactly that layout's local size; else _Stop."""
    shape = problem.shape
    n = fine.num_devices
    rank = len(shape)
    sizes = {sum(a.size for a in arrs) for arrs in arrays}
    lo = np.zeros((n, rank), np.int64)
    hi = np.zeros((n, rank), np.int64)
    has = np.zeros(n, bool)
    for d in range(n):
        flat = np.concatenate([a.reshape(-1) for a in arrays[d]]) if arrays[d] else \
            np.zeros(0, np.int64)
        v = flat[flat >= 0]
        if not v.size:
            continue
        has[d] = True
        idx = np.unravel_index(v, shape)
        lo[d] = [int(i.min()) for i in idx]
        hi[d] = [int(i.max()) + 1 for i in idx]
        box = hi[d] - lo[d]
        # v fills its bounding box exactly once iff it has the box's size and no repeats
        if math.prod(box.tolist()) != v.size or np.bincount(
                np.ravel_multi_index(tuple(i - lo[d][k] for k, i in enumerate(idx)),
                                     tuple(box.tolist())), minlength=v.size).min() == 0:
            raise _Stop(line, f"{where}: device {d} holds elements that are not one block "
                              "of any layout (or holds one twice)")
    if not has.any():
        raise _Stop(line, f"{where}: no device holds any element of the array")
    dims: list[tuple[str, ...]] = []
    used: set[str] = set()
    for k in range(rank):
        ext = (hi[:, k] - lo[:, k])[has]
        c = int(ext.max())
        block = lo[:, k] // c
        if np.any((lo[:, k] % c)[has] != 0) or np.any(
                (hi[:, k] != np.minimum(lo[:, k] + c, shape[k]))[has]):
            raise _Stop(line, f"{where}: dim {k} is not split into blocks of equal size")
        axes = digits_of(fine, block, used, has)
        if axes is None:
            raise _Stop(line, f"{where}: the blocks of dim {k} are not numbered by any mesh "
                              "axes")
        if -(-shape[k] // math.prod(fine.size(a) for a in axes)) != c:
            raise _Stop(line, f"{where}: dim {k} has blocks of {c}, which no split of the "
                              "mesh gives")
        used |= set(axes)
        dims.append(axes)
    layout = Layout(tuple(dims))
    want_lo, want_hi = block_ranges(fine, shape, layout)
    empty = np.any(want_hi <= want_lo, axis=1)
    for d in range(n):
        if (has[d] and (empty[d] or not (np.array_equal(want_lo[d], lo[d]) and
                                         np.array_equal(want_hi[d], hi[d])))) or \
                (not has[d] and not empty[d]):
            raise _Stop(line, f"{where}: no layout fits every device (device {d})")
    local = layout.local_size(fine, shape)
    if sizes != {local}:
        raise _Stop(line, f"{where}: buffers of {sorted(sizes)[0]} elements per device "
                          f"where layout {_show(problem, layout)} has {local} (padding the "
                          "layout model cannot express)")
    return layout


def _show(problem: Problem, layout: Layout) -> str:
    assert problem.base is not None
    return str(Layout(tuple(lift_axes(problem.base, d) for d in layout.dims)))


def _local_step(before: Layout, after: Layout) -> AllSlice | None:
    if before == after:
        return None
    new = []
    for b, a in zip(before.dims, after.dims, strict=True):
        if a[: len(b)] != b:
            raise ValueError
        new.append(a[len(b):])
    return AllSlice(tuple(new))


def _collective_step(ev: Event, before: Layout, after: Layout) -> Collective:
    """The step the event implements, from the layouts around it (ValueError if none)."""
    if ev.kind == "collective-permute":
        return AllPermute(after)
    gone = []
    gained = []
    for d, (b, a) in enumerate(zip(before.dims, after.dims, strict=True)):
        if b == a:
            continue
        if len(a) < len(b) and b[: len(a)] == a:
            gone.append((d, b[len(a):]))
        elif len(a) > len(b) and a[: len(b)] == b:
            gained.append((d, a[len(b):]))
        else:
            raise ValueError
    if ev.kind == "all-gather" and not gained and gone:
        per = [()] * len(before.dims)
        for d, axes in gone:
            per[d] = axes
        return AllGather(tuple(per))
    if ev.kind == "all-to-all" and len(gone) == 1 and len(gained) == 1 and \
            gone[0][1] == gained[0][1]:
        return AllToAll(gone[0][0], gained[0][0], gone[0][1])
    if ev.kind == "all-to-all" and len(gone) > 1:
        raise ValueError("moves axes between several pairs of dims in one all-to-all; "
                         "redist's all_to_all moves one suffix from one dim to another")
    raise ValueError


def _hlo_bytes(ev: Event, itemsize: int) -> int:
    """Bytes XLA's collective receives, summed over devices."""
    def elems(arrs: list[np.ndarray]) -> int:
        return sum(a.size for a in arrs)
    if ev.kind == "collective-permute":
        return sum(elems(ev.operands[s]) for s, t in ev.pairs or [] if s != t) * itemsize
    total = 0
    for g in ev.groups or []:
        for m in g:
            if ev.kind == "all-gather":
                total += (len(g) - 1) * elems(ev.operands[m])
            else:
                total += (len(g) - 1) * elems(ev.operands[m]) // len(g)
    return total * itemsize


def _plan(problem: Problem, steps: list[tuple[Collective, Layout]]) -> Plan:
    """The reconstructed steps as a plan on the user's mesh (canonical refs), read back
    through the plan format so that it is checked like any plan file."""
    base = problem.base
    assert base is not None

    js = []
    for step, after in steps:
        s = step_to_json(step, problem)
        s["layout_after"] = problem.show(after).to_json()
        js.append(s)
    doc = {"format": FORMAT, "mesh": [[a, s] for a, s in base.axes],
           "shape": list(problem.shape), "dtype": problem.dtype,
           "src": problem.show(problem.src).to_json(), "dst": problem.show(problem.dst).to_json(),
           "steps": js}
    return plan_from_json(doc)


def reconstruct(problem: Problem, hlo: str | Module) -> Reconstruction:
    """XLA's plan for `problem` from the HLO text of its compiled resharding."""
    module = parse_module(hlo) if isinstance(hlo, str) else hlo
    module.check_size()
    base = problem.base
    assert base is not None
    fine = fine_mesh(base)
    n = fine.num_devices
    if module.num_partitions != n:
        raise RedistError(f"HLO: the module has num_partitions={module.num_partitions}, the "
                          f"mesh {base} has {n} devices")
    src = Layout(tuple(tuple(a for r in dim for a in _lower(base, fine, r))
                       for dim in problem.show(problem.src).dims))
    dst = Layout(tuple(tuple(a for r in dim for a in _lower(base, fine, r))
                       for dim in problem.show(problem.dst).dims))
    params = [i for i in module.entry.instructions if i.opcode == "parameter"]
    want = src.local_shape(fine, problem.shape)
    if len(params) == 1 and (not isinstance(params[0].shape, Array)
                             or params[0].shape.dims != want):
        raise RedistError(f"HLO: the parameter is {params[0].shape}, but src "
                          f"{problem.show(problem.src)} has local shape {list(want)}: the "
                          "module is not this resharding")
    lines = tuple(i.line for i in module.entry.instructions
                  if i.opcode.removesuffix("-start") in
                  ("all-gather", "all-to-all", "collective-permute", "reduce-scatter",
                   "all-reduce", "collective-broadcast", "ragged-all-to-all"))
    try:
        trace = interpret(module, _tags(problem, fine, src))
    except Unsupported as e:
        return Reconstruction(problem, None, _also_sums(module, Inexpressible(e.line, e.why)),
                              (), lines)
    try:
        steps, volumes = _walk(problem, fine, src, dst, trace)
    except _Stop as e:
        return Reconstruction(problem, None, _also_sums(module, e.item), (), lines)
    return Reconstruction(problem, _plan(problem, steps), (), tuple(volumes), lines)


def _lower(base: Mesh, fine: Mesh, ref: str) -> tuple[str, ...]:
    return refine(base, [a for a in fine.names]).lower(ref)


def _also_sums(module: Module, first: Inexpressible) -> tuple[Inexpressible, ...]:
    """The first failure, plus every reduction in the program (none is expressible)."""
    out = [first]
    for ins in module.entry.instructions:
        base = ins.opcode.removesuffix("-start")
        if base in ("all-reduce", "reduce-scatter") and ins.line != first.line:
            out.append(Inexpressible(ins.line, f"{base} is not a step redist can express in "
                                               "a resharding (pending sums, DESIGN §14)"))
    return tuple(out)


def _walk(problem: Problem, fine: Mesh, src: Layout, dst: Layout, trace: Trace):
    shape = problem.shape
    steps: list[tuple[Collective, Layout]] = []
    volumes: list[int] = []
    state, prev = src, "param"

    def local(before: Layout, after: Layout, line: str, where: str) -> None:
        try:
            step = _local_step(before, after)
            if step is not None:
                if apply(step, fine, shape, before) != after:
                    raise ValueError
                steps.append((step, after))
                volumes.append(0)
        except (ValueError, TypingError):
            raise _Stop(line, f"{where}: local work takes {_show(problem, before)} to "
                              f"{_show(problem, after)}, which no step expresses") from None

    for ev in trace.events:
        line = ev.ins.line
        if ev.deps != {prev}:
            raise _Stop(line, "this collective does not consume the previous one's result "
                              "alone (the program is not one chain of collectives)")
        before = observe(problem, fine, ev.operands, line, "before it")
        local(state, before, line, "before it")
        after = observe(problem, fine, ev.results, line, "after it")
        try:
            step = _collective_step(ev, before, after)
            if apply(step, fine, shape, before) != after:
                raise ValueError
        except (ValueError, TypingError) as e:
            why = f" ({e})" if isinstance(e, ValueError) and str(e) else ""
            raise _Stop(line, f"{ev.kind} takes {_show(problem, before)} to "
                              f"{_show(problem, after)}, which no redist step does"
                              f"{why}") from None
        if ev.groups is not None:
            named = {a for d in getattr(step, "axes", ()) for a in
                     ((d,) if isinstance(d, str) else d)}
            axes = axes_of_groups(fine, ev.groups)
            if axes is None or set(axes) != named:
                raise _Stop(line, f"{ev.kind} over groups {ev.groups[:4]}"
                                  f"{'...' if len(ev.groups) > 4 else ''}: not the groups of "
                                  f"the axes the step needs")
        steps.append((step, after))
        volumes.append(_hlo_bytes(ev, problem.itemsize))
        state, prev = after, ev.ins.name
    if trace.root_deps != {prev}:
        raise _Stop(trace.root_line, "the result does not come from the last collective alone")
    final = observe(problem, fine, trace.root, trace.root_line, "the result")
    local(state, final, trace.root_line, "the result")
    if final != dst:
        raise _Stop(trace.root_line, f"the program ends at {_show(problem, final)}, not at dst "
                                     f"{problem.show(problem.dst)}")
    return steps, volumes
