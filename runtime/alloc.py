"""The runtime's own buffers: each one an anonymous mapping it can grow without a copy.

A gather, a pad or the exchange in slots grows its buffer. Grown by the C library's
`realloc`, a heap block is copied whenever the memory after it is in use, so for an
instant old and new both exist, unseen by the runtime's count and by tracemalloc. A buffer
that is its own private anonymous mapping grows with `mremap(MREMAP_MAYMOVE)` (Python's
`mmap.resize` on Linux): the kernel moves page tables, never bytes, at any size, whatever
else the process allocates, and the new pages come zeroed. So on Linux every buffer the
runtime may grow is allocated here (`empty`/`zeros`), resized by `resize`, and unmapped
when the last array on it dies. Elsewhere (`MAPPED` False) buffers are NumPy's and
growing one copies (counted: old and new are both held during the copy).

Each mapping is traced by tracemalloc in NumPy's domain, at its page-rounded size (what
the kernel maps), so tracemalloc sees these buffers as it sees NumPy's own. The runtime's
count is the arrays' bytes; the kernel rounds each mapping up to a page (4 KiB), which is
the slack between the two (docs/runtime.md, "Growing a buffer").
"""

from __future__ import annotations

import ctypes
import mmap
import sys
from functools import cache

import numpy as np

MAPPED = sys.platform.startswith("linux") and hasattr(mmap, "MAP_PRIVATE")
PAGE = mmap.PAGESIZE
# NumPy's tracemalloc domain (NPY_TRACE_DOMAIN, numpy/_core/src/multiarray/alloc.h) and
# the least size NumPy advises huge pages for (its alloc.c: 4 MiB and up).
NUMPY_TRACE_DOMAIN = 389047
NUMPY_HUGE_PAGES_FROM = 4 << 20


def _trace_api():
    api = ctypes.pythonapi
    api.PyTraceMalloc_Track.argtypes = [ctypes.c_uint, ctypes.c_size_t, ctypes.c_size_t]
    api.PyTraceMalloc_Untrack.argtypes = [ctypes.c_uint, ctypes.c_size_t]
    return api.PyTraceMalloc_Track, api.PyTraceMalloc_Untrack


_TRACK, _UNTRACK = _trace_api()


class _Mapping(mmap.mmap):
    """A private anonymous mapping; `addr` is where it is now, 0 before the first trace.
    Its pages are unmapped when nothing refers to it (no array on it is left)."""

    addr = 0

    def trace(self) -> None:
        """Tell tracemalloc where the mapping is and how large (after a move, too)."""
        new = _address(self)
        if self.addr and self.addr != new:
            _UNTRACK(NUMPY_TRACE_DOMAIN, self.addr)
        self.addr = new
        _TRACK(NUMPY_TRACE_DOMAIN, new, _pages(len(self)))   # replaces a trace at `new`

    def __del__(self, untrack=_UNTRACK) -> None:    # bound now: also at interpreter exit
        if self.addr:
            untrack(NUMPY_TRACE_DOMAIN, self.addr)


def _address(m: _Mapping) -> int:
    probe = ctypes.c_char.from_buffer(m)
    try:
        return ctypes.addressof(probe)
    finally:
        del probe                           # the buffer export ends here (resize needs it)


def _pages(nbytes: int) -> int:
    return -(-nbytes // PAGE) * PAGE


def empty(shape: int | tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An array on a new mapping of its own (its contents are zero: fresh pages), or from
    NumPy where there are no mappings."""
    dtype = np.dtype(dtype)
    if not MAPPED:
        return np.empty(shape, dtype)
    n = int(np.prod(shape, dtype=np.int64))
    # A mapping cannot be empty: a 0-element array keeps one page.
    m = _Mapping(-1, max(1, n * dtype.itemsize), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    _advise(m)
    m.trace()
    return on(m, dtype, n).reshape(shape)


def zeros(shape: int | tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """As `empty`: a new mapping's pages are zero already, nothing is written."""
    return empty(shape, dtype) if MAPPED else np.zeros(shape, dtype)


def on(m: _Mapping, dtype: np.dtype, n: int) -> np.ndarray:
    """The flat array of n elements of `dtype` at the start of mapping `m`."""
    return np.frombuffer(m, dtype, count=n)


def buffer_of(arr: np.ndarray) -> np.ndarray:
    """The array that owns the memory behind `arr`."""
    while isinstance(arr.base, np.ndarray):
        arr = arr.base
    return arr


def mapping_of(arr: np.ndarray) -> _Mapping | None:
    """The mapping an array from `empty` (or a view of it) lives on, else None."""
    view = buffer_of(arr).base
    return view.obj if isinstance(view, memoryview) and isinstance(view.obj, _Mapping) \
        else None


def resize(m: _Mapping, dtype: np.dtype, old: int, n: int, zero: bool) -> np.ndarray | None:
    """Mapping `m` (holding `old` elements of `dtype`) as a flat array of n elements, the
    start kept, by mremap: pages move, nothing is copied. New elements are zero where
    `zero` (fresh pages are; only the rest of the old last page is written). None when an
    array on `m` is still alive somewhere (its memory would move under it): then the
    caller copies."""
    try:
        m.resize(max(1, n * dtype.itemsize))
    except BufferError:
        return None
    m.trace()
    _advise(m)
    out = on(m, dtype, n)
    if zero and n > old:
        # The old last page (one page even for 0 elements: a mapping keeps a byte) may
        # hold bytes of a larger past, which a shrink keeps; the pages after it are fresh.
        lo = old * dtype.itemsize
        out.view(np.uint8)[lo:min(n * dtype.itemsize, _pages(max(1, lo)))] = 0
    return out


def _advise(m: _Mapping) -> None:
    """Transparent huge pages for the whole mapping, where NumPy would ask for them for a
    buffer of its size (its 4 KiB page faults were most of a 64 MiB gather's time: 16,384
    per rank; benchmarks/gather_phases.py). A refusal changes nothing."""
    if len(m) >= NUMPY_HUGE_PAGES_FROM and numpy_huge_pages():
        try:
            m.madvise(mmap.MADV_HUGEPAGE)
        except OSError:
            pass


@cache
def numpy_huge_pages() -> bool:
    """Whether NumPy advises huge pages for its own large buffers (Linux, THP on)."""
    try:
        from numpy._core.multiarray import _get_madvise_hugepage
    except ImportError:
        return False
    return bool(_get_madvise_hugepage()) and hasattr(mmap, "MADV_HUGEPAGE")
