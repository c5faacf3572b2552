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

from jax.sharding import NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

from redist.api import synthesize  # noqa: E402
from redist.core.errors import RedistError  # noqa: E402
from redist.core.model.dtypes import same_bits  # noqa: E402
from redist.core.model.layout import Layout  # noqa: E402
from redist.core.model.syntax import parse_layout, parse_mesh  # noqa: E402
from redist.jax import (  # noqa: E402
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
from strategies import layouts  # noqa: E402

pytestmark = pytest.mark.skipif(len(jax.devices()) < 8, reason="needs 8 host devices "
                                "(XLA_FLAGS=--xla_force_host_platform_device_count=8)")
SMALL = {"transpose": (16, 16), "replace-axis": (16, 16), "gather-all": (8, 8, 8),
         "swap-3d": (8, 8, 8), "reorder": (16, 16), "paper-1d": (6,)}
MESHES = ["x=2,y=4", "x=4,y=2", "x=2,y=2,z=2", "x=8", "x=8,y=1"]
COLLECTIVE = re.compile(r" (all-gather|all-to-all|collective-permute)(-start)?\(")


def _array(jmesh, shape, layout, dtype=np.float32):
    x = jnp.arange(math.prod(shape), dtype=dtype).reshape(shape)
    return jax.device_put(x, to_named_sharding(jmesh, layout))


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


@st.composite
def jax_problems(draw):
    mesh = parse_mesh(draw(st.sampled_from(MESHES)))
    rank = draw(st.integers(1, 3))
    src, dst = draw(layouts(mesh, rank)), draw(layouts(mesh, rank))
    shape = tuple(mesh.num_devices * draw(st.integers(1, 2)) for _ in range(rank))
    dtype = draw(st.sampled_from([np.float32, np.int32, "bfloat16"]))
    return mesh, shape, src, dst, dtype


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(jax_problems())
def test_reshard_equals_device_put_on_random_problems(problem):
    mesh, shape, src, dst, dtype = problem
    jm = to_jax_mesh(mesh)
    x = _array(jm, shape, src, jnp.dtype(dtype))
    dsh = to_named_sharding(jm, dst)
    y = reshard(x, dsh)
    assert y.sharding.is_equivalent_to(dsh, len(shape))
    assert same_bits(np.asarray(y), np.asarray(jax.device_put(x, dsh)))


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
        if s.op in hlo:
            want[hlo[s.op]] = want.get(hlo[s.op], 0) + 1
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
