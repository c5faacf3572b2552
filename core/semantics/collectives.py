"""The four collectives as values, with their typing rules (DESIGN §2).

A typing rule maps the layout before a step to the layout after it, or raises
TypingError saying which rule failed and why. Element semantics live in semantics.py;
byte costs in costs.py.
"""

from __future__ import annotations

import math
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


Collective = AllSlice | AllGather | AllToAll | AllPermute


def named_axes(step: Collective, before: Layout) -> tuple[str, ...]:
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
    axes, dims in range). Divisibility is the other half, checked by `apply`; proofs/
    states it as a hypothesis over symbolic sizes instead."""
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
    if isinstance(step, AllPermute):
        if step.layout.rank != before.rank:
            raise TypingError(f"all_permute: target {step.layout} has rank {step.layout.rank}, "
                              f"not {before.rank}")
        return step.layout
    raise RedistError(f"unknown collective {step!r}")


def apply(step: Collective, mesh: Mesh, shape: tuple[int, ...], before: Layout) -> Layout:
    """Typing rule: the layout after `step`, or TypingError."""
    for a in named_axes(step, before):
        if not mesh.has(a):
            raise TypingError(f"{step.op}: unknown axis {a!r}")
    after = reshape(step, before)
    local = before.local_shape(mesh, shape)
    if isinstance(step, AllSlice):
        for d, new in enumerate(step.axes):
            g = math.prod(mesh.size(a) for a in new)
            if local[d] % g:
                raise TypingError(f"all_slice: local extent {local[d]} of dim {d} is not "
                                  f"divisible by {g} (axes {{{','.join(new)}}})")
    elif isinstance(step, AllToAll):
        g = math.prod(mesh.size(a) for a in step.axes)
        if local[step.dst_dim] % g:
            raise TypingError(f"all_to_all: local extent {local[step.dst_dim]} of dst_dim "
                              f"{step.dst_dim} is not divisible by {g}")
    elif isinstance(step, AllPermute):
        try:
            after.validate(mesh, shape)
        except RedistError as e:
            raise TypingError(f"all_permute: target {e}") from None
        after_local = after.local_shape(mesh, shape)
        if after_local != local:
            raise TypingError(f"all_permute: local shape {after_local} of {after} "
                              f"differs from {local} of {before}")
    return after


def group_size(step: Collective, mesh: Mesh, before: Layout) -> int:
    return math.prod(mesh.size(a) for a in named_axes(step, before))


def describe(step: Collective) -> str:
    """Short human form, e.g. `all_to_all y: 1->0`."""
    def per_dim(axes: PerDim) -> str:
        return " ".join(f"{{{','.join(d)}}}" for d in axes)
    if isinstance(step, (AllSlice, AllGather)):
        return f"{step.op} {per_dim(step.axes)}"
    if isinstance(step, AllToAll):
        return f"all_to_all {{{','.join(step.axes)}}} dim {step.src_dim}->{step.dst_dim}"
    return f"all_permute -> {step.layout}"
