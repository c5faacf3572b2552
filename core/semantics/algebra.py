"""The abstract integer algebra the source maps are written in (DESIGN §2).

`+`, `-`, `*` come from the values' own operators; everything else goes through an
Algebra so that the same definition runs on NumPy arrays (simulator), Python ints
(runtime tests) and z3 terms (proofs). Divisors are always concrete positive ints.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np


class Algebra(Protocol):
    def div(self, a: Any, k: int) -> Any: ...
    def mod(self, a: Any, k: int) -> Any: ...
    def ite(self, cond: Any, a: Any, b: Any) -> Any: ...
    def eq(self, a: Any, b: Any) -> Any: ...
    def lt(self, a: Any, b: Any) -> Any: ...
    def all(self, *conds: Any) -> Any: ...
    def any(self, *conds: Any) -> Any: ...


class NumpyAlgebra:
    """Elementwise over NumPy integer arrays (also works on Python ints)."""

    def div(self, a: Any, k: int) -> Any:
        return a // k

    def mod(self, a: Any, k: int) -> Any:
        return a % k

    def ite(self, cond: Any, a: Any, b: Any) -> Any:
        return np.where(cond, a, b)

    def eq(self, a: Any, b: Any) -> Any:
        return np.equal(a, b)

    def lt(self, a: Any, b: Any) -> Any:
        return np.less(a, b)

    def all(self, *conds: Any) -> Any:
        out: Any = True
        for c in conds:
            out = np.logical_and(out, c)
        return out

    def any(self, *conds: Any) -> Any:
        out: Any = False
        for c in conds:
            out = np.logical_or(out, c)
        return out


NUMPY = NumpyAlgebra()
