"""Solving SMT-LIB2 text that redist generated, with z3 and, when installed, cvc5 (a second,
independent solver for certificates).

Only text this process generated from a plan is ever solved; a certificate's stored text
is compared with it, never run. As a second line of defence, `check_commands` refuses any
text with a command other than the few our obligations use, so that no solver option (an
output channel, say) can be set through it.
"""

from __future__ import annotations

import re

import z3

_ALLOWED = ("declare-fun", "declare-const", "define-fun", "assert", "check-sat", "set-info")
_HEAD = re.compile(r"\(\s*([A-Za-z-]+)")


def z3_version() -> str:
    return z3.get_version_string()


def cvc5_version() -> str | None:
    try:
        import cvc5
    except ImportError:
        return None
    return getattr(cvc5, "__version__", "installed")


def check_commands(smt2: str) -> None:
    """Raise ValueError unless every top-level command is one our obligations use."""
    depth = 0
    pos = 0
    n = len(smt2)
    while pos < n:
        ch = smt2[pos]
        if ch == "|":                        # quoted symbol: skip to its closing bar
            end = smt2.find("|", pos + 1)
            if end < 0:
                raise ValueError("unterminated quoted symbol")
            pos = end + 1
            continue
        if ch == '"':
            raise ValueError("string literals are not used by obligations")
        if ch == ";":
            end = smt2.find("\n", pos)
            pos = n if end < 0 else end + 1
            continue
        if ch == "(":
            if depth == 0:
                m = _HEAD.match(smt2, pos)
                if not m or m.group(1) not in _ALLOWED:
                    raise ValueError(f"command {smt2[pos:pos + 40]!r} is not allowed")
                if m.group(1) == "set-info" and not smt2.startswith(":status", m.end() + 1):
                    raise ValueError("only (set-info :status ...) is allowed")
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise ValueError("unbalanced parentheses")
        elif depth == 0 and not ch.isspace():
            raise ValueError(f"unexpected text {smt2[pos:pos + 40]!r} at top level")
        pos += 1
    if depth:
        raise ValueError("unbalanced parentheses")


def solve_z3(smt2: str, timeout_ms: int = 120_000) -> str:
    check_commands(smt2)
    s = z3.Solver()
    s.set("timeout", timeout_ms)
    try:
        s.from_string(smt2)
    except z3.Z3Exception as e:
        return f"error: {e}"
    return str(s.check())


def solve_cvc5(smt2: str, timeout_ms: int = 120_000) -> str:
    import cvc5

    check_commands(smt2)
    tm = cvc5.TermManager()
    s = cvc5.Solver(tm)
    s.setOption("tlimit-per", str(timeout_ms))
    # Strict SMT-LIB: an obligation that only z3 would accept is a bug, not a dialect.
    s.setOption("parsing-mode", "strict")
    sm = cvc5.SymbolManager(tm)
    parser = cvc5.InputParser(s, sm)
    text = smt2 if "(set-logic" in smt2 else "(set-logic ALL)\n" + smt2
    parser.setStringInput(cvc5.InputLanguage.SMT_LIB_2_6, text, "obligation")
    answer = "unknown"
    try:
        while True:
            cmd = parser.nextCommand()
            if cmd.isNull():
                break
            out = cmd.invoke(s, sm).strip()
            if out in ("sat", "unsat", "unknown"):
                answer = out
    except RuntimeError as e:
        return f"error: {e}"
    return answer
