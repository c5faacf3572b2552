"""The rounds of the in-place exchange (core/ops/all_exchange.in_place): every device
sends Q pieces and receives Q, so the send -> receive multigraph (self-loops for the
pieces a device keeps) is Q-regular and splits into Q perfect matchings (König). In each
round a device sends one piece and receives one into the place it vacated. Every rank
computes the same schedule from the layouts alone."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class Schedule:
    """Per round r and device u: u sends its before-piece `slot[r, u]` (in that place of
    its buffer) to `dest[r, u]` and receives into the same place from `source[r, u]`
    (dest == source == u: the piece stays). After the rounds, place k of device u holds
    its after-piece `lands[u, k]`."""
    dest: np.ndarray
    source: np.ndarray
    slot: np.ndarray
    lands: np.ndarray


def schedule(src_device: np.ndarray, src_piece: np.ndarray) -> Schedule:
    """The rounds for sources given per receiving device v and after-piece j: device
    src_device[v, j] sends its before-piece src_piece[v, j] (a bijection onto all
    (device, before-piece) pairs)."""
    ndev, q = src_device.shape
    # Edge e = v * q + j: sender src_device, receiver v.
    sender = src_device.reshape(-1).tolist()
    receiver = [e // q for e in range(ndev * q)]
    out_edges: list[list[int]] = [[] for _ in range(ndev)]
    for e in range(ndev * q):
        out_edges[sender[e]].append(e)
    dest = np.zeros((q, ndev), np.int64)
    source = np.zeros((q, ndev), np.int64)
    slot = np.zeros((q, ndev), np.int64)
    lands = np.zeros((ndev, q), np.int64)
    piece = src_piece.reshape(-1)
    for r in range(q):
        match = _perfect_matching(ndev, out_edges, sender, receiver)
        for u, e in enumerate(match):
            v = receiver[e]
            out_edges[u].remove(e)
            dest[r, u], source[r, v], slot[r, u] = v, u, int(piece[e])
        for e in match:
            v = receiver[e]
            # v receives e's piece (its after-piece e % q) into the place it sends from.
            lands[v, slot[r, v]] = e % q
    return Schedule(dest, source, slot, lands)


def _perfect_matching(n: int, out_edges: list[list[int]], sender: list[int],
                      receiver: list[int]) -> list[int]:
    """A perfect matching of a regular bipartite multigraph (senders 0..n-1 to receivers
    0..n-1, edges out_edges[u]): per sender, its edge. Kept pieces (self-loops) first, then
    greedy, then augmenting paths found breadth-first (deterministic)."""
    by_sender = [-1] * n
    by_receiver = [-1] * n

    def take(u: int, e: int) -> None:
        by_sender[u], by_receiver[receiver[e]] = e, e
    for u in range(n):
        e = next((e for e in out_edges[u] if receiver[e] == u), None)
        if e is not None:
            take(u, e)
    for u in range(n):
        if by_sender[u] < 0:
            e = next((e for e in out_edges[u] if by_receiver[receiver[e]] < 0), None)
            if e is not None:
                take(u, e)
    for u in range(n):
        if by_sender[u] >= 0:
            continue
        parent: dict[int, tuple[int, int]] = {}        # receiver -> (sender, edge)
        queue, end = [u], -1
        for x in queue:
            for e in out_edges[x]:
                v = receiver[e]
                if v in parent:
                    continue
                parent[v] = (x, e)
                if by_receiver[v] < 0:
                    end = v
                    break
                queue.append(sender[by_receiver[v]])
            if end >= 0:
                break
        assert end >= 0, "a regular bipartite multigraph has a perfect matching"
        v = end
        while True:
            x, e = parent[v]
            prev = by_sender[x]
            take(x, e)
            if x == u:
                break
            v = receiver[prev]
    return by_sender

