"""One of two JAX processes (4 CPU devices each, gloo collectives) sharing a 2x4 mesh:
redist reshards across processes, eagerly and inside jit, and every shard this process
holds must equal jax.device_put's and the global array's.

    python two_processes.py PROCESS_ID COORDINATOR_PORT
"""

import sys

import jax

jax.config.update("jax_num_cpu_devices", 4)
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.distributed.initialize(coordinator_address=f"localhost:{sys.argv[2]}", num_processes=2,
                           process_id=int(sys.argv[1]), initialization_timeout=60)

import numpy as np  # noqa: E402
from jax.sharding import NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

from redist.jax import reshard  # noqa: E402

assert jax.process_count() == 2 and jax.device_count() == 8, jax.devices()
mesh = jax.make_mesh((2, 4), ("x", "y"))
g = np.arange(32 * 16, dtype=np.float32).reshape(32, 16)
src = NamedSharding(mesh, P("x", "y"))
x = jax.make_array_from_callback(g.shape, src, lambda idx: g[idx])
for spec in [P("y", "x"), P(None, "y"), P("y", None), P(("y", "x"), None), P()]:
    dst = NamedSharding(mesh, spec)
    want = jax.device_put(x, dst)
    for y in (reshard(x, dst), jax.jit(lambda a, dst=dst: reshard(a * 1, dst))(x)):
        assert y.sharding.is_equivalent_to(dst, 2)
        for a, b in zip(y.addressable_shards, want.addressable_shards, strict=True):
            assert a.index == b.index, (spec, a.index, b.index)
            assert np.array_equal(np.asarray(a.data), np.asarray(b.data)), spec
            assert np.array_equal(np.asarray(a.data), g[a.index]), spec
    print(f"process {jax.process_index()}: {spec} ok", flush=True)

# Processes that would run different programs fail together with a clear error, not a hang.
import redist.plan_cache  # noqa: E402
from redist.core.errors import RedistError  # noqa: E402

if jax.process_index() == 1:
    redist.plan_cache.plan_sha256 = lambda plan: "0" * 64
try:
    reshard(x, NamedSharding(mesh, P(None, ("x", "y"))))
    raise SystemExit("a disagreement went unnoticed")
except RedistError as e:
    assert "planned a different program" in str(e), e
    print(f"process {jax.process_index()}: disagreement refused", flush=True)
jax.distributed.shutdown()
