"""The runtime's in-place local moves (runtime/inplace.py) against NumPy's out-of-place
results, on every shape class: odd and prime sizes, tiles that do not divide the rows,
blocks bigger than the scratch, scratch of one element."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from redist.runtime import inplace

SIZES = st.integers(1, 13)


@settings(max_examples=300, deadline=None)
@given(SIZES, SIZES, st.integers(1, 9), st.integers(1, 200))
def test_transpose_blocks_equals_numpy_for_every_shape_and_scratch(rows, cols, block, scratch):
    a = np.arange(rows * cols * block, dtype=np.int32)
    want = a.reshape(rows, cols, block).transpose(1, 0, 2).reshape(-1).copy()
    s = np.full(scratch, -1, dtype=np.int32)
    inplace.transpose_blocks(a, rows, cols, block, s)
    assert np.array_equal(a, want)


def test_transpose_blocks_large_prime_rows_with_a_sixteenth_of_scratch():
    # 1009 rows (prime): tiles never divide them, so the remainder path runs
    for rows, cols in ((1009, 8), (8, 1009), (1009, 3), (2, 1009)):
        a = np.arange(rows * cols * 5, dtype=np.float32)
        want = a.reshape(rows, cols, 5).transpose(1, 0, 2).reshape(-1).copy()
        inplace.transpose_blocks(a, rows, cols, 5, np.empty(a.size // 16, np.float32))
        assert np.array_equal(a, want)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 30), st.integers(0, 6), st.integers(0, 6), st.integers(0, 6))
def test_expand_is_the_inverse_of_compact(outer, row, gap, offset):
    stride = row + gap + offset
    flat = np.full(max(1, outer * stride), -1, dtype=np.int64)
    flat[:outer * row] = np.arange(outer * row)
    inplace.expand(flat, outer, row, stride, offset)
    if outer and row:
        got = flat[:outer * stride].reshape(outer, stride)[:, offset:offset + row]
        assert np.array_equal(got, np.arange(outer * row).reshape(outer, row))
        inplace.compact(flat, outer, stride, offset, offset + row, 1)
        assert np.array_equal(flat[:outer * row], np.arange(outer * row))


def test_memmove_overlapping_both_ways():
    a = np.arange(10)
    inplace.memmove(a, 3, 0, 7)
    assert a.tolist() == [0, 1, 2, 0, 1, 2, 3, 4, 5, 6]
    inplace.memmove(a, 0, 3, 7)
    assert a.tolist()[:7] == [0, 1, 2, 3, 4, 5, 6]
