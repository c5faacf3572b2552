"""Starting MPI programs from tests (subprocesses under the installed mpiexec)."""

import json
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
    full = dict(os.environ, **(env or {}))
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env=full, start_new_session=True)


def memory_rows(tmp_path, plans: list, nprocs: int = 8) -> list[dict]:
    """Run `plans` under tests/mpi_programs/memory_check.py: one row per plan, with each
    rank's element check and byte counts (runtime count, tracemalloc) and the proved peak."""
    from redist.core.plans.planjson import plan_to_json
    f = tmp_path / "plans.json"
    f.write_text(json.dumps([plan_to_json(pl, with_figures=False) for pl in plans]))
    r = mpirun(nprocs, "memory_check.py", str(f), timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == len(plans)
    return rows
