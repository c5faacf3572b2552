"""The two kinds of failure the tools report (DESIGN §6 exit codes)."""


class RedistError(Exception):
    """Bad input: a malformed mesh, layout, shape, plan or option (exit code 2)."""


class TypingError(RedistError):
    """A collective's typing rule does not hold for the layout it is applied to."""
