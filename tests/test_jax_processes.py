"""redist.jax beyond one process: two JAX processes of 4 CPU devices each (gloo
collectives, a localhost coordinator) reshard arrays that span both, and get
jax.device_put's values; processes that would run different plans fail together
(tests/jax_programs/two_processes.py)."""

import os
import socket
import subprocess
import sys

import pytest

jax = pytest.importorskip("jax")

HERE = os.path.dirname(os.path.abspath(__file__))


def _cpu_collectives() -> bool:
    from jax._src.lib import _jax
    return hasattr(_jax, "make_gloo_tcp_collectives")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not _cpu_collectives(), reason="this jaxlib has no CPU collectives (gloo)")
def test_two_processes_reshard_like_device_put(tmp_path):
    port = str(_free_port())
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}   # 4 devices each
    env["JAX_PLATFORMS"] = "cpu"
    script = os.path.join(HERE, "jax_programs", "two_processes.py")
    logs = [open(tmp_path / f"p{k}.log", "w+") for k in range(2)]
    procs = [subprocess.Popen([sys.executable, script, str(k), port], stdout=logs[k],
                              stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
                              start_new_session=True)
             for k in range(2)]
    try:
        codes = [p.wait(timeout=240) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    out = []
    for f in logs:
        f.seek(0)
        out.append(f.read())
        f.close()
    assert codes == [0, 0], "\n---\n".join(o[-3000:] for o in out)
    for k, o in enumerate(out):
        assert o.count(f"process {k}:") == 6 and "disagreement refused" in o, o[-2000:]
