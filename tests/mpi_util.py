"""Starting MPI programs from tests (subprocesses under the installed mpiexec)."""

import os
import subprocess
import sys

from redist.runtime.launch import find_mpiexec

HERE = os.path.dirname(os.path.abspath(__file__))


def mpirun(nprocs: int, program: str, *args: str, timeout: float = 180,
           env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [find_mpiexec(), "-n", str(nprocs), sys.executable,
           os.path.join(HERE, "mpi_programs", program), *args]
    # A session of its own: no signal the job's launcher sends to its process group can
    # reach the pytest worker.
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, **(env or {})), start_new_session=True)
