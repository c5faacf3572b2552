"""Documented limits, checked before any work (docs/limits.md lists them for users).

Plan files and certificates come from other people: their size, and the size of the
problem they describe, are bounded so that reading or checking one takes bounded time
and memory. Each limit has a name that appears in the error message.
"""

from __future__ import annotations

from .errors import RedistError

MAX_PLAN_FILE_BYTES = 4 << 20          # a plan file (JSON)
MAX_CERTIFICATE_BYTES = 64 << 20       # certificate.json, obligations inline included
MAX_OBLIGATION_BYTES = 32 << 20        # one obligations/*.smt2 file
MAX_STEPS = 64                         # steps in a plan
MAX_AXES = 32                          # mesh axes
MAX_DEVICES = 1 << 20                  # devices (MPI ranks) in a mesh
MAX_RUN_RANKS = 1024                   # ranks `redist run` starts on this machine
MAX_RANK = 16                          # array dimensions
MAX_EXTENT = 1 << 62                   # one array extent; also the element count
MAX_NAME = 64                          # characters in an axis name
MAX_JSON_DEPTH = 64                    # nesting depth of a plan or certificate document
MAX_SHOW_DEVICES = 1 << 16             # devices `redist show` draws cell by cell


def check(value: int, limit: int, what: str, name: str) -> None:
    """Raise a one-line RedistError naming the limit when value exceeds it."""
    if value > limit:
        shown = f"{value:,}" if value < 10 ** 30 else "astronomical"
        raise RedistError(f"{what} is {shown}, over the limit {name} = {limit:,}")
