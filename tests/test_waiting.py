"""runtime/waiting.bcast_text: the text arrives as the root sent it, whatever it holds."""

from __future__ import annotations

import pytest
from mpi4py import MPI

from redist.runtime.waiting import bcast_text


@pytest.mark.parametrize("text", ["", "[{x},{y}]", "héllo ✓", "abc\udcff\n", "x" * 100_000])
def test_any_str_goes_through(text):
    # A line read with errors="surrogateescape" (stdin of `regress --np`'s server) holds
    # lone surrogates: strict UTF-8 would raise on the root alone and leave the others
    # waiting in the broadcast.
    assert bcast_text(MPI.COMM_SELF, text) == text
