"""Thin MPI runtime: executes verified plans on MPI ranks (DESIGN §7).

    from redist.runtime import redistribute
    out = redistribute(local, plan, comm)              # a verified Plan
    out = redistribute(local, (mesh, shape, src, dst), comm)

`redistribute` is imported on first use: importing mpi4py's MPI initialises MPI, which
the launcher (`redist run`, a process that is no MPI rank) must not do, or MPI's own
signal handling and finalisation sit in the way of Ctrl-C.
"""

from __future__ import annotations

from typing import Any

__all__ = ["redistribute", "redistribute_with_stats"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from redist.runtime import api
        return getattr(api, name)
    raise AttributeError(f"module 'redist.runtime' has no attribute {name!r}")
