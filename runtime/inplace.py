"""Local data movement inside one buffer, with scratch of one block: the pieces that let a
step stay near its larger block in memory instead of holding input and output at once.

`transpose_blocks` turns an R x Q matrix of B-element blocks (row-major) into its Q x R
transpose in place, following the permutation's cycles with one block of scratch.
`compact` keeps a sub-range of one axis and moves it to the front of the buffer, copying
forward in batches that never overwrite what is still to be read.
"""

from __future__ import annotations

import numpy as np

# Cycle-following moves one block per Python step: fine for big blocks, slow for tiny ones.
MAX_BLOCKS = 1 << 16
MIN_BLOCK_BYTES = 256


def can_transpose(rows: int, cols: int, block: int, itemsize: int) -> bool:
    return rows == 1 or cols == 1 or (rows * cols <= MAX_BLOCKS
                                      and block * itemsize >= MIN_BLOCK_BYTES)


def scratch_bytes(rows: int, cols: int, block: int, itemsize: int) -> int:
    """What transpose_blocks allocates: one block and a flag per block (none if trivial)."""
    return 0 if rows == 1 or cols == 1 else block * itemsize + rows * cols


def transpose_blocks(flat: np.ndarray, rows: int, cols: int, block: int) -> None:
    """In place: flat viewed as (rows, cols, block) becomes (cols, rows, block)."""
    if rows == 1 or cols == 1:
        return
    n = rows * cols
    assert flat.size == n * block
    view = flat.reshape(n, block)
    tmp = np.empty(block, dtype=flat.dtype)
    seen = np.zeros(n, dtype=bool)
    last = n - 1
    for start in range(1, last):
        if seen[start]:
            continue
        # Block at position i (row r = i // cols, col c = i % cols) goes to c * rows + r,
        # that is i * rows mod (n - 1): follow the cycle backwards, pulling each
        # predecessor into the hole.
        tmp[:] = view[start]
        hole = start
        while True:
            seen[hole] = True
            src = (hole * cols) % last          # the block that belongs at `hole`
            if src == start:
                view[hole] = tmp
                break
            view[hole] = view[src]
            hole = src


def compact(flat: np.ndarray, outer: int, length: int, lo: int, hi: int, inner: int) -> None:
    """In place: flat viewed as (outer, length, inner) keeps [:, lo:hi, :] and stores it
    contiguously at the start of flat. Row a moves down from a*length*inner + lo*inner to
    a*(hi-lo)*inner; a batch of rows is copied at once when its destination ends before
    its first source, so batches grow geometrically and nothing unread is overwritten."""
    keep = (hi - lo) * inner
    row = length * inner
    a = 0
    while a < outer:
        src0 = a * row + lo * inner
        k = max(1, min(outer - a, src0 // keep - a))
        if (a + k) * keep <= src0:
            dst = flat[a * keep:(a + k) * keep].reshape(k, keep)
            dst[...] = np.lib.stride_tricks.as_strided(
                flat[src0:], shape=(k, keep), strides=(row * flat.itemsize, flat.itemsize))
        elif src0 != a * keep:                 # one row that overlaps itself
            flat[a * keep:(a + 1) * keep] = flat[src0:src0 + keep].copy()
        a += k
