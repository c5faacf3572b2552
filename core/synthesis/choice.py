"""`--collectives mpi`'s choice between the portable plan and one all_exchange, both
within the limit (synthesize.with_exchange): memory first, then time, and time only
where the cost model's prediction is larger than its own measured error.

1. Memory. Without a budget the bound is the contract: the plan that holds less while
   it runs (runtime peak, proved: blocks and working memory, chunk included) is kept,
   whatever the prediction; time decides only between plans of equal peak. A budget
   lets memory be traded for time up to it.
2. Bytes. An exchange that holds its input and output at once (one Alltoallw, not in
   one buffer) is never taken over a portable plan that moves no more bytes.
3. Time, beyond the margin. Where one plan is predicted faster than the other by more
   than MARGIN (the model's measured error on the ratio of two plans' times), it is
   taken.
4. Within the margin the prediction cannot tell them apart: the plan that holds less
   (a budget's case), and on equal memory the exchange. Measured, on equal memory the
   exchange (the lower bound of bytes, in one step) was the faster or within 1.1x of the
   portable plan in 23 of 28 case runs of the runtime benchmark (2026-12-02, six runs;
   paired medians: 0.92x at the median), the portable plan faster by more than 10% in
   5 (random-2, reorder, swap-3d); the portable plan, the other way, lost by more than
   10% in 13 (transpose, paper-1d, random-1)."""

from __future__ import annotations

from dataclasses import dataclass

# The cost model's error on the ratio of two plans' times: |log(predicted ratio /
# measured ratio)| of the exchange over the portable plan, as a factor, median over the
# runtime benchmark's cases where both fit (30 case runs in six runs of 2026-12-02: 24%;
# runtime_bench prints it as "the choice margin's statistic").
MARGIN = 0.25


@dataclass(frozen=True)
class Choice:
    exchange: bool      # take the all_exchange (else the portable plan)
    rule: str           # which rule decided: "memory", "bytes", "time" or "margin"


def choose(port_peak: int, exch_peak: int, port_volume: int, exch_volume: int,
           one_buffer: bool, t_port: float, t_exch: float, budgeted: bool,
           margin: float = MARGIN) -> Choice:
    """Between a portable plan and an exchange that both fit the limit (the bound, or a
    budget where `budgeted`): peaks and volumes in bytes, predicted seconds; `one_buffer`:
    the exchange runs in one buffer (in place or in slots) rather than one Alltoallw."""
    if not budgeted and port_peak != exch_peak:
        return Choice(exch_peak < port_peak, "memory")
    if not one_buffer and port_volume <= exch_volume:
        return Choice(False, "bytes")
    if t_exch * (1 + margin) < t_port:
        return Choice(True, "time")
    if t_port * (1 + margin) < t_exch:
        return Choice(False, "time")
    return Choice(exch_peak <= port_peak, "margin")
