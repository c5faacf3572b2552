"""What the cost model (core/synthesis/costmodel.py) charges one step: the work of the
device that has the most, counted from what the runtime does. Each op module computes its
own (`load`, in its RULE); the model turns a Load into seconds with its constants."""

from __future__ import annotations

import math
from dataclasses import dataclass

from redist.core.semantics.working import chunk_elements

# Gathers whose members' blocks are strided in the output (several dims gathered, or one
# dim after a split one): MPI moves them with derived datatypes, measured ~4x slower per
# byte than contiguous pieces (gather-all against random-0, benchmarks/results).
STRIDED_GATHER = "all_gather_strided"
# Gathers of several dims at once: one Allgatherv of a many-dim subarray type (not merged
# into fewer dims as the one-dim pieces are), measured far slower per run.
GATHER_DIMS = "all_gather_dims"
# The same of a block with three or more dims (a subarray type of 3+ dims): measured ~8x
# dearer per run than 2-dim ones (a 256^3 array gathered from 128^3 blocks, 8 ranks:
# 3.6 s against 1.3 s predicted with GATHER_DIMS' constants; runtime/calibrate.py has it).
GATHER_DIMS3 = "all_gather_dims3"
# The exchange in slots (core/ops/all_exchange.in_slots): whole contiguous pieces posted
# round by round (Isend/Irecv), the buffer grown, its slots arranged and its pieces
# transposed into the after block: another mechanism than the Alltoallw of derived
# datatypes or the in-place chunk swaps whose rows fit all_exchange's constants (gather-all
# at 64 MiB: measured 2x its prediction with those; two thirds of its time in the
# piece-order transposes, benchmarks/results/exchange-phases-*.md).
EXCHANGE_SLOTS = "all_exchange_slots"


@dataclass(frozen=True)
class Load:
    """What the model charges one step: the work of the device that has the most."""
    kind: str           # whose constants: an op, or a runtime path of one (STRIDED_GATHER)
    messages: int       # messages it waits for (chunk handoffs, peers, calls times peers)
    wire: int           # bytes it receives
    copies: int = 0     # bytes it moves locally (memmoves, compactions, packing)
    transposes: int = 0  # bytes of its block transposed in place through the chunk
    runs: int = 0       # contiguous runs of the derived datatypes it packs and unpacks
    steps: int = 1      # 0: the step returns at once (nothing changes)
    group: int = 1      # devices that talk to each other
    # Bytes the device holds during the step (its buffers: the block before and after):
    # where they outgrow the cache, every byte moved costs more (costmodel.CostModel).
    working: int = 0

    @property
    def moved(self) -> int:
        """Bytes that pass through memory: received, copied and transposed."""
        return self.wire + self.copies + self.transposes


def chunk_messages(n: int, block: int) -> int:
    """Messages that move n elements through the scratch of an in-place step on a block
    of `block` elements: chunks of chunk_elements(block), at most the n (execute._swap)."""
    if n <= 0:
        return 0
    step = max(1, min(chunk_elements(block), n))
    return -(-n // step)


def box_runs(box: tuple[int, ...], within: tuple[int, ...]) -> int:
    """Contiguous runs of a box in a C-order array of shape `within`: one per index of
    the dims before the innermost dim the box does not span (0 for an empty box)."""
    if 0 in box:
        return 0
    k = len(box) - 1
    while k >= 0 and box[k] == within[k]:
        k -= 1
    return math.prod(box[:max(k, 0)])
