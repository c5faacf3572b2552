"""Working memory of each step as the MPI runtime allocates it (DESIGN §3 runtime peak, §7).

One definition for both sides: the runtime sizes its scratch with `chunk_elements`, and
the figures (and the memory claim) count each op's working bytes (core/ops,
`step_working_bytes`), so a plan proved within a bound or budget is measured within it.
Per device, in bytes, buffers padded as the runtime pads them (DESIGN §11); the input is
the runtime's (handed over, as `redist run` does).

  all_slice     the input (a view, or compacted and padded in place).
  all_permute   the block + one chunk (if any device's block changes).
  all_to_all    the block (padded in place when dst_dim is held whole) + one chunk.
  all_gather    the output, grown in place from the input (trimmed in place when the
                gathered dim is held whole).
  all_exchange  in place (core.ops.all_exchange.in_place): the block + one chunk; in
                slots (in_slots): the larger block + one chunk where some device needs
                it; else input + output (one Alltoallw).
Buffers grow and shrink in place: each is a mapping of its own, resized with mremap, which
moves pages and never copies (runtime/alloc.py).
"""

from __future__ import annotations

# The scratch of an in-place step: this fraction of its block (MPI messages and local
# transposes go through it), so a step holds at most 1/16 more than its block.
CHUNK_DIVISOR = 16


def chunk_elements(block_elements: int) -> int:
    return max(1, block_elements // CHUNK_DIVISOR)


def runtime_limit(limit_bytes: int, itemsize: int) -> int:
    """What the runtime may hold under a bound or budget: it plus one chunk of it (plus,
    per step, its padding: `step_padding_bytes`)."""
    return limit_bytes + chunk_elements(limit_bytes // itemsize) * itemsize
