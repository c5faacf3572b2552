"""redist.jax (DESIGN §12) on 8 host CPU devices: conversions, reshard == device_put, the
compiled program holds exactly the plan's collectives, unverified plans are refused."""

import math
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")

from jax.sharding import AxisType, NamedSharding  # noqa: E402
from jax.sharding import Mesh as JaxMesh  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

from redist.api import synthesize  # noqa: E402
from redist.core.errors import RedistError  # noqa: E402
from redist.core.model.dtypes import same_bits  # noqa: E402
from redist.core.model.layout import Layout  # noqa: E402
from redist.core.model.syntax import parse_layout, parse_mesh  # noqa: E402
from redist.jax import (  # noqa: E402
    clear_caches,
    compile_plan,
    layout_from_spec,
    mesh_from_jax,
    plan_for,
    reshard,
    to_jax_mesh,
    to_named_sharding,
    to_partition_spec,
)

from cases import CASES  # noqa: E402
from strategies import layouts, meshes_of  # noqa: E402

pytestmark = pytest.mark.skipif(len(jax.devices()) < 8, reason="needs 8 host devices "
                                "(XLA_FLAGS=--xla_force_host_platform_device_count=8)")
SMALL = {"transpose": (16, 16), "replace-axis": (16, 16), "gather-all": (8, 8, 8),
         "swap-3d": (8, 8, 8), "reorder": (16, 16), "paper-1d": (6,)}
MESHES = ["x=2,y=4", "x=4,y=2", "x=2,y=2,z=2", "x=8", "x=8,y=1"]
COLLECTIVE = re.compile(r" (all-gather|all-to-all|collective-permute)(-start)?\(")


def _array(jmesh, shape, layout, dtype=np.float32):
    x = jnp.arange(math.prod(shape), dtype=dtype).reshape(shape)
    return jax.device_put(x, to_named_sharding(jmesh, layout))


@settings(deadline=None)                  # building jax meshes is slow on a loaded machine
@given(st.sampled_from(MESHES), st.integers(1, 4), st.data())
def test_conversions_round_trip(mesh_text, rank, data):
    mesh = parse_mesh(mesh_text)
    jm = to_jax_mesh(mesh, jax.devices()[:mesh.num_devices])
    assert mesh_from_jax(jm) == mesh
    lay = data.draw(layouts(mesh, rank))
    assert layout_from_spec(to_partition_spec(lay), rank) == lay
    assert layout_from_spec(to_named_sharding(jm, lay).spec, rank) == lay


def test_partition_spec_forms_and_errors():
    assert layout_from_spec(P("x", None), 2) == Layout((("x",), ()))
    assert layout_from_spec(P(("x", "y")), 3) == Layout((("x", "y"), (), ()))
    with pytest.raises(RedistError, match="unconstrained"):
        layout_from_spec(P(P.UNCONSTRAINED, None), 2)
    with pytest.raises(RedistError, match="2 entries for an array of rank 1"):
        layout_from_spec(P("x", "y"), 1)


def test_synthesize_accepts_partition_specs():
    jm = to_jax_mesh(parse_mesh("x=2,y=4"))
    r = synthesize(mesh=jm, shape=(64, 64), dtype="bfloat16", src=P("x", None),
                   dst=P(None, "y"))
    assert r.verified and r.plan.problem.dtype == "bfloat16"


@pytest.mark.parametrize("name", [n for n in CASES if parse_mesh(CASES[n][0]).num_devices == 8])
def test_reshard_equals_device_put_on_design_cases(name):
    mesh, _, src, dst = CASES[name]
    m = parse_mesh(mesh)
    jm = to_jax_mesh(m)
    x = _array(jm, SMALL[name], parse_layout(src))
    dsh = to_named_sharding(jm, parse_layout(dst))
    y = reshard(x, dsh)
    assert y.sharding == dsh
    assert same_bits(np.asarray(y), np.asarray(jax.device_put(x, dsh)))


KINDS = ["make_mesh", "explicit", "auto", "Mesh"]


def user_mesh(kind: str, mesh):
    """A JAX mesh built as users build it (never through redist's helper)."""
    shape, names = tuple(s for _, s in mesh.axes), mesh.names
    devices = jax.devices()[:mesh.num_devices]
    if kind == "make_mesh":                       # JAX's default axis types (Explicit)
        return jax.make_mesh(shape, names, devices=devices)
    if kind in ("explicit", "auto"):
        t = AxisType.Explicit if kind == "explicit" else AxisType.Auto
        return jax.make_mesh(shape, names, axis_types=(t,) * len(names), devices=devices)
    return JaxMesh(np.asarray(devices, dtype=object).reshape(shape), names)


@st.composite
def jax_problems(draw):
    mesh = draw(meshes_of(8))
    rank = draw(st.integers(1, 3))
    src, dst = draw(layouts(mesh, rank)), draw(layouts(mesh, rank))
    shape = tuple(mesh.num_devices * draw(st.integers(1, 2)) for _ in range(rank))
    dtype = draw(st.sampled_from([np.float32, np.int32, "bfloat16"]))
    return mesh, shape, src, dst, dtype


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(problem=jax_problems())
def test_reshard_equals_device_put_on_random_problems(kind, problem):
    mesh, shape, src, dst, dtype = problem
    jm = user_mesh(kind, mesh)
    x = _array(jm, shape, src, jnp.dtype(dtype))
    dsh = to_named_sharding(jm, dst)
    y = reshard(x, dsh)
    assert y.sharding.is_equivalent_to(dsh, len(shape))
    assert same_bits(np.asarray(y), np.asarray(jax.device_put(x, dsh)))


# Plans that split an axis into sub-axes (the README's transpose among them).
SUB_AXES = [("x=2,y=4", (16, 16), P("x", "y"), P("y", "x")),
            ("x=2,y=4", (16, 16, 16), P("y", "x", None), P(None, "y", None)),
            ("x=2,y=4", (8, 16), P("x", None), P("y", None))]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mesh,shape,src,dst", SUB_AXES)
def test_sub_axis_plans_run_on_every_kind_of_mesh(kind, mesh, shape, src, dst):
    jm = user_mesh(kind, parse_mesh(mesh))
    x = _array(jm, shape, layout_from_spec(src, len(shape)))
    plan = plan_for(x, NamedSharding(jm, dst))
    assert plan.problem.mesh != plan.problem.base       # the plan really uses sub-axes
    y = reshard(x, NamedSharding(jm, dst))
    assert y.sharding == NamedSharding(jm, dst)
    assert np.array_equal(np.asarray(y), np.asarray(jax.device_put(x, NamedSharding(jm, dst))))


def _collectives(compiled_text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for m in COLLECTIVE.finditer(compiled_text):
        out[m.group(1)] = out.get(m.group(1), 0) + 1
    return out


@pytest.mark.parametrize("src,dst", [("[{x},{y}]", "[{y},{x}]"), ("[{x},{}]", "[{},{y}]"),
                                     ("[{x},{y}]", "[{},{}]"), ("[{x,y},{}]", "[{y,x},{}]"),
                                     ("[{x},{}]", "[{y},{x}]")])
def test_compiled_program_holds_exactly_the_plans_collectives(src, dst):
    jm = to_jax_mesh(parse_mesh("x=2,y=4"))
    x = _array(jm, (64, 64), parse_layout(src))
    plan = plan_for(x, to_named_sharding(jm, parse_layout(dst)))
    text = compile_plan(plan, jm).lower(x).compile().as_text()
    want: dict[str, int] = {}
    hlo = {"all_gather": "all-gather", "all_to_all": "all-to-all",
           "all_permute": "collective-permute"}
    for s in plan.steps:
        # a gather over several dims is one all-gather per dim (straight into it)
        n = sum(1 for d in s.axes if d) if s.op == "all_gather" else 1
        if s.op in hlo:
            want[hlo[s.op]] = want.get(hlo[s.op], 0) + n
    assert _collectives(text) == want, text[:3000]
    if "all-gather" not in want:            # no gather of the full array sneaks in
        assert "all-gather" not in text


def test_unverified_plans_are_refused_before_compiling():
    jm = to_jax_mesh(parse_mesh("x=2,y=4"))
    x = _array(jm, (64, 64), parse_layout("[{x},{y}]"))
    with pytest.raises(RedistError, match="refusing to compile an unverified plan"):
        reshard(x, to_named_sharding(jm, parse_layout("[{y},{x}]")), method="naive")


def test_dst_on_another_mesh_is_an_error():
    jm = to_jax_mesh(parse_mesh("x=2,y=4"))
    other = to_jax_mesh(parse_mesh("x=4,y=2"))
    x = _array(jm, (64, 64), parse_layout("[{x},{}]"))
    with pytest.raises(RedistError, match="on x's mesh"):
        reshard(x, NamedSharding(other, P(None, "y")))


def test_donation_gives_the_same_values():
    jm = to_jax_mesh(parse_mesh("x=2,y=4"))
    x = _array(jm, (64, 64), parse_layout("[{x},{y}]"))
    want = np.asarray(x).copy()
    y = reshard(x, to_named_sharding(jm, parse_layout("[{y},{x}]")), donate=True)
    assert same_bits(np.asarray(y), want)


# ---- inside the user's jit and grad -----------------------------------------------------

def _xy(kind="make_mesh", spec=None, shape=(16, 16)):
    spec = P("x", "y") if spec is None else spec
    jm = user_mesh(kind, parse_mesh("x=2,y=4"))
    return jm, _array(jm, shape, layout_from_spec(spec, len(shape)))


@pytest.mark.parametrize("dst", [P("y", "x"), P(None, "y"), P(), P(("y", "x"), None)])
def test_reshard_composes_with_user_code_inside_jit(dst):
    jm, x = _xy()
    dsh = NamedSharding(jm, dst)

    @jax.jit
    def step(a):
        return reshard(a * 2, dsh) + 1            # the sharding is read from a's type

    y = step(x)
    assert y.sharding.is_equivalent_to(dsh, 2)
    assert np.array_equal(np.asarray(y), np.asarray(x) * 2 + 1)


@pytest.mark.parametrize("kind", ["auto", "Mesh"])
def test_inside_jit_on_auto_axes_needs_src(kind):
    jm, x = _xy(kind)
    dsh = NamedSharding(jm, P("y", "x"))
    with pytest.raises(RedistError, match="pass src="):
        jax.jit(lambda a: reshard(a, dsh))(x)
    y = jax.jit(lambda a: reshard(a, dsh, src=NamedSharding(jm, P("x", "y"))))(x)
    assert y.sharding.is_equivalent_to(dsh, 2)
    assert np.array_equal(np.asarray(y), np.asarray(x))


@pytest.mark.parametrize("kind", ["make_mesh", "auto"])
@pytest.mark.parametrize("src,dst", [(P("x", "y"), P("y", "x")), (P("x", None), P(None, "y")),
                                     (P(("x", "y"), None), P())])
def test_grad_moves_the_cotangent_back_by_a_verified_plan(kind, src, dst, monkeypatch):
    from redist import plan_cache

    jm, x = _xy(kind, src)
    sx, dsh = NamedSharding(jm, src), NamedSharding(jm, dst)
    w = jax.device_put(jnp.arange(256.0).reshape(16, 16) % 7, dsh)
    proved = []
    real = plan_cache.prove
    monkeypatch.setattr(plan_cache, "prove", lambda p, *a: proved.append(p) or real(p, *a))
    clear_caches()

    def loss(a):
        return jnp.sum(reshard(a, dsh, src=sx) * w)

    g = jax.jit(jax.grad(loss))(x)
    assert np.array_equal(np.asarray(g), np.asarray(w))         # d/dx sum(x * w) = w
    assert g.sharding.is_equivalent_to(sx, 2)
    layouts_proved = {(p.show(p.src), p.show(p.dst)) for p in proved}
    fwd = (layout_from_spec(src, 2), layout_from_spec(dst, 2))
    assert layouts_proved == {fwd, fwd[::-1]}       # the forward and the reverse problem
    jax.jit(jax.grad(loss))(x)                      # same problem again: nothing re-proved
    assert len(proved) == 2


def test_a_repeated_call_proves_and_traces_nothing(monkeypatch):
    from redist import plan_cache

    jm, x = _xy()
    dsh = NamedSharding(jm, P("y", "x"))
    calls = []
    real = plan_cache.prove
    monkeypatch.setattr(plan_cache, "prove", lambda p, *a: calls.append(p) or real(p, *a))
    clear_caches()
    first = reshard(x, dsh)
    monkeypatch.setattr(plan_cache, "prove", lambda *a: pytest.fail("proved again"))
    for _ in range(3):
        assert np.array_equal(np.asarray(reshard(x, dsh)), np.asarray(first))
    jax.jit(lambda a: reshard(a, dsh))(x)           # a trace of the same problem
    assert len(calls) == 1
