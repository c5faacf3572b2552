"""The source-map algebra interpreted as z3 integer terms (DESIGN §2)."""

from __future__ import annotations

from typing import Any

import z3


class Z3Algebra:
    def div(self, a: Any, k: int) -> Any:
        if isinstance(a, int) and isinstance(k, int):
            return a // k
        return a if _is_one(k) else a / k      # z3 Int `/` is floor division for k > 0

    def mod(self, a: Any, k: int) -> Any:
        if isinstance(a, int) and isinstance(k, int):
            return a % k
        return z3.IntVal(0) if _is_one(k) else a % k

    def ite(self, cond: Any, a: Any, b: Any) -> Any:
        return z3.If(cond, a, b)

    def eq(self, a: Any, b: Any) -> Any:
        return a == b

    def lt(self, a: Any, b: Any) -> Any:
        return a < b

    def all(self, *conds: Any) -> Any:
        return z3.And(*conds) if conds else z3.BoolVal(True)

    def any(self, *conds: Any) -> Any:
        return z3.Or(*conds) if conds else z3.BoolVal(False)


def _is_one(k: Any) -> bool:
    """k is the concrete 1 (sizes may be symbolic terms in proofs/)."""
    return isinstance(k, int) and k == 1


Z3 = Z3Algebra()
