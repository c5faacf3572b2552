"""The two kinds of failure the tools report (DESIGN §6 exit codes)."""


class RedistError(Exception):
    """Bad input: a malformed mesh, layout, shape, plan or option (exit code 2)."""


class TypingError(RedistError):
    """A collective's typing rule does not hold for the layout it is applied to."""


def printable(text: str) -> str:
    """`text` as one printable line: control characters (a newline in a name read from a
    file could fake a second `redist: error:` line) are escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
