"""Solving stored SMT-LIB2 text with z3 and, when installed, cvc5 (a second, independent
solver for certificates)."""

from __future__ import annotations

import z3


def z3_version() -> str:
    return z3.get_version_string()


def cvc5_version() -> str | None:
    try:
        import cvc5
    except ImportError:
        return None
    return getattr(cvc5, "__version__", "installed")


def solve_z3(smt2: str, timeout_ms: int = 120_000) -> str:
    s = z3.Solver()
    s.set("timeout", timeout_ms)
    try:
        s.from_string(smt2)
    except z3.Z3Exception as e:
        return f"error: {e}"
    return str(s.check())


def solve_cvc5(smt2: str, timeout_ms: int = 120_000) -> str:
    import cvc5

    tm = cvc5.TermManager()
    s = cvc5.Solver(tm)
    s.setOption("tlimit-per", str(timeout_ms))
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
