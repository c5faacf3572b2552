"""Growing a runtime buffer never copies, at any size (runtime/alloc.py).

The buffer is grown by the runtime's `_resize` in the conditions under which glibc's
realloc copies (its mmap threshold raised by freeing a large mapped block, a heap block
allocated right after ours). Two witnesses that no byte was copied: the physical pages
holding the data are the same before and after (/proc/self/pagemap, where the process
may read page frame numbers), and the resize takes no page faults (a copy into new
memory faults every destination page in: 4,096 for 16 MiB, with huge pages not asked
for, as here, and as realloc's new block gets none). The same checks catch the
copy the runtime does make when another array still sees the buffer, so they can fail.
"""

from __future__ import annotations

import os
import resource
import struct

import numpy as np
import pytest

from redist.runtime import alloc, execute
from redist.runtime.memory import MemoryTracker

KIB, MIB = 1 << 10, 1 << 20
needs_mappings = pytest.mark.skipif(not alloc.MAPPED or not os.path.exists("/proc/self/pagemap"),
                                    reason="the runtime's own mappings: Linux")


def frames(arr: np.ndarray, nbytes: int) -> list[int]:
    """The physical page frame of each page of arr's first `nbytes` (0 where the kernel
    hides them from this process)."""
    start = arr.__array_interface__["data"][0]
    assert start % alloc.PAGE == 0
    with open("/proc/self/pagemap", "rb") as f:
        f.seek(start // alloc.PAGE * 8)
        words = struct.unpack(f"<{nbytes // alloc.PAGE}Q", f.read(nbytes // alloc.PAGE * 8))
    return [w & ((1 << 55) - 1) for w in words]


def neighbour_of(arr: np.ndarray) -> list[np.ndarray]:
    """Heap blocks allocated until one lies right after arr's memory (were arr a heap
    block, realloc could not grow it where it is), or 64 of them."""
    end = arr.__array_interface__["data"][0] + arr.nbytes
    got = []
    while len(got) < 64:
        got.append(np.ones(4 * KIB, np.uint8))
        if 0 <= got[-1].__array_interface__["data"][0] - end <= 64:
            break
    return got


def faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def grow_twofold(nbytes: int, seen_elsewhere: bool) -> dict:
    """A touched runtime buffer of nbytes grown to 2 * nbytes by _resize (new part not
    zeroed, as a gather asks), under the conditions in which realloc copies."""
    np.ones(24 * MIB, np.uint8)                     # freed: glibc raises its mmap threshold
    mem = MemoryTracker()
    box = [mem.empty((nbytes // 4,), np.float32)]
    box[0][...] = np.arange(nbytes // 4, dtype=np.float32)
    neighbours = neighbour_of(box[0])
    view = box[0][:1] if seen_elsewhere else None
    before = frames(box[0], nbytes)
    f = faults()
    out = execute._resize(box, nbytes // 2, mem, zero=False)
    took = faults() - f
    intact = bool((out[:nbytes // 4] == np.arange(nbytes // 4, dtype=np.float32)).all())
    del view, neighbours
    return {"same_frames": frames(out, nbytes) == before, "frames_visible": any(before),
            "faults": took, "intact": intact, "counted": mem.live == 2 * nbytes}


@needs_mappings
@pytest.mark.parametrize("nbytes", [16 * KIB, 16 * MIB])
def test_a_runtime_buffer_grows_without_a_copy_at_any_size(nbytes, monkeypatch):
    monkeypatch.setattr(alloc, "numpy_huge_pages", lambda: False)
    r = grow_twofold(nbytes, seen_elsewhere=False)
    assert r["intact"] and r["counted"], r
    if r["frames_visible"]:
        assert r["same_frames"], r                  # the very pages, moved (mremap)
    assert r["faults"] < 64, r                      # a copy: nbytes / 4 KiB faults


@needs_mappings
def test_the_check_sees_a_copy(monkeypatch):
    """A view of the buffer alive elsewhere: the runtime copies (counted), and both
    witnesses show it."""
    monkeypatch.setattr(alloc, "numpy_huge_pages", lambda: False)
    r = grow_twofold(16 * MIB, seen_elsewhere=True)
    assert r["intact"], r
    if r["frames_visible"]:
        assert not r["same_frames"], r
    assert r["faults"] >= 16 * MIB // alloc.PAGE, r


@needs_mappings
def test_tracemalloc_sees_the_mappings_as_numpy_buffers():
    """Each mapping is traced in NumPy's domain at its page-rounded size, moved and
    resized with it, and untraced when its last array dies."""
    import tracemalloc

    def traced() -> int:
        numpy = tracemalloc.DomainFilter(True, alloc.NUMPY_TRACE_DOMAIN)
        return sum(t.size for t in tracemalloc.take_snapshot().filter_traces([numpy]).traces)
    tracemalloc.start()
    try:
        base = traced()
        mem = MemoryTracker()
        box = [mem.empty((1000,), np.float32)]       # 4,000 bytes: one page
        assert traced() - base == alloc.PAGE
        out = execute._resize(box, 3 * MIB // 4, mem)
        assert traced() - base == 3 * MIB == mem.live
        assert tracemalloc.get_traced_memory()[1] >= mem.peak
        del out
        assert traced() == base
    finally:
        tracemalloc.stop()


@pytest.mark.skipif(not alloc.MAPPED, reason="the runtime's own mappings are Linux's")
@pytest.mark.parametrize("dtype", ["float64", "S12"])     # S12: elements straddle pages
@pytest.mark.parametrize("small", [0, 300])
def test_a_grow_that_asks_for_zeros_shows_no_old_bytes(dtype, small):
    """A shrink keeps the old last page (a 0-element buffer keeps one): what it held must
    not come back as the new elements of a later grow with zeros."""
    dt = np.dtype(dtype)
    a = alloc.empty((1000,), dt)
    a.view(np.uint8)[:] = 0xAB
    m = alloc.mapping_of(a)
    del a
    b = alloc.resize(m, dt, 1000, small, zero=False)
    assert b is not None and (b.view(np.uint8) == 0xAB).all()
    del b
    c = alloc.resize(m, dt, small, 1000, zero=True)
    assert c is not None
    raw = c.view(np.uint8)
    assert (raw[:small * dt.itemsize] == 0xAB).all()
    assert not raw[small * dt.itemsize:].any()
