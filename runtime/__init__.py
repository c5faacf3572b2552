"""Thin MPI runtime: executes verified plans on MPI ranks (DESIGN §7).

    from redist.runtime import redistribute
    out = redistribute(local, plan, comm)              # a verified Plan
    out = redistribute(local, (mesh, shape, src, dst), comm)
"""

from redist.runtime.api import redistribute, redistribute_with_stats

__all__ = ["redistribute", "redistribute_with_stats"]
