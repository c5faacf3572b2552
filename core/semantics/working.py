"""Working memory of each step as the MPI runtime allocates it (DESIGN §3 runtime peak, §7).

One definition for both sides: the runtime sizes its scratch with `chunk_elements`, and
the figures (and the memory claim) count `step_working_bytes`, so a plan proved within a
bound or budget is measured within it. Per device, in bytes, buffers padded as the runtime
pads them (DESIGN §11); the input is the runtime's (handed over, as `redist run` does).

  all_slice     the input (a view, or compacted and padded in place).
  all_permute   the block + one chunk (if any device's block changes).
  all_to_all    the block (padded in place when dst_dim is held whole) + one chunk.
  all_gather    the output, grown in place from the input (trimmed in place when the
                gathered dim is held whole).
  all_exchange  input + output (one Alltoallw).
Buffers grow and shrink with realloc; the allocator may move a grown buffer (a copy that
neither count sees), which glibc avoids for large, mmap-backed buffers (mremap).
"""

from __future__ import annotations

import math

from redist.core.model.layout import Layout
from redist.core.model.problem import Problem
from redist.core.semantics.blocks import changed_count
from redist.core.semantics.collectives import (
    AllExchange,
    AllGather,
    AllPermute,
    AllSlice,
    AllToAll,
    Collective,
    group_size,
)

# The scratch of an in-place step: this fraction of its block (MPI messages and local
# transposes go through it), so a step holds at most 1/16 more than its block.
CHUNK_DIVISOR = 16


def chunk_elements(block_elements: int) -> int:
    return max(1, block_elements // CHUNK_DIVISOR)


def runtime_limit(limit_bytes: int, itemsize: int) -> int:
    """What the runtime may hold under a bound or budget: it plus one chunk of it (plus,
    per step, its padding: `step_padding_bytes`)."""
    return limit_bytes + chunk_elements(limit_bytes // itemsize) * itemsize


def step_working_bytes(problem: Problem, step: Collective, before: Layout,
                       after: Layout) -> int:
    """Bytes a device holds at once while the runtime runs this step."""
    mesh, shape, item = problem.mesh, problem.shape, problem.itemsize
    n_b = before.local_shape(mesh, shape)
    n_a = after.local_shape(mesh, shape)
    lb, la = math.prod(n_b), math.prod(n_a)
    if isinstance(step, AllSlice):
        return lb * item
    if isinstance(step, AllPermute):
        moves = changed_count(mesh, before, after) > 0
        return (lb + chunk_elements(lb) if moves else lb) * item
    if isinstance(step, AllExchange):
        return (lb + la) * item
    g = group_size(step, mesh)
    if isinstance(step, AllGather):
        return lb * g * item
    assert isinstance(step, AllToAll)
    t = step.dst_dim
    padded = lb // n_b[t] * (g * n_a[t]) if n_b[t] else 0
    return (max(lb, padded) + chunk_elements(padded)) * item


def step_padding_bytes(problem: Problem, step: Collective, before: Layout,
                       after: Layout) -> int:
    """Of a step's working bytes, the pieces past the array's end (DESIGN §11) that the
    runtime holds beyond both blocks: a gather or all-to-all into a dim held whole moves G
    equal (padded) pieces and trims after. Zero when extents divide."""
    if not isinstance(step, (AllGather, AllToAll)):
        return 0
    mesh, shape, item = problem.mesh, problem.shape, problem.itemsize
    n_b = before.local_shape(mesh, shape)
    n_a = after.local_shape(mesh, shape)
    lb, la = math.prod(n_b), math.prod(n_a)
    g = group_size(step, mesh)
    if isinstance(step, AllGather):
        full = lb * g
    else:
        full = lb // n_b[step.dst_dim] * (g * n_a[step.dst_dim]) if n_b[step.dst_dim] else 0
    return max(0, full - max(lb, la)) * item


def padding_bytes(problem: Problem, layouts: list[Layout], steps) -> tuple[int, ...]:
    return tuple(step_padding_bytes(problem, s, layouts[k], layouts[k + 1])
                 for k, s in enumerate(steps))


def working_bytes(problem: Problem, layouts: list[Layout], steps) -> tuple[int, ...]:
    """Per step; the src block alone when there are no steps."""
    return tuple(step_working_bytes(problem, s, layouts[k], layouts[k + 1])
                 for k, s in enumerate(steps))
