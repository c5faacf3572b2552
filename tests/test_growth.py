"""Growing a buffer in place never holds old + new at once unseen (runtime/alloc.py).

A subprocess (a fresh allocator) grows a touched 16 MiB block to 32 MiB with the runtime's
_resize after glibc's mmap threshold has been raised the way a run raises it (a 24 MiB
mapped block freed), with a heap block right after it so realloc cannot extend in place.
Its peak RSS over the grow (VmHWM after clear_refs) and the page faults of the resize
are printed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from redist.runtime import alloc

MIB = 1 << 20
GROW = r"""
import json, resource, sys
import numpy as np
from redist.runtime import alloc
from redist.runtime.execute import _resize
from redist.runtime.memory import MemoryTracker

policy = alloc.growth_policy()
MIB = 1 << 20
np.ones(24 * MIB, np.uint8)                    # a mapped block freed: threshold raised
mem = MemoryTracker()
box = [mem.hold(np.ones(4 * MIB, np.float32))]  # 16 MiB, touched, handed over
mapped = alloc.mapped(box[0])
guard = np.ones(MIB // 2, np.uint8)             # heap block after it: no growth in place

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024

rss = status("VmRSS")
open("/proc/self/clear_refs", "w").write("5")   # VmHWM := VmRSS
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
out = _resize(box, 8 * MIB, mem, zero=False)   # 32 MiB; a copy faults in 16 MiB of pages
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
out[4 * MIB:] = 0                               # the new half touched
print(json.dumps({"policy": policy, "grew": status("VmHWM") - rss, "mapped": mapped,
                  "faults": faults,
                  "ok": bool((out[:4 * MIB] == 1).all() and (out[4 * MIB:] == 0).all())}))
"""


def grow(policy: bool) -> dict:
    env = {**os.environ, "REDIST_MALLOC_POLICY": "1" if policy else "0"}
    run = subprocess.run([sys.executable, "-c", GROW], env=env, capture_output=True,
                         text=True, timeout=120, check=True)
    return json.loads(run.stdout)


needs_glibc = pytest.mark.skipif(
    alloc.glibc() is None or not os.access("/proc/self/clear_refs", os.W_OK),
    reason="glibc and /proc/self/clear_refs (Linux) needed")


@needs_glibc
def test_growth_with_the_policy_holds_only_the_new_size():
    r = grow(policy=True)
    assert r["policy"] and r["ok"]
    # old 16 MiB already resident: the grow adds its new 16 MiB, never a 32 MiB copy
    assert r["grew"] < 20 * MIB, r
    assert r["mapped"]
    assert r["faults"] < 256, r       # pages moved by mremap (a copy: 4,096 faults)


@needs_glibc
def test_growth_without_the_policy_copies():
    """The same grow with the policy off: realloc copies into a new 32 MiB block while the
    old 16 MiB lives (the doubling the policy removes; the test can fail)."""
    r = grow(policy=False)
    assert not r["policy"] and r["ok"]
    assert not r["mapped"]
    assert r["grew"] > 28 * MIB, r
    assert r["faults"] >= 4096, r


def test_the_ranks_get_the_policy_from_their_start_unless_opted_out(monkeypatch):
    monkeypatch.delenv("REDIST_MALLOC_POLICY", raising=False)
    ours = alloc.tunables_env({})["GLIBC_TUNABLES"]
    assert f"glibc.malloc.mmap_threshold={alloc.MMAP_THRESHOLD_BYTES}" in ours
    assert alloc.tunables_env({"GLIBC_TUNABLES": "glibc.rtld.x=1"}) == {
        "GLIBC_TUNABLES": "glibc.rtld.x=1:" + ours}
    assert alloc.tunables_env({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}) == {}  # yours
    monkeypatch.setenv("REDIST_MALLOC_POLICY", "0")
    assert alloc.tunables_env({}) == {}
