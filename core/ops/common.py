"""What the collectives share (DESIGN §2, §11): the record an op module fills in, the
mixed-radix numbering of blocks, the nesting condition on uneven extents, and the pieces
of typing rules and file forms that more than one op uses.

Uneven extents (§11): splitting a dim of padded extent c into g pieces is local only when
the blocks nest, i.e. when g divides c (then ceil(N/(S·g)) = c/g), or when the dim is held
whole (c >= N: one block holds everything and the finer blocks lie inside it). The same
condition, on the coarser side, governs gathers and both dims of an all-to-all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import z3

from redist.core.errors import RedistError, TypingError
from redist.core.model.layout import Layout
from redist.core.model.mesh import Mesh
from redist.core.model.problem import Problem
from redist.core.model.syntax import layout_from_value
from redist.core.semantics.algebra import Algebra
from redist.core.semantics.blocks import missing_total
from redist.core.smt import symvars as V

PerDim = tuple[tuple[str, ...], ...]
Coords = dict[str, Any]
Index = list[Any]
Names = Callable[[tuple[str, ...]], tuple[str, ...]]


@dataclass(frozen=True)
class OpRule:
    """Everything the project knows about one collective, filled in by its module.

    Element semantics, typing and bytes take the step and the layouts around it; the file
    form takes the user's names (`problem.show_axes`/`problem.show`); the symbolic rule
    relates the SMT layout variables before and after a step of this kind (smt/symvars)."""
    name: str
    cls: type
    portable: bool                      # False: no XLA/NCCL equivalent (DESIGN §2)
    named_axes: Callable[[Any], tuple[str, ...]]   # the axes its groups span
    names: Callable[[Any], tuple[str, ...]]        # every axis name it mentions
    map_names: Callable[[Any, Names], Any]         # the same step, axis lists rewritten
    reshape: Callable[[Any, Layout], Layout]       # structural half of the typing rule
    check_extents: Callable[..., None]             # (step, mesh, shape, before, after, show)
    source: Callable[..., tuple[Coords, Index]]    # (step, mesh, shape, before, after,
    #                                                 coords, index, alg)
    volume: Callable[[Problem, Any, Layout, Layout, bool], int]
    working_bytes: Callable[[Problem, Any, Layout, Layout], int]
    padding_bytes: Callable[[Problem, Any, Layout, Layout], int]
    to_json: Callable[[Any, Problem], dict[str, Any]]
    from_json: Callable[[dict[str, Any], str], Any]  # (object, "step k"), names as written
    describe: Callable[[Any, Names], str]
    smt_kind: int
    # The symbolic rule, (mesh, shape, sv, lv, nx) -> a z3 bool (structure) and a list of
    # them (extents, §11); None: no constraint (the layouts stay well-formed regardless).
    smt_rule: Callable[..., Any] | None
    smt_extents: Callable[..., list[Any]] | None
    smt_listed: Callable[..., list[Any]]           # (mesh, step, lv, nx, rank) -> facts
    smt_pin: Callable[..., list[Any]]              # (mesh, sv, step or None) -> facts:
    #                                                 its parameters, or their defaults
    # (problem, step, before, after) -> core.ops.load.Load: what the cost model charges
    # the step's busiest device (core/synthesis/costmodel.py)
    load: Callable[..., Any]
    # A reduction (DESIGN §14): the axes whose group members' values it adds, and its
    # addend map (step, mesh, shape, before, after, coords, index, k, alg) -> member k of
    # the set of (device, index) pairs added. None: the op moves data only (its source
    # map is its one addend, and it carries the pending set unchanged).
    summed: Callable[[Any], tuple[str, ...]] | None = None
    addend: Callable[..., tuple[Coords, Index]] | None = None


# ---- block numbering ------------------------------------------------------------------

def mixed_radix(mesh: Mesh, axes: tuple[str, ...], coords: Coords) -> Any:
    """Σ_j c[a_j]·Π_{l>j}|a_l| — the block number of `coords` on `axes` (major first)."""
    v: Any = 0
    for a in axes:
        v = v * mesh.size(a) + coords[a]
    return v


def digits(mesh: Mesh, axes: tuple[str, ...], value: Any, alg: Algebra) -> Coords:
    """Inverse of mixed_radix for 0 <= value < Π|a|."""
    out: Coords = {}
    stride = 1
    for a in reversed(axes):
        out[a] = alg.mod(alg.div(value, stride), mesh.size(a))
        stride *= mesh.size(a)
    return out


def global_index(mesh: Mesh, shape: tuple[int, ...], layout: Layout, coords: Coords,
                 index: Index) -> Index:
    """g_d = b_d(c)·c_d + i_d for every dim d (c_d the padded local extent; the element is
    valid, not padding, iff g_d < N_d in every dim)."""
    local = layout.local_shape(mesh, shape)
    return [mixed_radix(mesh, layout.dims[d], coords) * local[d] + index[d]
            for d in range(layout.rank)]


# ---- typing rules ---------------------------------------------------------------------

def nests(coarse: int, g: int, extent: int) -> bool:
    """Do blocks of padded extent `coarse` split into g pieces locally? (module doc)"""
    return coarse % g == 0 or coarse >= extent


def nest_error(op: str, what: str, d: int, coarse: int, g: int, extent: int) -> TypingError:
    return TypingError(f"{op}: {what} {d}: blocks of {coarse} (extent {extent}) do not split "
                       f"locally into {g} (not divisible, and the dim is not held whole): "
                       "the finer blocks do not nest in the coarser ones")


def check_per_dim(step: Any, before: Layout) -> None:
    """An axis list per dim (all_slice, all_gather): one per dim, some axis, none twice."""
    if len(step.axes) != before.rank:
        raise TypingError(f"{step.op}: lists {len(step.axes)} dims but the array has rank "
                          f"{before.rank}")
    flat = [a for dim in step.axes for a in dim]
    if not flat:
        raise TypingError(f"{step.op}: names no axes")
    if len(set(flat)) != len(flat):
        raise TypingError(f"{step.op}: an axis is listed twice")


def suffix_ok(dim_axes: tuple[str, ...], axes: tuple[str, ...]) -> bool:
    return 0 < len(axes) <= len(dim_axes) and dim_axes[len(dim_axes) - len(axes):] == axes


def retarget(step: Any, before: Layout) -> Layout:
    """The structural rule of a step that names its target layout (permute, exchange)."""
    if step.layout.rank != before.rank:
        raise TypingError(f"{step.op}: target {step.layout} has rank {step.layout.rank}, "
                          f"not {before.rank}")
    return step.layout


def check_target(step: Any, mesh: Mesh, shape: tuple[int, ...], after: Layout) -> None:
    try:
        after.validate(mesh, shape)
    except RedistError as e:
        raise TypingError(f"{step.op}: target {e}") from None


def smt_target(mesh: Mesh, step: Any, lv: V.LayoutVars, nx: V.LayoutVars,
               rank: int) -> list[z3.BoolRef]:
    """A step naming its target layout pins the layout after it (permute, exchange)."""
    target = step.layout
    used = target.used_axes() + target.sum
    if target.rank != rank or len(set(used)) != len(used) or any(a not in nx.D for a in used):
        return [z3.BoolVal(False)]          # no layout of this array and mesh
    return V.layout_facts(mesh, nx, target)


def pin_nothing(mesh: Mesh, sv: V.StepVars, step: Any) -> list[z3.BoolRef]:
    return []


def map_per_dim(step: Any, f: Names) -> Any:
    return type(step)(tuple(f(d) for d in step.axes))


def map_target(step: Any, f: Names) -> Any:
    return type(step)(Layout(tuple(f(d) for d in step.layout.dims), f(step.layout.sum)))


def flat(axes: PerDim) -> tuple[str, ...]:
    return tuple(a for dim in axes for a in dim)


# ---- bytes ----------------------------------------------------------------------------

def pads(problem: Problem, layout: Layout) -> bool:
    return any(n % layout.shards(problem.mesh, d) for d, n in enumerate(problem.shape))


def received_bytes(problem: Problem, before: Layout, after: Layout) -> int:
    """Valid bytes of each device's new block that its old block lacks, summed."""
    return missing_total(problem.mesh, problem.shape, before, after) * problem.itemsize


def counts_valid(problem: Problem, before: Layout, after: Layout, valid: bool) -> bool:
    """Must the volume be counted element by element? (valid bytes asked, and padding.)"""
    return valid and (pads(problem, before) or pads(problem, after))


def no_bytes(problem: Problem, step: Any, before: Layout, after: Layout) -> int:
    return 0


# ---- file form ------------------------------------------------------------------------

def expect(cond: bool, msg: str) -> None:
    if not cond:
        raise RedistError(msg)


def json_names(value: Any, where: str) -> tuple[str, ...]:
    expect(isinstance(value, list) and all(isinstance(a, str) for a in value),
           f"{where} must be a list of axis names")
    return tuple(value)


def json_int(value: Any, where: str) -> int:
    expect(isinstance(value, int) and not isinstance(value, bool),
           f"{where} must be an integer")
    return value


def per_dim_from_json(cls: type) -> Callable[[dict[str, Any], str], Any]:
    """The file form of an op with an axis list per dim (`"axes": [[...], ...]`)."""
    def read(js: dict[str, Any], where: str) -> Any:
        axes = js.get("axes")
        expect(isinstance(axes, list), f"{where} ({cls.op}): 'axes' must be a list per dim")
        return cls(tuple(json_names(a, f"{where} ({cls.op}) axes of dim {d}")
                         for d, a in enumerate(axes)))
    return read


def layout_from_json(cls: type) -> Callable[[dict[str, Any], str], Any]:
    """The file form of an op naming its target layout (`"layout": [[...], ...]`)."""
    def read(js: dict[str, Any], where: str) -> Any:
        expect("layout" in js, f"{where} ({cls.op}): missing 'layout'")
        return cls(layout_from_value(js["layout"], f"{where} layout"))
    return read


def per_dim_to_json(step: Any, problem: Problem) -> dict[str, Any]:
    return {"op": step.op, "axes": [list(problem.show_axes(d)) for d in step.axes]}


def layout_to_json(step: Any, problem: Problem) -> dict[str, Any]:
    return {"op": step.op, "layout": problem.show(step.layout).to_json()}


# ---- short form -----------------------------------------------------------------------

def braces(axes: tuple[str, ...]) -> str:
    return "{" + ",".join(axes) + "}"


def describe_per_dim(step: Any, show: Names) -> str:
    return f"{step.op} " + " ".join(braces(show(d)) for d in step.axes)


def describe_target(step: Any, show: Names) -> str:
    pending = f"+{braces(show(step.layout.sum))}" if step.layout.sum else ""
    return (f"{step.op} -> [" + ",".join(braces(show(d)) for d in step.layout.dims) + "]"
            + pending)
