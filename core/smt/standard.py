"""Terms every SMT-LIB solver accepts.

z3 builds n-ary applications of any arity: `z3.Sum([t])` is `(+ t)`, `z3.And()` prints as a
bare `and`. SMT-LIB 2.6 gives `+`, `*`, `and`, `or` (left-associative) and `distinct`
(pairwise) at least two arguments, and cvc5 rejects fewer. Obligations are printed for
other solvers to check, so before printing every such application is rewritten to its
standard equivalent: no arguments -> the operator's unit, one argument -> the argument.
The meaning is unchanged; only the text becomes portable.
"""

from __future__ import annotations

import z3

# operator -> its value when applied to no arguments (None: the argument list is pairwise,
# so fewer than two arguments mean "true")
_UNIT = {z3.Z3_OP_ADD: 0, z3.Z3_OP_MUL: 1, z3.Z3_OP_AND: True, z3.Z3_OP_OR: False,
         z3.Z3_OP_DISTINCT: None}


def standard(term: z3.ExprRef) -> z3.ExprRef:
    """`term` with every n-ary application of fewer than two arguments replaced. Iterative
    (plans of many steps build deep terms) and shared subterms are rewritten once."""
    done: dict[int, z3.ExprRef] = {}
    stack = [(term, False)]
    while stack:
        t, expanded = stack.pop()
        key = t.get_id()
        if key in done:
            continue
        if not z3.is_app(t) or t.num_args() == 0 and t.decl().kind() not in _UNIT:
            done[key] = t                      # constants, variables, quantifiers as they are
            continue
        kids = t.children()
        if not expanded:
            stack.append((t, True))
            stack.extend((k, False) for k in kids if k.get_id() not in done)
            continue
        new = [done[k.get_id()] for k in kids]
        changed = any(a.get_id() != b.get_id() for a, b in zip(new, kids, strict=True))
        done[key] = _rebuild(t, new, changed)
    return done[term.get_id()]


def _rebuild(t: z3.ExprRef, kids: list[z3.ExprRef], changed: bool) -> z3.ExprRef:
    kind = t.decl().kind()
    if kind in _UNIT and len(kids) < 2:
        unit = _UNIT[kind]
        if unit is None:
            return z3.BoolVal(True, t.ctx)
        if len(kids) == 1:
            return kids[0]
        if isinstance(unit, bool):
            return z3.BoolVal(unit, t.ctx)
        return z3.RealVal(unit, t.ctx) if z3.is_real(t) else z3.IntVal(unit, t.ctx)
    return t.decl()(*kids) if changed else t
