"""Integer obligations restated over bit-vectors, with overflow part of the obligation.

The symbolic claims (element_correct, no_discard) are built over unbounded integers with
`div`/`mod` by constants, which z3 answers by nonlinear reasoning whose cost grows with the
constants (the mesh and extent sizes), not with the plan: a 9-step plan on 2^18 devices took
10 s and longer plans ended `unknown`. Every variable of these obligations is bounded
(0 <= v < K, asserted), every constant is non-negative and the terms use only `+`, `*`,
`div`, `mod` and comparisons, so the same statement over unsigned W-bit vectors is
equivalent *as long as no subterm wraps*. The translation therefore adds the disjunct
"some operation wraps": the bit-vector obligation is

    bounds  and  (not claim  or  some + or * overflows)

and its `unsat` proves both that no subterm ever leaves [0, 2^W) on the bounded domain and
that the claim holds there, hence the claim over the integers. Soundness does not depend on
the width chosen: an interval estimate only picks a W for which the overflow disjunct is
unsatisfiable (so that a `sat` answer is a real counterexample).

Anything outside that fragment (subtraction, a negative constant, an unbounded variable)
makes the translation decline and the integer obligation is solved as before.
"""

from __future__ import annotations

import z3
from z3.z3 import _to_expr_ref
from z3.z3core import (
    Z3_get_app_arg,
    Z3_get_app_decl,
    Z3_get_app_num_args,
    Z3_get_ast_id,
    Z3_get_ast_kind,
    Z3_get_decl_kind,
)

MAX_WIDTH = 128


class Untranslatable(Exception):
    """The obligation leaves the fragment the translation is exact for."""


def _bound_of(nodes: dict[int, tuple], k: int, upper: dict[str, int], lower: set[str]) -> None:
    """Collect `v < K` and `v >= 0` bounds of integer variables from top-level conjuncts
    (node `k` of the graph `_graph` built)."""
    op, kids, _ = nodes[k]
    if op == z3.Z3_OP_AND:
        for c in kids:
            _bound_of(nodes, c, upper, lower)
    elif op in (z3.Z3_OP_LT, z3.Z3_OP_GE):
        (vop, vkids, v), (_, _, bound) = nodes[kids[0]], nodes[kids[1]]
        if vop == z3.Z3_OP_UNINTERPRETED and not vkids and v.sort_kind() == z3.Z3_INT_SORT \
                and z3.is_int_value(bound):
            name, kv = str(v), bound.as_long()
            if op == z3.Z3_OP_LT:
                upper[name] = min(upper.get(name, kv), kv)
            elif kv >= 0:
                lower.add(name)


_LEAF, _VAR = -1, -2


def _graph(assertions: list[z3.BoolRef]) -> tuple[dict[int, tuple], list[int]]:
    """Each distinct subterm once: id -> (op kind, child ids, payload), children first.
    Walked through z3's C API on raw ASTs: a Python wrapper per child (what `children()`
    builds) cost most of the translation; the payload wrapper is made once per node."""
    if not assertions:
        return {}, []
    ctx = assertions[0].ctx
    c = ctx.ref()
    nodes: dict[int, tuple] = {}
    order: list[int] = []
    stack = [(a.as_ast(), False) for a in reversed(assertions)]
    while stack:
        a, done = stack.pop()
        k = Z3_get_ast_id(c, a)
        if k in nodes and not done:
            continue
        kids = _args(c, a)
        if done:
            if not _is_app(c, a):
                raise Untranslatable("a quantifier or bound variable")
            e = _to_expr_ref(a, ctx)
            kind = Z3_get_decl_kind(c, Z3_get_app_decl(c, a))
            nodes[k] = (kind, tuple(Z3_get_ast_id(c, x) for x in kids), e)
            order.append(k)
            continue
        nodes[k] = None   # type: ignore[assignment]  # visiting
        stack.append((a, True))
        stack.extend((x, False) for x in reversed(kids) if Z3_get_ast_id(c, x) not in nodes)
    return nodes, order


def _is_app(c, a) -> bool:
    return Z3_get_ast_kind(c, a) in (z3.Z3_APP_AST, z3.Z3_NUMERAL_AST)


def _args(c, a) -> list:
    """The raw children of an application (none for anything else, as `children()`)."""
    if not _is_app(c, a):
        return []
    return [Z3_get_app_arg(c, a, i) for i in range(Z3_get_app_num_args(c, a))]


def _largest(nodes: dict[int, tuple], order: list[int], bounds: dict[str, int]) -> int:
    """The largest value any integer subterm can take on the bounded domain (an estimate
    that only sizes W; overflow is checked inside the obligation)."""
    hi: dict[int, int] = {}
    for k in order:
        op, kids, e = nodes[k]
        v = 0
        if op == z3.Z3_OP_ANUM:
            v = e.as_long()
        elif op == z3.Z3_OP_UNINTERPRETED and not kids and e.sort() == z3.IntSort():
            if str(e) not in bounds:
                raise Untranslatable(f"variable {e} has no asserted bounds 0 <= v < K")
            v = bounds[str(e)] - 1
        elif op == z3.Z3_OP_ADD:
            v = sum(hi[c] for c in kids)
        elif op == z3.Z3_OP_MUL:
            v = 1               # every partial product is bounded (a factor may be 0)
            for c in kids:
                v *= max(1, hi[c])
        elif op == z3.Z3_OP_IDIV:
            v = hi[kids[0]]
        elif op == z3.Z3_OP_MOD:
            v = min(hi[kids[0]], max(0, hi[kids[1]] - 1))
        elif op == z3.Z3_OP_ITE:
            v = max(hi[kids[1]], hi[kids[2]])
        hi[k] = v
    return max(hi.values(), default=0)


_CMP = {z3.Z3_OP_LT: z3.ULT, z3.Z3_OP_LE: z3.ULE, z3.Z3_OP_GT: z3.UGT, z3.Z3_OP_GE: z3.UGE}


def to_bitvec(assertions: list[z3.BoolRef],
              width: int | None = None) -> tuple[list[z3.BoolRef], int]:
    """The bit-vector obligation for integer `assertions` (the last one the negated claim,
    the others bounds and definitions), and its width (estimated unless given: any width
    is sound, a narrow one may only answer `sat` through a wrap). Raises Untranslatable."""
    if not assertions:
        raise Untranslatable("empty")
    nodes, order = _graph(assertions)
    upper: dict[str, int] = {}
    lower: set[str] = set()
    for a in assertions[:-1]:
        _bound_of(nodes, a.get_id(), upper, lower)
    # A variable is in the domain only with both bounds asserted: 0 <= v < K.
    bounds = {v: k for v, k in upper.items() if v in lower}
    need = max(2, _largest(nodes, order, bounds).bit_length() + 1)
    width = need if width is None else width
    if width > MAX_WIDTH:
        raise Untranslatable(f"values need {width} bits")
    out: dict[int, z3.ExprRef] = {}
    wraps: list[z3.BoolRef] = []
    for k in order:
        op, kids, e = nodes[k]
        args = [out[c] for c in kids]
        if op == z3.Z3_OP_ANUM:
            v = e.as_long()
            if v < 0 or v >= 1 << width:
                raise Untranslatable(f"constant {v}")
            r = z3.BitVecVal(v, width)
        elif op == z3.Z3_OP_UNINTERPRETED and not kids:
            if e.sort() == z3.BoolSort():
                r = e
            elif e.sort() == z3.IntSort():
                r = z3.BitVec(str(e), width)
            else:
                raise Untranslatable(f"variable {e} of sort {e.sort()}")
        elif op in (z3.Z3_OP_TRUE, z3.Z3_OP_FALSE):
            r = e
        elif op in (z3.Z3_OP_ADD, z3.Z3_OP_MUL):
            r = args[0]
            for a in args[1:]:
                wraps.append(_wraps(r, a, op == z3.Z3_OP_ADD))
                r = r + a if op == z3.Z3_OP_ADD else r * a
        elif op in (z3.Z3_OP_IDIV, z3.Z3_OP_MOD):
            c = nodes[kids[1]]
            if c[0] != z3.Z3_OP_ANUM or c[2].as_long() <= 0:
                raise Untranslatable("division by a term that is not a positive constant")
            r = z3.UDiv(*args) if op == z3.Z3_OP_IDIV else z3.URem(*args)
        elif op in _CMP:
            r = _CMP[op](*args)
        elif op == z3.Z3_OP_EQ:
            r = args[0] == args[1]
        elif op == z3.Z3_OP_DISTINCT:
            r = z3.Distinct(*args)
        elif op == z3.Z3_OP_AND:
            r = z3.And(*args)
        elif op == z3.Z3_OP_OR:
            r = z3.Or(*args)
        elif op == z3.Z3_OP_NOT:
            r = z3.Not(args[0])
        elif op == z3.Z3_OP_ITE:
            r = z3.If(*args)
        else:
            raise Untranslatable(f"operation {e.decl().name()}")
        out[k] = r
    *facts, claim = [out[a.get_id()] for a in assertions]
    return facts + [z3.Or(claim, *wraps)], width


def _wraps(a: z3.BitVecRef, b: z3.BitVecRef, add: bool) -> z3.BoolRef:
    """a + b (or a * b) leaves [0, 2^W), in plain SMT-LIB bit-vector operations."""
    w = a.size()
    if add:
        return z3.ULT(a + b, a)
    if z3.is_bv_value(b) or z3.is_bv_value(a):
        x, k = (a, b) if z3.is_bv_value(b) else (b, a)
        kv = k.as_long()
        if kv <= 1:
            return z3.BoolVal(False)
        return z3.UGT(x, z3.BitVecVal(((1 << w) - 1) // kv, w))
    wide = z3.ZeroExt(w, a) * z3.ZeroExt(w, b)
    return z3.Extract(2 * w - 1, w, wide) != 0


class IntView:
    """A bit-vector model read as the integer model it stands for (the same values), so
    that explanations written for the integer obligation read it unchanged."""

    def __init__(self, model: z3.ModelRef) -> None:
        self._subst = []
        for d in model.decls():
            v = model[d]
            if z3.is_bv_value(v):
                self._subst.append((z3.Int(d.name()), z3.IntVal(v.as_long())))
            elif z3.is_true(v) or z3.is_false(v):
                self._subst.append((z3.Bool(d.name()), v))

    def eval(self, e: z3.ExprRef, model_completion: bool = False) -> z3.ExprRef:
        e = z3.substitute(e, *self._subst) if self._subst else e
        if model_completion:
            free = set()
            _free(e, free)
            zero = [(v, z3.IntVal(0) if v.sort() == z3.IntSort() else z3.BoolVal(False))
                    for v in free]
            e = z3.substitute(e, *zero) if zero else e
        return z3.simplify(e)


def _free(e: z3.ExprRef, out: set) -> None:
    """The uninterpreted constants of e (each shared subterm visited once)."""
    seen: set[int] = set()
    stack = [e]
    while stack:
        x = stack.pop()
        if x.get_id() in seen:
            continue
        seen.add(x.get_id())
        if z3.is_const(x) and x.decl().kind() == z3.Z3_OP_UNINTERPRETED:
            out.add(x)
        stack.extend(x.children())
