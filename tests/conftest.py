"""Test session setup: JAX tests run on 8 host CPU devices (set before JAX is imported)."""

import os
import sys

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")


def _compile_project() -> None:
    """Where Python writes no bytecode (PYTHONDONTWRITEBYTECODE), every MPI rank and `redist`
    subprocess the tests start would compile the project's modules from source again
    (~0.08 s of CPU each, hundreds of processes): compile them once per session, next to
    the sources, in the process that starts the workers. Up-to-date files are skipped."""
    if not sys.dont_write_bytecode or os.environ.get("PYTEST_XDIST_WORKER"):
        return
    import compileall
    import importlib.util
    for pkg in ("redist", "redist.core", "redist.runtime", "redist.proofs"):
        for where in importlib.util.find_spec(pkg).submodule_search_locations or ():
            compileall.compile_dir(where, quiet=1)


_compile_project()
