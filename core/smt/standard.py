"""SMT-LIB text every solver accepts.

z3 builds n-ary applications of any arity and prints them as built: `z3.Sum([t])` prints
`(+ t)` and `z3.And()` a bare `and`. SMT-LIB 2.6 gives `+`, `*`, `and`, `or` and
`distinct` at least two arguments, and cvc5 rejects fewer. Obligations are printed for
other solvers to check, so the printed text is rewritten: an application of one of these
to a single argument becomes the argument (`distinct` of one: `true`), and a bare
operator in argument position becomes its unit (`and` -> `true`, `or` -> `false`, `+` ->
`0`, `*` -> `1`). The meaning is unchanged and the rest of the text is kept byte for byte.

The rewrite works on the text, in one linear pass: walking z3's term graph from Python
costs seconds on the larger obligations, printing costs milliseconds.
"""

from __future__ import annotations

import re

# Whitespace, a comment, a |quoted symbol|, a parenthesis, or any other token.
_TOKEN = re.compile(r"\s+|;[^\n]*|\|[^|]*\||[()]|[^\s()|;]+")
_FOLDS = {"+", "*", "and", "or"}            # one argument: the argument itself
_UNITS = {"+": "0", "*": "1", "and": "true", "or": "false"}


def standard_smt2(text: str) -> str:
    """`text` (z3's to_smt2 output) with every application of fewer than two arguments
    of an n-ary operator replaced by its standard equivalent."""
    # Per open list: its pieces (tokens and spacing, in order) and which pieces are items.
    stack: list[tuple[list[str], list[int]]] = [([], [])]
    for m in _TOKEN.finditer(text):
        tok = m.group()
        if tok == "(":
            stack.append(([], []))
        elif tok == ")":
            if len(stack) == 1:
                raise ValueError("unbalanced parentheses")
            pieces, items = stack.pop()
            _add_item(stack[-1], _close(pieces, items))
        elif tok[0].isspace() or tok[0] == ";":
            stack[-1][0].append(tok)
        else:
            _add_item(stack[-1], tok)
    if len(stack) != 1:
        raise ValueError("unbalanced parentheses")
    return "".join(stack[0][0])


def _add_item(frame: tuple[list[str], list[int]], item: str) -> None:
    frame[1].append(len(frame[0]))
    frame[0].append(item)


def _close(pieces: list[str], items: list[int]) -> str:
    """The text of one list, its arguments already standard."""
    head = pieces[items[0]] if items else ""
    for k in items[1:]:                      # a bare operator as an argument: its unit
        if pieces[k] in _UNITS:
            pieces[k] = _UNITS[pieces[k]]
    if len(items) == 2 and head in _FOLDS:
        return pieces[items[1]]
    if len(items) <= 2 and head == "distinct":
        return "true"
    return "(" + "".join(pieces) + ")"
