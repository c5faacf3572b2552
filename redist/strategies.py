"""Hypothesis strategies: random meshes, shapes (even, tight and uneven), layouts (with
sub-axes) and plans. Used by `redist regress` and by the test suite."""

from __future__ import annotations

import math

from hypothesis import assume
from hypothesis import strategies as st

from redist.core.errors import RedistError, TypingError
from redist.core.model.layout import Layout
from redist.core.model.mesh import Mesh
from redist.core.model.problem import Problem
from redist.core.ops import AllGather, AllPermute, AllSlice, AllToAll, apply
from redist.core.plans.plan import Plan

AXIS_NAMES = "xyzwuv"


@st.composite
def meshes(draw, max_axes: int = 4, max_size: int = 6, max_devices: int = 64) -> Mesh:
    n = draw(st.integers(1, max_axes))
    sizes = draw(st.lists(st.integers(1, max_size), min_size=n, max_size=n)
                 .filter(lambda s: math.prod(s) <= max_devices))
    return Mesh(tuple(zip(AXIS_NAMES, sizes, strict=False)))


def _divisors(n: int) -> list[int]:
    return [k for k in range(1, n + 1) if n % k == 0]


@st.composite
def axis_refs(draw, mesh: Mesh, sub_axes: bool) -> list[str]:
    """The mesh's axes, some split into disjoint sub-axes x(p)s (which may then land in
    different dims, or be replicated)."""
    out = []
    for name, size in mesh.axes:
        proper = [k for k in _divisors(size) if 1 < k < size]
        if sub_axes and proper and draw(st.booleans()):
            cut = draw(st.sampled_from(proper))
            out += [f"{name}(1){cut}", f"{name}({cut}){size // cut}"]
        else:
            out.append(name)
    return out


@st.composite
def layouts(draw, mesh: Mesh, rank: int, refs: list[str] | None = None) -> Layout:
    dims: list[list[str]] = [[] for _ in range(rank)]
    for a in draw(st.permutations(refs if refs is not None else list(mesh.names))):
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
        k = draw(st.sampled_from(_divisors(left)))
        sizes.append(k)
        left //= k
    sizes.append(left)
    return Mesh(tuple(zip(AXIS_NAMES, draw(st.permutations(sizes)), strict=False)))


def _shards(mesh: Mesh, layout: Layout, d: int) -> int:
    from redist.core.model.axes import resolve
    return math.prod(resolve(mesh, a).size for a in layout.dims[d])


@st.composite
def problems(draw, generous: bool | str = True, max_axes: int = 4, max_rank: int = 4,
             max_devices: int = 64, max_elements: int = 1 << 17, distinct: bool = True,
             mesh: Mesh | None = None, sub_axes: bool = False,
             dtypes=("float32", "int16", "float64")) -> Problem:
    """generous=True: every extent divisible by every product of axes (a normal-form plan
    always exists); False ("tight"): extents only fit src and dst; "uneven": any extents,
    also prime and smaller than the mesh (DESIGN §11)."""
    if mesh is None:
        mesh = draw(meshes(max_axes=max_axes, max_devices=max_devices))
    rank = draw(st.sampled_from([r for r in (0, 1, 2, 2, 3, 3, 4) if r <= max_rank]))
    refs = draw(axis_refs(mesh, sub_axes))
    src = draw(layouts(mesh, rank, refs))
    refs2 = draw(axis_refs(mesh, sub_axes)) if sub_axes and draw(st.booleans()) else refs
    dst = draw(layouts(mesh, rank, refs2))
    shape = []
    for d in range(rank):
        if generous == "uneven":
            top = 3 * max(_shards(mesh, src, d), _shards(mesh, dst, d))
            shape.append(draw(st.integers(1, max(2, top))))
            continue
        base = mesh.num_devices if generous else math.lcm(_shards(mesh, src, d),
                                                           _shards(mesh, dst, d))
        shape.append(base * draw(st.integers(1, 2)))
    st_shape = tuple(shape)
    if math.prod(st_shape) > max_elements and generous != "uneven":
        # Keep simulation cheap: shrink to the smallest valid extents.
        st_shape = tuple(mesh.num_devices if generous else
                         math.lcm(_shards(mesh, src, d), _shards(mesh, dst, d))
                         for d in range(rank))
    assume(math.prod(st_shape) <= max_elements)
    try:
        p = Problem(mesh, st_shape, draw(st.sampled_from(dtypes)), src, dst)
    except RedistError:                   # sub-axes of src and dst that do not nest
        assume(False)
    if distinct:
        assume(p.src != p.dst)
    return p


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
    return Plan(problem.with_ends(problem.src, lay), tuple(steps))


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
def random_plans(draw, generous: bool | str = True, max_len: int = 5, **kw) -> Plan:
    return random_steps(draw, draw(problems(generous=generous, **kw)), max_len)
