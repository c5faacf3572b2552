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
