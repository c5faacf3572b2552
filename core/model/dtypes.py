"""Element types: NumPy's numeric types plus JAX's bfloat16 and float8 types (from
ml_dtypes). Names are canonical (`f4` -> `float32`)."""

from __future__ import annotations

import numpy as np

from redist.core.errors import RedistError

# ml_dtypes types that are whole bytes (int4/float4 pack two per byte: not supported).
ML_DTYPES = ("bfloat16", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz",
             "float8_e4m3b11fnuz", "float8_e3m4", "float8_e4m3", "float8_e8m0fnu")


def numpy_dtype(name: str) -> np.dtype:
    """The NumPy dtype of a name, or a one-line error listing what is accepted."""
    if isinstance(name, str) and name in ML_DTYPES:
        try:
            import ml_dtypes
        except ImportError:
            raise RedistError(f"dtype {name} needs the ml_dtypes package "
                              "(pip install ml_dtypes)") from None
        return np.dtype(getattr(ml_dtypes, name))
    try:
        # NumPy reads '' as float64 and raises ValueError (or worse) on odd strings such as
        # '(-1,)f4' or huge repeat counts: neither is a dtype a user means.
        dt = np.dtype(name) if isinstance(name, str) and name.strip() else None
    except (TypeError, ValueError, OverflowError, MemoryError, SyntaxError):
        dt = None
    if dt is not None and dt.name in ML_DTYPES:
        return dt
    if dt is None or dt.kind not in "biufc":
        raise RedistError(f"unknown dtype {name!r:.40} (a numeric type: float32, float64, "
                          "int32, bfloat16, float8_e4m3fn, ...)")
    return dt


def itemsize(name: str) -> int:
    return numpy_dtype(name).itemsize


def dtype_name(name: str) -> str:
    """The canonical name of a dtype (`f4` -> `float32`)."""
    return numpy_dtype(name).name


def _bits(a: np.ndarray) -> np.ndarray:
    """Each element's bytes as one row of unsigned integers."""
    a = np.ascontiguousarray(a).reshape(-1)
    k = a.dtype.itemsize
    if k in (1, 2, 4, 8):
        return a.view(f"u{k}").reshape(-1, 1)
    return a.view(np.uint8).reshape(-1, k)


def mismatched(got: np.ndarray, want: np.ndarray) -> int:
    """How many elements differ, compared by bit pattern: a moved NaN equals itself (with
    `!=` every NaN would count, and float8_e8m0fnu has a NaN among its few values), and
    -0.0 differs from 0.0. Arrays of different shapes or dtypes differ everywhere."""
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape or got.dtype != want.dtype:
        return max(got.size, want.size)
    return int(np.count_nonzero((_bits(got) != _bits(want)).any(axis=1)))


def same_bits(got: np.ndarray, want: np.ndarray) -> bool:
    """The two arrays hold the same elements, bit for bit."""
    return mismatched(got, want) == 0
