"""The collectives as values, with their typing rules (DESIGN §2, §11).

A typing rule maps the layout before a step to the layout after it, or raises
TypingError saying which rule failed and why. Element semantics live in sourcemap.py;
byte costs in costs.py.

Uneven extents (§11): splitting a dim of padded extent c into g pieces is local only when
the blocks nest, i.e. when g divides c (then ceil(N/(S·g)) = c/g), or when the dim is held
whole (c >= N: one block holds everything and the finer blocks lie inside it). The same
condition, on the coarser side, governs gathers and both dims of an all-to-all.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from redist.core.errors import RedistError, TypingError
from redist.core.model.layout import Layout
from redist.core.model.mesh import Mesh

PerDim = tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class AllSlice:
    axes: PerDim
    op = "all_slice"


@dataclass(frozen=True)
class AllGather:
    axes: PerDim
    op = "all_gather"


@dataclass(frozen=True)
class AllToAll:
    src_dim: int
    dst_dim: int
    axes: tuple[str, ...]
    op = "all_to_all"


@dataclass(frozen=True)
class AllPermute:
    layout: Layout
    op = "all_permute"


@dataclass(frozen=True)
class AllExchange:
    """The MPI extension (DESIGN §2): any layout, one Alltoallv over all devices, every
    element sent once by its canonical holder. Not portable (no XLA/NCCL equivalent)."""
    layout: Layout
    op = "all_exchange"


Collective = AllSlice | AllGather | AllToAll | AllPermute | AllExchange
PORTABLE = (AllSlice, AllGather, AllToAll, AllPermute)


def named_axes(step: Collective) -> tuple[str, ...]:
    """The axes a step's groups span, in mixed-radix (major -> minor) order."""
    if isinstance(step, (AllSlice, AllGather)):
        return tuple(a for dim in step.axes for a in dim)
    if isinstance(step, AllToAll):
        return step.axes
    return ()


def _per_dim(step: AllSlice | AllGather, before: Layout) -> None:
    if len(step.axes) != before.rank:
        raise TypingError(f"{step.op}: lists {len(step.axes)} dims but the array has rank "
                          f"{before.rank}")
    flat = [a for dim in step.axes for a in dim]
    if not flat:
        raise TypingError(f"{step.op}: names no axes")
    if len(set(flat)) != len(flat):
        raise TypingError(f"{step.op}: an axis is listed twice")


def _suffix_ok(dim_axes: tuple[str, ...], axes: tuple[str, ...]) -> bool:
    return 0 < len(axes) <= len(dim_axes) and dim_axes[len(dim_axes) - len(axes):] == axes


def reshape(step: Collective, before: Layout) -> Layout:
    """The structural half of a typing rule: which axes go where (suffixes, replicated
    axes, dims in range). Extents are the other half, checked by `apply`; proofs/ states
    them as hypotheses over symbolic sizes instead."""
    if isinstance(step, AllSlice):
        _per_dim(step, before)
        used = set(before.used_axes())
        for a in (a for new in step.axes for a in new):
            if a in used:
                raise TypingError(f"all_slice: axis {a!r} is not replicated "
                                  f"(it shards dim {before.dim_of(a)})")
        return Layout(tuple(before.dims[d] + new for d, new in enumerate(step.axes)))
    if isinstance(step, AllGather):
        _per_dim(step, before)
        for d, gone in enumerate(step.axes):
            if gone and not _suffix_ok(before.dims[d], gone):
                raise TypingError(f"all_gather: {{{','.join(gone)}}} is not the minor-most "
                                  f"suffix of dim {d} {{{','.join(before.dims[d])}}}")
        return Layout(tuple(dim[: len(dim) - len(gone)]
                            for dim, gone in zip(before.dims, step.axes, strict=True)))
    if isinstance(step, AllToAll):
        s, t = step.src_dim, step.dst_dim
        for name, d in (("src_dim", s), ("dst_dim", t)):
            if not 0 <= d < before.rank:
                raise TypingError(f"all_to_all: {name} {d} is out of range for rank "
                                  f"{before.rank}")
        if s == t:
            raise TypingError("all_to_all: src_dim and dst_dim must differ")
        if len(set(step.axes)) != len(step.axes):
            raise TypingError("all_to_all: an axis is listed twice")
        if not _suffix_ok(before.dims[s], step.axes):
            raise TypingError(f"all_to_all: {{{','.join(step.axes)}}} is not the minor-most "
                              f"suffix of src_dim {s} {{{','.join(before.dims[s])}}}")
        dims = list(before.dims)
        dims[s] = before.dims[s][: len(before.dims[s]) - len(step.axes)]
        dims[t] = before.dims[t] + step.axes
        return Layout(tuple(dims))
    if isinstance(step, (AllPermute, AllExchange)):
        if step.layout.rank != before.rank:
            raise TypingError(f"{step.op}: target {step.layout} has rank {step.layout.rank}, "
                              f"not {before.rank}")
        return step.layout
    raise RedistError(f"unknown collective {step!r:.60}")


def nests(coarse: int, g: int, extent: int) -> bool:
    """Do blocks of padded extent `coarse` split into g pieces locally? (module doc)"""
    return coarse % g == 0 or coarse >= extent


def _nest_error(op: str, what: str, d: int, coarse: int, g: int, extent: int) -> TypingError:
    return TypingError(f"{op}: {what} {d}: blocks of {coarse} (extent {extent}) do not split "
                       f"locally into {g} (not divisible, and the dim is not held whole): "
                       "the finer blocks do not nest in the coarser ones")


def apply(step: Collective, mesh: Mesh, shape: tuple[int, ...], before: Layout,
          show: Callable[[Layout], Layout] | None = None) -> Layout:
    """Typing rule: the layout after `step`, or TypingError. `show` writes a layout of atoms
    in the user's form for the message (Problem.show)."""
    for a in named_axes(step):
        if not mesh.has(a):
            raise TypingError(f"{step.op}: unknown axis {a!r:.40}")
    after = reshape(step, before)
    local = before.local_shape(mesh, shape)
    if isinstance(step, AllSlice):
        for d, new in enumerate(step.axes):
            g = math.prod(mesh.size(a) for a in new)
            if not nests(local[d], g, shape[d]):
                raise _nest_error("all_slice", "dim", d, local[d], g, shape[d])
    elif isinstance(step, AllGather):
        coarse = after.local_shape(mesh, shape)
        for d, gone in enumerate(step.axes):
            g = math.prod(mesh.size(a) for a in gone)
            if gone and not nests(coarse[d], g, shape[d]):
                raise _nest_error("all_gather", "dim", d, coarse[d], g, shape[d])
    elif isinstance(step, AllToAll):
        g = math.prod(mesh.size(a) for a in step.axes)
        coarse_src = after.local_shape(mesh, shape)[step.src_dim]
        if not nests(coarse_src, g, shape[step.src_dim]):
            raise _nest_error("all_to_all", "src_dim", step.src_dim, coarse_src, g,
                              shape[step.src_dim])
        if not nests(local[step.dst_dim], g, shape[step.dst_dim]):
            raise _nest_error("all_to_all", "dst_dim", step.dst_dim, local[step.dst_dim], g,
                              shape[step.dst_dim])
    elif isinstance(step, (AllPermute, AllExchange)):
        try:
            after.validate(mesh, shape)
        except RedistError as e:
            raise TypingError(f"{step.op}: target {e}") from None
        if isinstance(step, AllPermute):
            # Same number of blocks per dim (with divisible extents: the same local shape),
            # so every block is held and needed by equally many devices: a permutation.
            have = tuple(before.shards(mesh, d) for d in range(before.rank))
            want = tuple(after.shards(mesh, d) for d in range(after.rank))
            if have != want:
                fmt = show or (lambda lay: lay)
                raise TypingError(f"all_permute: {fmt(after)} has {want} blocks per dim, "
                                  f"{fmt(before)} "
                                  f"has {have}: local shapes "
                                  f"{after.local_shape(mesh, shape)} and {local}")
    return after


def group_size(step: Collective, mesh: Mesh) -> int:
    return math.prod(mesh.size(a) for a in named_axes(step))


def describe(step: Collective, show=lambda axes: axes) -> str:
    """Short human form, e.g. `all_to_all {y} dim 1->0`; `show` lifts atoms to refs."""
    def per_dim(axes: PerDim) -> str:
        return " ".join(f"{{{','.join(show(d))}}}" for d in axes)
    if isinstance(step, (AllSlice, AllGather)):
        return f"{step.op} {per_dim(step.axes)}"
    if isinstance(step, AllToAll):
        return f"all_to_all {{{','.join(show(step.axes))}}} dim {step.src_dim}->{step.dst_dim}"
    return f"{step.op} -> " + "[" + ",".join("{" + ",".join(show(d)) + "}"
                                            for d in step.layout.dims) + "]"
