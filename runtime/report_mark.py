"""The line prefix by which rank 0 of an MPI job hands its JSON report to the launcher.
A module of its own: the launcher imports it without importing MPI (see __init__.py)."""

MARK = "@@redist-report@@"
