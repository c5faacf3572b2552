"""The allocator policy for buffers the runtime grows in place (gathers, pads).

NumPy grows a buffer with the C library's realloc. glibc grows a heap chunk in place only
when the memory after it is free; otherwise it allocates the new size, copies and frees
the old block, so for an instant both exist (old + new bytes, unseen by tracemalloc). A
chunk that is its own mapping grows with mremap instead: pages are moved, never copied.
glibc maps every block at or above its mmap threshold, but raises that threshold (up to
32 MiB) after the first free of a mapped block, so blocks the runtime grows later would be
heap chunks. `growth_policy` fixes the threshold (which also stops the raise; the ranks `redist run`
starts get it from their first allocation through GLIBC_TUNABLES, `tunables_env`);
`mapped` tells whether a buffer is a mapping (glibc's chunk header).
"""

from __future__ import annotations

import ctypes
import os
import sys
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:               # numpy is not imported here: the policy may run first
    import numpy as np

# mallopt's parameters (malloc.h) and the values set. The mmap threshold: glibc's own
# initial one. A block is mapped only when the heap has no free space for it, and the heap
# keeps up to the trim threshold free at its top (plus the top pad on each extension): both
# are set below the mmap threshold, so every block from it up is a mapping.
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
MMAP_THRESHOLD_BYTES = 128 * 1024
TRIM_THRESHOLD_BYTES, TOP_PAD_BYTES = 64 * 1024, 0
# glibc's chunk header: the size word before the pointer, whose bit 1 marks a mapping
# (the low 3 bits are flags); a mapped chunk starts two words before the pointer.
IS_MMAPPED, SIZE_FLAGS = 2, 7
MADV_HUGEPAGE, PAGE = 14, 4096
# advise_huge_pages: the least range worth advising (one huge page).
HUGE_PAGE_BYTES = 2 << 20


@cache
def libc() -> ctypes.CDLL | None:
    """The process's C library on Linux (madvise), else None."""
    return ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


@cache
def glibc() -> ctypes.CDLL | None:
    """The process's C library if it is glibc (Linux), else None."""
    c = libc()
    return c if c is not None and hasattr(c, "gnu_get_libc_version") else None


def opted_out() -> bool:
    return os.environ.get("REDIST_MALLOC_POLICY", "1") == "0"


def tunables_env(env: dict[str, str]) -> dict[str, str]:
    """The GLIBC_TUNABLES entry that sets the same policy in processes started with `env`
    (the MPI ranks), from their first allocation on; {} when opted out or set already."""
    have = env.get("GLIBC_TUNABLES", "")
    if opted_out() or "glibc.malloc." in have:
        return {}
    ours = (f"glibc.malloc.mmap_threshold={MMAP_THRESHOLD_BYTES}:"
            f"glibc.malloc.trim_threshold={TRIM_THRESHOLD_BYTES}:"
            f"glibc.malloc.top_pad={TOP_PAD_BYTES}")
    return {"GLIBC_TUNABLES": f"{have}:{ours}" if have else ours}


@cache
def growth_policy() -> bool:
    """Once per process (process-wide): fix glibc's mmap threshold (and keep the heap's
    free top below it) so every block of MMAP_THRESHOLD_BYTES or more is its own mapping
    and grows without a copy. True when set; False where it is not glibc, or
    REDIST_MALLOC_POLICY=0 opts out (a resize may then copy, a transient of the old block
    that the runtime's count does not see: docs/runtime.md, "Growing a buffer")."""
    if opted_out():
        return False
    libc = glibc()
    return libc is not None and all(
        libc.mallopt(k, v) == 1 for k, v in ((M_TOP_PAD, TOP_PAD_BYTES),
                                             (M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES),
                                             (M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)))


def mapped(arr: np.ndarray) -> bool | None:
    """Whether the buffer owning `arr`'s data (from NumPy's default allocator, i.e. malloc)
    is a glibc mapping; None where that cannot be told (not glibc, another allocator)."""
    if glibc() is None or _numpy_handler(arr) != "default_allocator":
        return None
    word = ctypes.c_size_t.from_address(arr.ctypes.data - ctypes.sizeof(ctypes.c_size_t))
    return bool(word.value & IS_MMAPPED)


def one_mapping(arr: np.ndarray) -> None:
    """Make the mapping behind `arr` (owning its data) one kernel mapping again before
    realloc: NumPy advises huge pages only for the aligned middle of a large buffer, which
    splits it in three, and mremap refuses a range over several (EFAULT), so glibc falls
    back to malloc, copy, free. The same advice over the whole mapping merges them back."""
    if not mapped(arr):
        return
    word = ctypes.c_size_t.from_address(arr.ctypes.data - ctypes.sizeof(ctypes.c_size_t))
    start = (arr.ctypes.data - 2 * ctypes.sizeof(ctypes.c_size_t)) // PAGE * PAGE
    glibc().madvise(ctypes.c_void_p(start), ctypes.c_size_t(word.value & ~SIZE_FLAGS),
                    MADV_HUGEPAGE)


def _numpy_handler(arr: np.ndarray) -> str | None:
    try:
        from numpy._core.multiarray import get_handler_name
    except ImportError:
        return None
    return get_handler_name(arr)


@cache
def numpy_huge_pages() -> bool:
    """Whether NumPy advises huge pages for its own large buffers (Linux, THP on)."""
    try:
        from numpy._core.multiarray import _get_madvise_hugepage
    except ImportError:
        return False
    return bool(_get_madvise_hugepage())


def advise_huge_pages(flat: np.ndarray, start: int) -> None:
    """Ask for transparent huge pages behind flat[start:], not yet touched, as NumPy asks
    for its own large buffers (and only where it does): realloc's new memory comes
    without, and its 4 KiB page faults were most of a gather's time (64 MiB output: 16,384
    faults per rank; benchmarks/gather_phases.py). Linux only; a refusal changes nothing."""
    c = libc()
    if c is None or not numpy_huge_pages():
        return
    lo = -(-(flat.ctypes.data + start * flat.itemsize) // PAGE) * PAGE
    hi = (flat.ctypes.data + flat.nbytes) // PAGE * PAGE
    if hi - lo >= HUGE_PAGE_BYTES:
        c.madvise(ctypes.c_void_p(lo), ctypes.c_size_t(hi - lo), MADV_HUGEPAGE)
