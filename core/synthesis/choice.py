"""`--collectives mpi`'s choice between the portable plan and one all_exchange, both
within the limit (synthesize.with_exchange): memory first, then time, and time only
where the cost model's predicted gain is larger than its own measured error.

1. Memory. Without a budget the bound is the contract: the plan that holds less while
   it runs (runtime peak, proved: blocks and working memory, chunk included) is kept,
   whatever the prediction; time decides only between plans of equal peak. A budget
   lets memory be traded for time up to it (both fit it: time decides).
2. Bytes. An exchange that holds its input and output at once (one Alltoallw, not in
   one buffer) is never taken over a portable plan that moves no more bytes.
3. Time, with a margin. The exchange is taken only where predicted faster than the
   portable plan by more than MARGIN; a closer call is within the model's error and
   keeps the portable plan (the one the portable engines run too)."""

from __future__ import annotations

from dataclasses import dataclass

# The cost model's error on the ratio of two plans' times: |log(predicted ratio /
# measured ratio)| of the exchange over the portable plan, median over the runtime
# benchmark's cases (benchmarks/results/runtime-*-choice.md, "choice margin"): a
# predicted gain below it is as likely noise as a gain.
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
    if t_port <= t_exch:
        return Choice(False, "time")
    if t_exch * (1 + margin) >= t_port:
        return Choice(False, "margin")
    return Choice(True, "time")
