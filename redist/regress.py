"""`redist regress` (DESIGN §13): property-based regressions on this machine, its MPI and
(optionally) JAX: the same properties the project's test suite checks.

For every random problem (meshes, shapes even, tight and uneven, layouts with sub-axes):
  1. synthesize; the simulator delivers every valid dst element; a plan without caveat
     proves all five claims, and a plan with one is indeed over the bound or out of
     normal form;
  2. with --np R: the plan `run` would choose (collectives mpi, always verifiable) runs on
     R MPI ranks through `redistribute`, and every element is compared;
  3. with --jax: on 8 host devices, redist.jax.reshard equals jax.device_put (extents
     divisible by the mesh, as JAX requires).
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
from redist.core.model.dtypes import same_bits
from redist.core.model.problem import Problem
from redist.core.plans import simulator
from redist.core.plans.plan import Plan
from redist.core.plans.planjson import load, plan_to_json
from redist.core.smt.verify import verify
from redist.core.synthesis.synthesize import is_normal_form, naive, normal, synthesize_plan
from redist.strategies import meshes, meshes_of, problems

DEFAULT_DB = os.path.join(os.path.expanduser("~"), ".cache", "redist", "regress-examples")


class MpiServer:
    """One MPI job for the whole run (runtime/serve.py): a plan per line in, a verdict out."""

    def __init__(self, nprocs: int, mpiexec: str | None = None, timeout: float = 120,
                 plan: Plan | None = None) -> None:
        from redist.runtime.launch import check_resources, find_mpiexec
        from redist.runtime.lifeline import launcher_env
        from redist.runtime.serve import READY

        # The limits of `redist run`: ranks, and memory (of `plan`'s job when known).
        check_resources(plan, nprocs, "--np" if plan is None else
                        "the ranks the replayed problem needs (its mesh's devices)")
        self.timeout = timeout
        cmd = [find_mpiexec(mpiexec), "-n", str(nprocs), sys.executable, "-m",
               "redist.runtime.serve"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, start_new_session=True,
                                     env=dict(os.environ, **launcher_env(None)))
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.proc.stdout, selectors.EVENT_READ)
        line = self._line()
        if line.strip() != READY:
            raise RedistError(f"the MPI job did not start: {line or self._stderr()}")

    def _line(self) -> str:
        if not self.sel.select(self.timeout):
            self.close()
            raise RedistError(f"the MPI job gave no answer within {self.timeout:g} s")
        return self.proc.stdout.readline()

    def _stderr(self) -> str:
        try:
            return self.proc.stderr.read()[-500:]
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
    failures: int = 0


def _kind(p: Problem) -> str:
    subs = any("(" in a for a in p.show(p.src).used_axes() + p.show(p.dst).used_axes())
    shape = "uneven" if p.uneven else "even"
    return f"{shape}{', sub-axes' if subs else ''}"


def check_problem(p: Problem, tally: Tally | None = None, server: MpiServer | None = None,
                  with_jax: bool = False) -> list[str]:
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
    return out


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


def strategy(np_ranks: int | None, max_devices: int, with_jax: bool):
    kinds = st.sampled_from([True, False, "uneven"])
    if np_ranks:
        mesh = meshes_of(np_ranks)
    elif with_jax:
        mesh = meshes_of(8)
    else:
        mesh = meshes(max_devices=max_devices)
    return st.builds(lambda m, k, data: data.draw(problems(generous=k, mesh=m, sub_axes=True,
                                                           distinct=False, max_elements=1 << 14)),
                     mesh, kinds, st.data())


@dataclass
class Outcome:
    tally: Tally
    failure: list[str] | None = None
    problem: Problem | None = None
    saved: str | None = None
    seconds: float = 0.0


def run(examples: int = 100, seed: int | None = None, np_ranks: int | None = None,
        with_jax: bool = False, max_devices: int = 64, database: str | None = None,
        mpiexec: str | None = None, on_example=None, use_database: bool = True) -> Outcome:
    tally = Tally()
    last: dict = {}
    server = MpiServer(np_ranks, mpiexec) if np_ranks else None
    t0 = time.perf_counter()

    def prop(problem: Problem) -> None:
        tally.checked += 1
        tally.kinds[_kind(problem)] += 1
        if on_example:
            on_example(tally)
        try:
            failures = check_problem(problem, tally, server, with_jax)
        except RedistError as e:
            failures = [f"error: {e}"]
        if failures:
            last.update(problem=problem, failures=failures)
            raise AssertionError("; ".join(failures))

    db = DirectoryBasedExampleDatabase(database or DEFAULT_DB) if use_database else None
    test = settings(max_examples=examples, deadline=None, database=db, print_blob=False,
                    suppress_health_check=list(HealthCheck))(
        given(strategy(np_ranks, max_devices, with_jax))(prop))
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
        if server is not None:
            server.close()
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


def replay(path: str, np_ranks: int | None = None, with_jax: bool = False,
           mpiexec: str | None = None) -> list[str]:
    plan = load(path)
    problem = plan.problem
    server = MpiServer(np_ranks, mpiexec, plan=plan) if np_ranks else None
    try:
        return check_problem(problem, Tally(), server, with_jax)
    finally:
        if server is not None:
            server.close()
