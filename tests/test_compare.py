"""Elements are compared by bit pattern wherever a moved block is checked (runtime, regress,
test programs): a NaN that was moved intact equals itself, and a changed bit never hides
behind float equality (-0.0 == 0.0)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from redist.core.model.dtypes import ML_DTYPES, mismatched, numpy_dtype, same_bits

DTYPES = ["float16", "float32", "float64", "complex64", "complex128", "int8", "uint64",
          "bool", *ML_DTYPES]


@pytest.mark.parametrize("name", DTYPES)
@settings(max_examples=20, deadline=None)
@given(raw=st.binary(min_size=16 * 12, max_size=16 * 12), flips=st.sets(st.integers(0, 11)))
def test_mismatched_counts_exactly_the_elements_whose_bytes_differ(name, raw, flips):
    dt = numpy_dtype(name)
    a = np.frombuffer(raw[:12 * dt.itemsize], dtype=dt).reshape(3, 4).copy()
    b = a.copy()
    bytes_b = b.view(np.uint8).reshape(12, dt.itemsize)
    for k in flips:
        bytes_b[k, k % dt.itemsize] ^= 1 << (k % 8)
    assert mismatched(a, a.copy()) == 0 and same_bits(a, a.copy())   # NaNs included
    assert mismatched(a, b) == len(flips)


def test_nan_payloads_and_signed_zeros():
    e8m0 = numpy_dtype("float8_e8m0fnu")
    x = np.arange(7).astype(e8m0)                    # 0 becomes NaN: 1 of 7 values
    assert np.count_nonzero(x != x) == 1             # what `!=` used to report
    assert mismatched(x, x.copy()) == 0
    assert mismatched(np.array([0.0, np.nan]), np.array([-0.0, np.nan])) == 1
    assert mismatched(np.zeros(3), np.zeros(4)) == 4          # shapes differ: all differ
    assert mismatched(np.zeros(3, "f4"), np.zeros(3, "i4")) == 3
