"""The rounds of the exchange between blocks of different sizes in one buffer
(core/ops/all_exchange.in_slots): the buffer has `cap` = max(before, after) piece-sized
slots; the before-pieces some device needs start in slots of their own. A piece may go
to several devices (an after block replicated on axes the before block is not) or to
none (a copy another device sends), so the equal-size rounds (core/semantics/rounds.py)
do not apply. Instead every message lands in a slot free when its round starts (a piece
nobody needs, the growth of the buffer, or a piece whose last copy went out in an earlier
round), so no live byte is ever overwritten and a round's messages can all be posted at
once (every send's receive is posted in the same round, so none waits on another round).
Every rank computes the same schedule from the layouts alone."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class SlotSchedule:
    """`rounds[r]`: rows (sender, its slot, receiver, its slot), in one order that both
    ends of every pair post in (MPI matches messages between two ranks in order). After
    the rounds, slot `lands[v, j]` of device v holds its after-piece j."""
    cap: int
    rounds: tuple[np.ndarray, ...]
    lands: np.ndarray

    @property
    def most_received(self) -> int:
        """Messages the busiest receiver waits for."""
        got = np.zeros(len(self.lands), np.int64)
        for row in self.rounds:
            np.add.at(got, row[:, 2], 1)
        return int(got.max())


def slot_schedule(src_device: np.ndarray, src_piece: np.ndarray, start: np.ndarray,
                  cap: int) -> SlotSchedule | None:
    """Rounds for sources given per receiving device v and after-piece j (device
    src_device[v, j] sends its before-piece src_piece[v, j]), before-piece k of device u
    starting in slot start[u, k] (the pieces some device needs; the other slots are free),
    or None where some round would find no free slot for any pending message (devices full
    of pieces they still have to send to each other: outside the class)."""
    ndev, qa = src_device.shape
    before_pieces = start.shape[1]
    lands = np.full((ndev, qa), -1, np.int64)
    # Per (device, piece): the (receiver, after-piece) pairs it still has to reach.
    pending: dict[tuple[int, int], list[tuple[int, int]]] = {}
    kept = np.zeros((ndev, before_pieces), bool)
    for v in range(ndev):
        for j in range(qa):
            u, k = int(src_device[v, j]), int(src_piece[v, j])
            if u == v:
                kept[v, k] = True
                lands[v, j] = start[v, k]
            else:
                pending.setdefault((u, k), []).append((v, j))
    free = []
    for u in range(ndev):
        live = {int(start[u, k]) for k in range(before_pieces)
                if kept[u, k] or (u, k) in pending}
        free.append([k for k in range(cap) if k not in live])
    rounds = []
    while pending:
        row, freed, done = [], [], []
        for (u, k), dests in pending.items():
            left = []
            for v, j in dests:
                if free[v]:
                    sv = free[v].pop(0)
                    row.append((u, int(start[u, k]), v, sv))
                    lands[v, j] = sv
                else:
                    left.append((v, j))
            dests[:] = left
            if not left:
                done.append((u, k))
                if not kept[u, k]:
                    freed.append((u, k))       # free from the next round on
        if not row:
            return None
        for key in done:
            del pending[key]
        for u, k in freed:
            free[u].append(int(start[u, k]))
        arr = np.array(row, np.int64)
        arr.flags.writeable = False
        rounds.append(arr)
    lands.flags.writeable = False
    return SlotSchedule(cap, tuple(rounds), lands)
