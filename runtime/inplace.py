"""Local data movement inside one buffer, with scratch of one chunk: the pieces that let a
step stay near its larger block in memory instead of holding input and output at once.

`transpose_blocks` turns an R x C matrix of B-element blocks (row-major) into its C x R
transpose in place, for every R, C, B, using a scratch array of any size >= 1 (one chunk):
tiles that fit the scratch are transposed through it with one NumPy copy, the tiles
themselves are permuted as large blocks by following the permutation's cycles, and rows
that do not fill a whole tile are merged in with memmoves. Python steps are few (about
R*C*B / chunk), the bytes move in bulk.
`permute_blocks` reorders equal blocks (a fused all-to-all's pieces) by following the
permutation's cycles through the scratch.
`compact_box` keeps a box (a sub-range of every axis) and moves it to the front of the
buffer, copying forward in batches that never overwrite what is still to be read.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Sequence

import numpy as np


def memmove(flat: np.ndarray, dst: int, src: int, n: int) -> None:
    """flat[dst:dst+n] = flat[src:src+n] for overlapping ranges without a temporary (NumPy
    would allocate one the size of the range)."""
    if n > 0 and dst != src:
        item = flat.itemsize
        ctypes.memmove(flat.ctypes.data + dst * item, flat.ctypes.data + src * item, n * item)


def transpose_blocks(flat: np.ndarray, rows: int, cols: int, block: int,
                     scratch: np.ndarray) -> None:
    """In place: flat viewed as (rows, cols, block) becomes (cols, rows, block). `scratch`
    (same dtype, any size >= 1) is the only extra memory (the tiles' flags live in it)."""
    if rows == 1 or cols == 1 or block == 0:
        return
    assert flat.size == rows * cols * block and flat.flags.c_contiguous
    if rows >= cols:
        _tall(flat, rows, cols, block, scratch)
    else:
        _wide(flat, rows, cols, block, scratch)


def _tile_rows(n_rows: int, width: int, scratch: np.ndarray) -> int:
    """Rows of `width` elements per tile that fit in the scratch (0: not even one)."""
    return min(n_rows, scratch.size // width)


def _tall(flat: np.ndarray, R: int, C: int, B: int, scratch: np.ndarray) -> None:
    """(R, C, B) -> (C, R, B), R >= C."""
    r2 = _tile_rows(R, C * B, scratch)
    if r2 == 0:                       # blocks too big for tiles: cycles in lanes
        _cycles(flat, R, C, B, scratch)
        return
    q, rem = divmod(R, r2)
    tile = r2 * C * B
    s = scratch[:tile]
    for i in range(q):               # each tile (r2, C, B) -> (C, r2, B)
        part = flat[i * tile:(i + 1) * tile]
        s.reshape(C, r2, B)[...] = part.reshape(r2, C, B).transpose(1, 0, 2)
        part[...] = s
    a = q * r2 * B                    # the prefix is now (q, C, r2 B): permute the tiles
    _cycles(flat[:q * tile], q, C, r2 * B, scratch)
    if rem == 0:
        return
    b = rem * B                       # prefix: X_0..X_{C-1} (a each); tail (rem, C, B)
    t = scratch[:C * b]
    t.reshape(C, rem, B)[...] = flat[q * tile:].reshape(rem, C, B).transpose(1, 0, 2)
    for c in range(C - 1, 0, -1):     # spread: X_c to c (a + b), the highest first
        memmove(flat, c * (a + b), c * a, a)
    for c in range(C):                # Y_c right after X_c
        flat[c * (a + b) + a:(c + 1) * (a + b)] = t[c * b:(c + 1) * b]


def _wide(flat: np.ndarray, C: int, R: int, B: int, scratch: np.ndarray) -> None:
    """(C, R, B) -> (R, C, B), R > C: `_tall` run backwards."""
    r2 = _tile_rows(R, C * B, scratch)
    if r2 == 0:
        _cycles(flat, C, R, B, scratch)
        return
    q, rem = divmod(R, r2)
    tile = r2 * C * B
    a = q * r2 * B
    if rem:
        b = rem * B
        t = scratch[:C * b]
        for c in range(C):            # Y_c (after X_c) into the scratch
            t[c * b:(c + 1) * b] = flat[c * (a + b) + a:(c + 1) * (a + b)]
        for c in range(1, C):         # gather: X_c to c a, the lowest first
            memmove(flat, c * a, c * (a + b), a)
        flat[q * tile:].reshape(rem, C, B)[...] = t.reshape(C, rem, B).transpose(1, 0, 2)
    _cycles(flat[:q * tile], C, q, r2 * B, scratch)      # (C, q, r2 B) -> (q, C, r2 B)
    s = scratch[:tile]
    for i in range(q):               # each tile (C, r2, B) -> (r2, C, B)
        part = flat[i * tile:(i + 1) * tile]
        s.reshape(r2, C, B)[...] = part.reshape(C, r2, B).transpose(1, 0, 2)
        part[...] = s


def _cycles(flat: np.ndarray, rows: int, cols: int, block: int, scratch: np.ndarray) -> None:
    """(rows, cols, block) -> (cols, rows, block) by following the permutation's cycles,
    one block (or, for blocks bigger than the scratch, one lane of every block) at a time:
    for few, large blocks. The flags marking moved blocks live in the scratch's tail (no
    memory beyond the scratch); a scratch too small for them besides a lane finds each
    cycle's leader (its smallest block) by walking the cycle instead."""
    n = rows * cols
    if rows == 1 or cols == 1 or block == 0:
        return
    view = flat.reshape(n, block)
    last = n - 1
    flag_elems = -(-n // scratch.itemsize)
    seen = None
    if scratch.size - flag_elems >= min(block, max(1, scratch.size // 2)):
        seen = scratch[scratch.size - flag_elems:].view(np.uint8)[:n].view(np.bool_)
        scratch = scratch[:scratch.size - flag_elems]
    lane = min(block, scratch.size)
    for lo in range(0, block, lane):
        hi = min(block, lo + lane)
        tmp = scratch[:hi - lo]
        if seen is not None:
            seen[...] = False
        for start in range(1, last):
            if seen is not None:
                if seen[start]:
                    continue
            elif not _leader(start, cols, last):
                continue
            # Block i (row i // cols, col i % cols) goes to (i % cols) rows + i // cols,
            # that is i * rows mod (n - 1): follow the cycle backwards, pulling each
            # predecessor into the hole.
            tmp[...] = view[start, lo:hi]
            hole = start
            while True:
                if seen is not None:
                    seen[hole] = True
                src = (hole * cols) % last          # the block that belongs at `hole`
                if src == start:
                    view[hole, lo:hi] = tmp
                    break
                view[hole, lo:hi] = view[src, lo:hi]
                hole = src


def permute_blocks(flat: np.ndarray, sources: Sequence[int], block: int,
                   scratch: np.ndarray) -> None:
    """In place: block k of flat (blocks of `block` elements) becomes the old block
    sources[k] (a permutation), each cycle followed once per lane of the scratch (one
    block, or a lane of every block, in the scratch at a time); blocks that stay are not
    touched."""
    n = len(sources)
    view = flat[:n * block].reshape(n, block)
    lane = max(1, min(block, scratch.size))
    for lo in range(0, block, lane):
        hi = min(block, lo + lane)
        tmp = scratch[:hi - lo]
        done = [k == sources[k] for k in range(n)]
        for start in range(n):
            if done[start]:
                continue
            tmp[...] = view[start, lo:hi]
            hole = start
            while True:                       # pull each source into the hole it leaves
                done[hole] = True
                src = sources[hole]
                if src == start:
                    view[hole, lo:hi] = tmp
                    break
                view[hole, lo:hi] = view[src, lo:hi]
                hole = src


def _leader(start: int, cols: int, last: int) -> bool:
    """Whether `start` is the smallest block of its cycle."""
    i = (start * cols) % last
    while i != start:
        if i < start:
            return False
        i = (i * cols) % last
    return True


def expand(flat: np.ndarray, outer: int, row: int, stride: int, offset: int) -> None:
    """In place, the inverse of `compact`: rows a < outer of `row` elements at the start of
    flat move to a*stride + offset (stride >= row). Rows move up, so the last go first, in
    batches whose destinations start past every source still unread (no temporaries)."""
    if row == 0 or (stride == row and offset == 0):
        return
    a1 = outer
    while a1 > 0:
        a0 = max(0, -(-(a1 * row - offset) // stride))     # dst(a0) >= a1 * row
        if a0 >= a1:                                        # one row overlapping itself
            a0 = a1 - 1
            memmove(flat, a0 * stride + offset, a0 * row, row)
        else:
            n = a1 - a0
            dst = np.lib.stride_tricks.as_strided(
                flat[a0 * stride + offset:], shape=(n, row),
                strides=(stride * flat.itemsize, flat.itemsize))
            dst[...] = flat[a0 * row:a1 * row].reshape(n, row)
        a1 = a0


def compact(flat: np.ndarray, outer: int, length: int, lo: int, hi: int, inner: int) -> None:
    """In place: flat viewed as (outer, length, inner) keeps [:, lo:hi, :] and stores it
    contiguously at the start of flat."""
    compact_box(flat, (outer, length, inner), (0, lo, 0), (outer, hi - lo, inner))


def compact_box(flat: np.ndarray, shape: tuple[int, ...], lo: Sequence[int],
                keep: Sequence[int]) -> None:
    """In place: the box [lo, lo + keep) of flat viewed as `shape` (C order) stored
    contiguously at the start of flat, each element moved once (cropping one dim at a time
    moved the rows of the later dims' crops again). Rows (the box's last cropped dim and
    the whole dims after it) move down; a batch of rows is copied at once when its
    destination ends before its first source, so nothing unread is overwritten and
    batches grow as the rows fall behind their sources."""
    if 0 in keep:
        return
    j = len(shape) - 1
    while j > 0 and lo[j] == 0 and keep[j] == shape[j]:     # whole trailing dims: rows
        j -= 1
    strides = [math.prod(shape[d + 1:]) for d in range(len(shape))]
    row = keep[j] * strides[j]
    base = sum(lo[d] * strides[d] for d in range(j + 1))
    if j == 0:
        memmove(flat, 0, base, row)
        return
    run, stride = keep[j - 1], strides[j - 1]          # rows along dim j - 1, evenly spaced
    a = 0
    for r in range(math.prod(keep[:j - 1])):
        off, rest = base, r
        for d in reversed(range(j - 1)):
            off += (rest % keep[d]) * strides[d]
            rest //= keep[d]
        i = 0
        while i < run:
            src0 = off + i * stride
            k = max(1, min(run - i, (src0 - a * row) // row))
            if (a + k) * row <= src0:
                flat[a * row:(a + k) * row].reshape(k, row)[...] = \
                    np.lib.stride_tricks.as_strided(flat[src0:], shape=(k, row),
                                                    strides=(stride * flat.itemsize,
                                                             flat.itemsize))
            elif src0 != a * row:                  # one row that overlaps itself
                memmove(flat, a * row, src0, row)
            i += k
            a += k
