"""redist.jax.reshard of a JAX array with `unreduced` axes (DESIGN §14): the call a user
makes, on a mesh from jax.make_mesh, the partial sums coming out of a matmul whose
contracted dim is split by y; eager and inside jax.jit."""

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")

from jax.sharding import NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import redist.jax as rj  # noqa: E402

pytestmark = [
    pytest.mark.skipif(len(jax.devices()) < 8, reason="needs 8 host devices"),
    pytest.mark.skipif(not hasattr(P(), "unreduced"), reason="this JAX has no unreduced"),
]


def _operands(mesh):
    rng = np.random.default_rng(3)
    # small integers: float32 sums are exact, so results compare exactly
    a = rng.integers(-8, 8, size=(64, 32)).astype(np.float32)
    b = rng.integers(-8, 8, size=(32, 16)).astype(np.float32)
    return (a, b, jax.device_put(a, NamedSharding(mesh, P("x", "y"))),
            jax.device_put(b, NamedSharding(mesh, P("y", None))))


def _partial(a, b):
    # the contraction over y leaves each y-group holding one addend: unreduced over y
    return jnp.einsum("ij,jk->ik", a, b, out_sharding=P("x", None, unreduced={"y"}))


@pytest.mark.parametrize("dst", [P(("x", "y"), None), P("x", None), P(None, "y")])
def test_reshard_reduces_unreduced_axes(dst):
    mesh = jax.make_mesh((2, 4), ("x", "y"), devices=jax.devices()[:8])
    a, b, ja, jb = _operands(mesh)
    with jax.set_mesh(mesh):
        c = jax.jit(_partial)(ja, jb)
    assert c.sharding.spec.unreduced == frozenset({"y"})
    out = rj.reshard(c, NamedSharding(mesh, dst))
    assert out.sharding.spec == dst
    np.testing.assert_array_equal(np.asarray(out), a @ b)


def test_reshard_of_unreduced_inside_jit():
    mesh = jax.make_mesh((2, 4), ("x", "y"), devices=jax.devices()[:8])
    a, b, ja, jb = _operands(mesh)

    @jax.jit
    def f(a, b):
        return rj.reshard(_partial(a, b), P(None, "y"))
    with jax.set_mesh(mesh):
        out = f(ja, jb)
    assert out.sharding.spec == P(None, "y")
    np.testing.assert_array_equal(np.asarray(out), a @ b)
