"""Between two meshes inside one JAX process (DESIGN §15): 8 host devices split into two
meshes (disjoint and overlapping); reshard_between equals jax.device_put."""

import numpy as np
import pytest

jax = pytest.importorskip("jax")

from jax.sharding import Mesh, NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

from redist.core.errors import RedistError  # noqa: E402
from redist.jax_cross import plan_between, reshard_between  # noqa: E402

pytestmark = pytest.mark.skipif(len(jax.devices()) < 8, reason="needs 8 host devices")


@pytest.mark.parametrize("b_devices, axes, spec", [
    (slice(4, 8), ("dp", "tp"), P(None, "tp")),           # replicas: transfer + all_gather
    (slice(4, 8), ("dp", "tp"), P(("dp", "tp"), None)),   # no replicas: transfer alone
    (slice(2, 6), ("u", "v"), P("v", "u")),                # overlapping devices 2, 3
])
def test_reshard_between_equals_device_put(b_devices, axes, spec):
    devs = jax.devices()
    a = Mesh(np.array(devs[:4]).reshape(2, 2), ("fsdp", "tp"))
    b = Mesh(np.array(devs[b_devices]).reshape(2, 2), axes)
    x = jax.device_put(np.arange(64 * 32, dtype=np.float32).reshape(64, 32),
                       NamedSharding(a, P("fsdp", "tp")))
    dst = NamedSharding(b, spec)
    y = reshard_between(x, dst)
    assert y.sharding == dst
    assert np.array_equal(np.asarray(y), np.asarray(jax.device_put(x, dst)))
    fig = plan_between(x, dst).figures()
    assert fig.cross_mesh_bytes == fig.cross_mesh_lower_bound_bytes


def test_reshard_between_refuses_other_inputs():
    with pytest.raises(RedistError, match="NamedSharding"):
        reshard_between(np.zeros(4), None)


@pytest.mark.parametrize("b_devices, shape, spec", [
    (slice(2, 8), (3, 2), P("tp", None)),            # 5 columns over 3 replicas: 2, 2, 1
    (slice(4, 8), (2, 2), P("tp", None)),            # 5 columns over 2 replicas: 3, 2
    (slice(1, 5), (2, 2), P(None, None)),            # overlapping; 2 rows over 4: empty blocks
])
def test_reshard_between_uneven_transfer_layout(b_devices, shape, spec):
    # src and dst divide the array (JAX requires it); the transfer's layout does not.
    devs = jax.devices()
    a = Mesh(np.array(devs[:2]), ("x",))
    b = Mesh(np.array(devs[b_devices]).reshape(shape), ("dp", "tp"))
    x = jax.device_put(np.arange(10, dtype=np.float32).reshape(2, 5) + 1,
                       NamedSharding(a, P("x")))
    dst = NamedSharding(b, spec)
    plan = plan_between(x, dst)
    assert plan.mid.uneven and plan.b_plan.steps
    y = reshard_between(x, dst)
    assert y.sharding == dst
    assert np.array_equal(np.asarray(y), np.asarray(jax.device_put(x, dst)))
    for s in y.addressable_shards:                   # every block exact, padding cut off
        assert np.array_equal(np.asarray(s.data), np.asarray(x)[s.index])
    fig = plan.figures()
    assert fig.cross_mesh_bytes == fig.cross_mesh_lower_bound_bytes
