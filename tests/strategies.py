"""Hypothesis strategies: random meshes, shapes, layouts and plans."""

from __future__ import annotations

import math

from hypothesis import assume
from hypothesis import strategies as st

from redist.core.errors import TypingError
from redist.core.model.layout import Layout
from redist.core.model.mesh import Mesh
from redist.core.model.problem import Problem
from redist.core.plans.plan import Plan
from redist.core.semantics.collectives import AllGather, AllPermute, AllSlice, AllToAll, apply

AXIS_NAMES = "xyzwuv"


@st.composite
def meshes(draw, max_axes: int = 4, max_size: int = 6, max_devices: int = 64) -> Mesh:
    n = draw(st.integers(1, max_axes))
    sizes = draw(st.lists(st.integers(1, max_size), min_size=n, max_size=n)
                 .filter(lambda s: math.prod(s) <= max_devices))
    return Mesh(tuple(zip(AXIS_NAMES, sizes, strict=False)))


@st.composite
def layouts(draw, mesh: Mesh, rank: int) -> Layout:
    dims: list[list[str]] = [[] for _ in range(rank)]
    for a in draw(st.permutations(mesh.names)):
        d = draw(st.integers(-1, rank - 1)) if rank else -1
        if d >= 0:
            dims[d].append(a)
    return Layout(tuple(tuple(d) for d in dims))


@st.composite
def meshes_of(draw, devices: int, max_axes: int = 3) -> Mesh:
    """A mesh of exactly `devices` devices: a random factorisation into 1-3 axes (size-1
    axes included)."""
    n = draw(st.integers(1, max_axes))
    sizes, left = [], devices
    for _ in range(n - 1):
        divisors = [k for k in range(1, left + 1) if left % k == 0]
        k = draw(st.sampled_from(divisors))
        sizes.append(k)
        left //= k
    sizes.append(left)
    return Mesh(tuple(zip(AXIS_NAMES, draw(st.permutations(sizes)), strict=False)))


@st.composite
def problems(draw, generous: bool = True, max_axes: int = 4, max_rank: int = 4,
             max_devices: int = 64, max_elements: int = 1 << 17,
             distinct: bool = True, mesh: Mesh | None = None) -> Problem:
    """generous: every extent is divisible by every product of axes, so a normal-form
    plan always exists; otherwise extents only fit src and dst (tight)."""
    if mesh is None:
        mesh = draw(meshes(max_axes=max_axes, max_devices=max_devices))
    rank = draw(st.sampled_from([r for r in (0, 1, 2, 2, 3, 3, 4) if r <= max_rank]))
    src = draw(layouts(mesh, rank))
    dst = draw(layouts(mesh, rank))
    if distinct:
        assume(src != dst)
    shape = []
    for d in range(rank):
        base = mesh.num_devices if generous else math.lcm(src.shards(mesh, d),
                                                            dst.shards(mesh, d))
        shape.append(base * draw(st.integers(1, 2)))
    st_shape = tuple(shape)
    if math.prod(st_shape) > max_elements:
        # Keep simulation cheap: shrink to the smallest valid extents.
        st_shape = tuple(mesh.num_devices if generous else
                         math.lcm(src.shards(mesh, d), dst.shards(mesh, d)) for d in range(rank))
    assume(math.prod(st_shape) <= max_elements)
    dtype = draw(st.sampled_from(["float32", "int16", "float64"]))
    return Problem(mesh, st_shape, dtype, src, dst)


def random_steps(draw, problem: Problem, max_len: int = 5) -> Plan:
    """A random well-typed plan starting at problem.src (its dst is ignored)."""
    mesh, shape = problem.mesh, problem.shape
    lay = problem.src
    steps = []
    for _ in range(draw(st.integers(0, max_len))):
        options = _candidate_steps(mesh, shape, lay)
        if not options:
            break
        step = draw(st.sampled_from(options))
        lay = apply(step, mesh, shape, lay)
        steps.append(step)
    final = Problem(mesh, shape, problem.dtype, problem.src, lay)
    return Plan(final, tuple(steps))


def _candidate_steps(mesh: Mesh, shape, lay: Layout) -> list:
    rank = lay.rank
    out = []
    free = [a for a in mesh.names if a not in lay.used_axes()]

    def per(d: int, axes: tuple[str, ...]):
        return tuple(axes if e == d else () for e in range(rank))
    for d in range(rank):
        for a in free:
            out.append(AllSlice(per(d, (a,))))
        for k in range(1, len(lay.dims[d]) + 1):
            suf = lay.dims[d][len(lay.dims[d]) - k:]
            out.append(AllGather(per(d, suf)))
            out += [AllToAll(d, t, suf) for t in range(rank) if t != d]
        if len(lay.dims[d]) > 1:
            rev = tuple(reversed(lay.dims[d]))
            out.append(AllPermute(Layout(lay.dims[:d] + (rev,) + lay.dims[d + 1:])))
    good = []
    for s in out:
        try:
            apply(s, mesh, shape, lay)
            good.append(s)
        except TypingError:
            pass
    return good


@st.composite
def random_plans(draw, generous: bool = True, max_len: int = 5, **kw) -> Plan:
    return random_steps(draw, draw(problems(generous=generous, **kw)), max_len)
