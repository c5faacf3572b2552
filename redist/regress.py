"""`redist regress` (DESIGN §13): property-based regressions on this machine, its MPI and
(optionally) JAX: the same properties the project's test suite checks.

For every random problem (meshes, shapes even, tight and uneven, layouts with sub-axes):
  1. synthesize; the simulator delivers every valid dst element; a plan without caveat
     proves all five claims, and a plan with one is indeed over the bound or out of
     normal form;
  2. with --np R: the plan `run` would choose (collectives mpi, always verifiable) runs on
     R MPI ranks through `redistribute`, and every element is compared;
  3. with --jax: on 8 host devices, redist.jax.reshard equals jax.device_put (extents
     divisible by the mesh, as JAX requires);
  4. with --torch: on 8 torchrun ranks (gloo), redist.torch.redistribute gives every rank
     its DTensor block (problems whose layouts are DTensor placements, DTensor's nested
     uneven splits included).
A failure is shrunk by hypothesis to a minimal problem, saved as a plan file (its
problem is the failing one), printed with the one command that replays it, kept in an
example database that is replayed first next time, and the exit code is 1.
"""

from __future__ import annotations

import json
import math
import os
import selectors
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase

from redist.core.errors import RedistError
from redist.core.limits import check
from redist.core.model.dtypes import same_bits
from redist.core.model.problem import Problem
from redist.core.plans import simulator
from redist.core.plans.plan import Plan
from redist.core.plans.planjson import load, plan_to_json
from redist.core.smt.verify import verify
from redist.core.synthesis.synthesize import is_normal_form, naive, normal, synthesize_plan
from redist.strategies import meshes, meshes_of, problems

DEFAULT_DB = os.path.join(os.path.expanduser("~"), ".cache", "redist", "regress-examples")


REPLAY_RANKS = "the ranks the replayed problem needs (its mesh's devices)"


class MpiServer:
    """One MPI job for the whole run (runtime/serve.py): a plan per line in, a verdict out."""

    def __init__(self, nprocs: int, mpiexec: str | None = None, timeout: float = 120,
                 cmd: list[str] | None = None, ready: str | None = None,
                 plan: Plan | None = None) -> None:
        import tempfile

        from redist.runtime.launch import check_resources
        from redist.runtime.lifeline import launcher_env

        # The limits of `redist run`: ranks, and memory (of `plan`'s job when known).
        check_resources(plan, nprocs, "--np" if plan is None else REPLAY_RANKS)
        self.timeout = timeout
        if cmd is None:
            from redist.runtime.launch import find_mpiexec
            from redist.runtime.serve import READY
            cmd = [find_mpiexec(mpiexec), "-n", str(nprocs), sys.executable, "-m",
                   "redist.runtime.serve"]
            ready = READY
        # A file, not a pipe: chatty ranks must never block on a full stderr pipe.
        self.err = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.err, text=True, start_new_session=True,
                                     env=dict(os.environ, **launcher_env(None)))
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.proc.stdout, selectors.EVENT_READ)
        line = self._line()
        if line.strip() != ready:
            raise RedistError(f"the MPI job did not start: {line or self._stderr()}")

    def _line(self) -> str:
        if not self.sel.select(self.timeout):
            self.close()
            raise RedistError(f"the MPI job gave no answer within {self.timeout:g} s")
        return self.proc.stdout.readline()

    def _stderr(self) -> str:
        try:
            self.err.seek(0)
            return self.err.read()[-500:]
        except (OSError, ValueError):
            return ""

    def run(self, plan_doc: dict) -> dict:
        try:
            self.proc.stdin.write(json.dumps(plan_doc) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise RedistError(f"the MPI job died: {self._stderr()}") from None
        line = self._line()
        if not line:
            raise RedistError(f"the MPI job died: {self._stderr()}")
        return json.loads(line)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                import signal
                os.killpg(self.proc.pid, signal.SIGKILL)


def torch_server(nprocs: int = 8, timeout: float = 300) -> MpiServer:
    """The same line protocol on torchrun ranks (redist/torch_serve.py, gloo)."""
    try:
        from redist.torch_serve import READY
    except ImportError as e:
        raise RedistError(f"--torch needs PyTorch ({e}): pip install 'redist[torch]'") from None

    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nprocs),
           "-m", "redist.torch_serve"]
    return MpiServer(nprocs, timeout=timeout, cmd=cmd, ready=READY)


@dataclass
class Tally:
    checked: int = 0
    kinds: Counter = field(default_factory=Counter)
    verified: int = 0
    caveat: int = 0
    at_lower_bound: int = 0
    exchange_chosen: int = 0
    mpi_runs: int = 0
    jax_runs: int = 0
    torch_runs: int = 0
    failures: int = 0


def _kind(p: Problem) -> str:
    subs = any("(" in a for a in p.show(p.src).used_axes() + p.show(p.dst).used_axes())
    shape = "uneven" if p.uneven else "even"
    return f"{shape}{', sub-axes' if subs else ''}{', pending sum' if p.src.sum else ''}"


def check_problem(p: Problem, tally: Tally | None = None, server: MpiServer | None = None,
                  with_jax: bool = False, torch: MpiServer | None = None) -> list[str]:
    """Every property above for one problem; the list of what failed (empty: all good)."""
    tally = tally if tally is not None else Tally()
    out = []
    s = normal(p)
    plan = s.plan
    dev = simulator.wrong_device(plan)
    if dev is not None:
        out.append(f"the simulator delivers wrong elements on device {dev}")
    fig = plan.figures()
    if (s.reason is None) != (fig.memory_efficient and is_normal_form(plan)):
        out.append(f"the synthesizer's caveat {s.reason!r} does not fit its plan")
    if s.reason is None:
        v = verify(plan)
        if not v.all_proved:
            out.append("a plan without caveat does not prove all five claims: "
                       + "; ".join(f"{r.claim} {r.status}" for r in v.results
                                   if r.status != "proved"))
        tally.verified += v.all_proved
    else:
        tally.caveat += 1
    tally.at_lower_bound += fig.volume_bytes == fig.lower_bound_bytes
    if server is not None:
        chosen = synthesize_plan(p, "normal", "mpi")
        tally.exchange_chosen += chosen.method.startswith("all_exchange")
        answer = server.run(plan_to_json(chosen.plan, with_figures=False))
        tally.mpi_runs += 1
        if not answer.get("ok"):
            what = answer.get("error") or f"{answer.get('mismatched')} elements differ"
            out.append(f"MPI run: {what}")
    if with_jax and not p.uneven and p.mesh.num_devices <= 8:
        out += _check_jax(p)
        tally.jax_runs += 1
    case = torch_case(p) if torch is not None else None
    if case is not None:
        answer = torch.run(case)["redist"]
        tally.torch_runs += 1
        if not answer.get("ok"):
            out.append("redist.torch: " + (answer.get("refused") or
                                           f"ranks {answer['bad_ranks']} hold wrong blocks"))
    return out


def torch_case(p: Problem) -> dict | None:
    """The problem as a DTensor case (one placement per mesh dim; a pending sum of src is
    Partial("sum"), "P"), or None when its layouts are not placements (sub-axes, or
    several mesh dims out of mesh order) or dst keeps a sum (the job checks reduced
    blocks)."""
    src, dst = p.show(p.src), p.show(p.dst)
    names = p.base.names
    if dst.sum or any(a not in names for a in src.sum):
        return None
    out = []
    for lay in (src, dst):
        for dim in lay.dims:
            if any(a not in names for a in dim) or list(dim) != sorted(dim, key=names.index):
                return None
        out.append([f"S{lay.dim_of(a)}" if lay.dim_of(a) is not None else
                    "P" if a in lay.sum else "R" for a in names])
    return {"mesh": [list(a) for a in p.base.axes], "shape": list(p.shape),
            "dtype": p.dtype if p.dtype in ("float32", "int32", "bfloat16") else "float32",
            "src": out[0], "dst": out[1]}


def _check_jax(p: Problem) -> list[str]:
    import jax
    import jax.numpy as jnp

    from redist.jax import reshard, to_jax_mesh, to_named_sharding

    jm = to_jax_mesh(p.base, jax.devices()[:p.base.num_devices])
    src, dst = p.show(p.src), p.show(p.dst)
    if any("(" in a for a in src.used_axes() + dst.used_axes()):
        return []                         # JAX shardings name whole mesh axes
    dtype = jnp.float32 if p.itemsize >= 4 else jnp.bfloat16
    x = jax.device_put(jnp.arange(math.prod(p.shape)).reshape(p.shape).astype(dtype) % 251,
                       to_named_sharding(jm, src))
    dsh = to_named_sharding(jm, dst)
    y = reshard(x, dsh)
    if not same_bits(np.asarray(y), np.asarray(jax.device_put(x, dsh))):
        return ["redist.jax.reshard differs from jax.device_put"]
    return []


def strategy(np_ranks: int | None, max_devices: int, with_jax: bool, with_torch: bool = False):
    kinds = st.sampled_from([True, False, "uneven"])
    if np_ranks:
        mesh = meshes_of(np_ranks)
    elif with_jax or with_torch:
        mesh = meshes_of(8)
    else:
        mesh = meshes(max_devices=max_devices)
    # A pending sum (DESIGN §14) in a quarter of the problems (with --torch: DTensor
    # Partial("sum") sources); not with --jax, whose check compares with jax.device_put.
    pending = st.just(False) if with_jax else st.sampled_from([False, False, False, True])
    return st.builds(lambda m, k, pend, data: data.draw(problems(
        generous=k, mesh=m, sub_axes=True, distinct=False, max_elements=1 << 14,
        pending=pend)), mesh, kinds, pending, st.data())


@dataclass
class Outcome:
    tally: Tally
    failure: list[str] | None = None
    problem: Problem | None = None
    saved: str | None = None
    seconds: float = 0.0


def run(examples: int = 100, seed: int | None = None, np_ranks: int | None = None,
        with_jax: bool = False, max_devices: int = 64, database: str | None = None,
        mpiexec: str | None = None, on_example=None, use_database: bool = True,
        with_torch: bool = False) -> Outcome:
    tally = Tally()
    last: dict = {}
    server = MpiServer(np_ranks, mpiexec) if np_ranks else None
    torch = torch_server() if with_torch else None
    t0 = time.perf_counter()

    def prop(problem: Problem) -> None:
        tally.checked += 1
        tally.kinds[_kind(problem)] += 1
        if on_example:
            on_example(tally)
        try:
            failures = check_problem(problem, tally, server, with_jax, torch)
        except RedistError as e:
            failures = [f"error: {e}"]
        if failures:
            last.update(problem=problem, failures=failures)
            raise AssertionError("; ".join(failures))

    db = DirectoryBasedExampleDatabase(database or DEFAULT_DB) if use_database else None
    test = settings(max_examples=examples, deadline=None, database=db, print_blob=False,
                    suppress_health_check=list(HealthCheck))(
        given(strategy(np_ranks, max_devices, with_jax, with_torch))(prop))
    if seed is not None:
        test = hypothesis_seed(seed)(test)
    outcome = Outcome(tally)
    try:
        test()
    except AssertionError:
        if not last:
            raise
        tally.failures += 1
        outcome.failure, outcome.problem = last["failures"], last["problem"]
    finally:
        for job in (server, torch):
            if job is not None:
                job.close()
    outcome.seconds = time.perf_counter() - t0
    return outcome


def save_failure(problem: Problem, directory: str = ".") -> str:
    """A plan file whose problem is the failing one (the naive plan: it always types)."""
    doc = plan_to_json(naive(problem), with_figures=False)
    name = "redist-regress-failure-" + str(abs(hash(json.dumps(doc, sort_keys=True))) % 10**8)
    path = name + ".json" if directory == "." else os.path.join(directory, name + ".json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1)
    return path


# A replayed problem is simulated element by element (the global array and every device's
# blocks held at once): files from elsewhere may describe problems far larger than the
# ones `regress` draws, which this keeps from exhausting memory.
MAX_REPLAY_ELEMENTS = 1 << 24


def check_size(problem: Problem) -> None:
    p = problem
    held = max(math.prod(p.shape), *(p.mesh.num_devices * lay.local_size(p.mesh, p.shape)
                                     for lay in (p.src, p.dst)))
    check(held, MAX_REPLAY_ELEMENTS, "the number of elements a replay simulates",
          "MAX_REPLAY_ELEMENTS")


def replay(path: str, np_ranks: int | None = None, with_jax: bool = False,
           mpiexec: str | None = None, with_torch: bool = False) -> list[str]:
    plan = load(path)
    problem = plan.problem
    if np_ranks:    # the limits of `redist run` first (MpiServer checks them too)
        from redist.runtime.launch import check_resources
        check_resources(plan, np_ranks, REPLAY_RANKS)
    check_size(problem)
    server = MpiServer(np_ranks, mpiexec, plan=plan) if np_ranks else None
    torch = torch_server() if with_torch else None
    try:
        return check_problem(problem, Tally(), server, with_jax, torch)
    finally:
        for job in (server, torch):
            if job is not None:
                job.close()
