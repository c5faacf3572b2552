"""A redistribution problem: mesh, global shape, dtype, source and destination layouts.

`Problem(mesh, shape, dtype, src, dst)` takes the user's mesh and layouts, which may name
sub-axes (`x(1)2`) and size-1 axes; it checks them and keeps them *lowered* to atoms
(axes.py): `problem.mesh` is then the mesh of atoms and `problem.base` the user's mesh.
Everything that computes works on the atoms; `problem.show(layout)` and the plan format
lift a layout back to the user's canonical form.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

from redist.core.errors import RedistError
from redist.core.limits import MAX_EXTENT, MAX_RANK, check
from redist.core.model.axes import Atoms, Ref, check_disjoint, lift_axes, refine, resolve
from redist.core.model.dtypes import dtype_name, itemsize
from redist.core.model.layout import Layout
from redist.core.model.mesh import Mesh

__all__ = ["Problem", "dtype_name", "itemsize", "lower_layout", "lift_layout",
           "check_user_layout"]


def check_user_layout(base: Mesh, layout: Layout, shape: tuple[int, ...], what: str) -> None:
    """A layout as a user wrote it: rank, known axes and sub-axes, none overlapping."""
    if layout.rank != len(shape):
        raise RedistError(f"{what} {layout} has {layout.rank} dims but the array has rank "
                          f"{len(shape)}")
    refs = []
    for d, dim in enumerate(layout.dims):
        for a in dim:
            try:
                refs.append((a, resolve(base, a)))
            except RedistError as e:
                raise RedistError(f"{what} {layout}: dim {d}: {e}") from None
    check_disjoint(refs, f"{what} {layout}")
    pending: list[tuple[str, Ref]] = []
    for a in layout.sum:
        try:
            r = resolve(base, a)
        except RedistError as e:
            raise RedistError(f"{what} {layout}: pending axis: {e}") from None
        for text, other in refs:
            if r.overlaps(other):
                d = next(d for d, dim in enumerate(layout.dims) if text in dim)
                raise RedistError(f"{what} {layout}: pending axis {a!r} also shards dim {d}"
                                  + ("" if text == a else f" (as {text})"))
        pending.append((a, r))
    check_disjoint(pending, f"{what} {layout}: pending axes")


def lower_layout(atoms: Atoms, layout: Layout) -> Layout:
    return Layout(tuple(atoms.lower_all(dim) for dim in layout.dims),
                  atoms.lower_all(layout.sum))


def lift_layout(base: Mesh, layout: Layout) -> Layout:
    """A layout of atoms (or of refs) in the user's canonical form: adjacent sub-axes
    merged, in dims and in the pending set."""
    return Layout(tuple(lift_axes(base, dim) for dim in layout.dims),
                  lift_axes(base, layout.sum))


@dataclass(frozen=True)
class Problem:
    mesh: Mesh
    shape: tuple[int, ...]
    dtype: str
    src: Layout
    dst: Layout
    base: Mesh | None = None     # the user's mesh; set by __post_init__ when not given

    def __post_init__(self) -> None:
        if not isinstance(self.mesh, Mesh):
            raise RedistError(f"Problem: mesh must be a Mesh (parse_mesh('x=2,y=4')), not "
                              f"{type(self.mesh).__name__}")
        if self.base is not None and not isinstance(self.base, Mesh):
            raise RedistError(f"Problem: base must be a Mesh, not {type(self.base).__name__}")
        shape = tuple(self.shape) if isinstance(self.shape, (list, tuple)) else self.shape
        if not isinstance(shape, tuple):
            raise RedistError(f"shape {self.shape!r:.80} must be a tuple of extents")
        check(len(shape), MAX_RANK, "the array rank", "MAX_RANK")
        if any((not isinstance(n, int)) or isinstance(n, bool) or n < 1 for n in shape):
            raise RedistError(f"shape {shape!r:.80} must have integer extents >= 1")
        for n in shape:
            check(n, MAX_EXTENT, "an array extent", "MAX_EXTENT")
        check(math.prod(shape), MAX_EXTENT, "the number of array elements", "MAX_EXTENT")
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "dtype", dtype_name(self.dtype))
        if self.base is None:
            # From the user: check the layouts against their mesh, then lower to atoms.
            for what, lay in (("src", self.src), ("dst", self.dst)):
                if not isinstance(lay, Layout):
                    raise RedistError(f"{what} must be a Layout, not {type(lay).__name__}")
                check_user_layout(self.mesh, lay, shape, what)
            # Canonical form first (adjacent sub-axes merged), so equal layouts are equal.
            src = lift_layout(self.mesh, self.src)
            dst = lift_layout(self.mesh, self.dst)
            object.__setattr__(self, "src", src)
            object.__setattr__(self, "dst", dst)
            atoms = refine(self.mesh, src.used_axes() + dst.used_axes() + src.sum + dst.sum)
            object.__setattr__(self, "base", self.mesh)
            object.__setattr__(self, "mesh", atoms.mesh)
            object.__setattr__(self, "src", lower_layout(atoms, self.src))
            object.__setattr__(self, "dst", lower_layout(atoms, self.dst))
        elif self.base.num_devices != self.mesh.num_devices:
            raise RedistError(f"mesh {self.mesh} is not a refinement of {self.base}")
        self.src.validate(self.mesh, shape)
        self.dst.validate(self.mesh, shape)
        extra = [a for a in self.dst.sum if a not in self.src.sum]
        if extra:
            raise RedistError(f"dst {self.show(self.dst)} has pending axes "
                              f"{{{','.join(self.show_axes(tuple(extra)))}}} that src "
                              f"{self.show(self.src)} does not: a plan reduces pending sums, "
                              "it does not create them")

    @property
    def pending(self) -> bool:
        """Does src carry a pending sum (DESIGN §14)?"""
        return bool(self.src.sum)

    @cached_property
    def itemsize(self) -> int:
        return itemsize(self.dtype)

    def local_bytes(self, layout: Layout) -> int:
        """Bytes of every device's (padded) buffer under `layout`."""
        return layout.local_size(self.mesh, self.shape) * self.itemsize

    @property
    def bound_bytes(self) -> int:
        """max(local(src), local(dst)): the largest block, ceil(N/S)-sized, of either end."""
        return max(self.local_bytes(self.src), self.local_bytes(self.dst))

    @property
    def generous(self) -> bool:
        """Every extent divisible by the product of all mesh axes: no layout pads."""
        return all(n % self.mesh.num_devices == 0 for n in self.shape)

    @property
    def uneven(self) -> bool:
        """Do src or dst have blocks of unequal valid extent (DESIGN §11)?"""
        return any(n % lay.shards(self.mesh, d) for lay in (self.src, self.dst)
                   for d, n in enumerate(self.shape))

    def show(self, layout: Layout) -> Layout:
        """A layout of atoms in the user's canonical form (adjacent sub-axes merged)."""
        assert self.base is not None
        return lift_layout(self.base, layout)

    def show_axes(self, axes: tuple[str, ...]) -> tuple[str, ...]:
        assert self.base is not None
        return lift_axes(self.base, axes)

    def refined(self, extra_cuts: dict[str, set[int]]) -> Problem:
        """The same problem on a finer mesh of atoms (axes split at `extra_cuts` too)."""
        assert self.base is not None
        src, dst = self.show(self.src), self.show(self.dst)
        atoms = refine(self.base, src.used_axes() + dst.used_axes() + src.sum + dst.sum,
                       extra_cuts)
        return Problem(atoms.mesh, self.shape, self.dtype, lower_layout(atoms, src),
                       lower_layout(atoms, dst), base=self.base)

    def atoms(self) -> Atoms:
        """This problem's refinement of the user's mesh."""
        assert self.base is not None
        return refine(self.base, self.mesh.names)

    def with_ends(self, src: Layout, dst: Layout) -> Problem:
        """The same mesh of atoms, array and dtype between other layouts of atoms."""
        return Problem(self.mesh, self.shape, self.dtype, src, dst, base=self.base)
