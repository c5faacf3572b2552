"""The MPI runtime against the reference simulator, on 1, 2, 4 and 8 ranks, and its
behaviour on bad input and failing ranks (DESIGN §7)."""

import json
import os
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mpi_util import memory_rows, mpirun

from redist.core.model.problem import Problem
from redist.core.model.syntax import parse_layout, parse_mesh
from redist.core.ops import AllExchange, AllGather, AllPermute, AllSlice, AllToAll
from redist.core.plans.plan import Plan
from redist.core.plans.planjson import plan_to_json
from redist.core.synthesis.synthesize import normal
from redist.runtime.launch import launch

from strategies import meshes_of, problems, random_steps

# Two launches of 24 random jobs each: the same 48 problems per rank count and path as four
# launches of 12, at half the ranks' start-up (Python, NumPy, mpi4py, MPI_Init) per problem.
MPI_SETTINGS = settings(max_examples=2, deadline=None, derandomize=False,
                        suppress_health_check=list(HealthCheck))


@st.composite
def job_lists(draw, devices: int, n: int = 24):
    """n synthesized normal plans (through the verifying entry point) and random sequences
    of collectives (through the bare executor), all on meshes of `devices` devices."""
    jobs = []
    for _ in range(n):
        mesh = draw(meshes_of(devices))
        prob = draw(problems(generous=draw(st.sampled_from([True, False, "uneven"])),
                             mesh=mesh, max_elements=4096, max_rank=4, distinct=False,
                             sub_axes=draw(st.booleans()),
                             dtypes=("float32", "int16", "float64", "bfloat16")))
        donate = draw(st.booleans())
        if draw(st.booleans()):
            s = normal(prob)
            jobs.append({"plan": plan_to_json(s.plan), "gated": s.reason is None,
                         "donate": donate})
        else:
            jobs.append({"plan": plan_to_json(random_steps(draw, prob, 5)), "gated": False,
                         "donate": donate})
    return jobs


# Derived datatypes everywhere ("0"), or NumPy packing everywhere (huge threshold).
PATHS = {"derived": {"REDIST_PACK_BELOW_BYTES": "0"},
         "packed": {"REDIST_PACK_BELOW_BYTES": str(1 << 40), "REDIST_INPLACE": "0"},
         "small-chunks": {"REDIST_CHUNK_BYTES": "24"}}


def run_jobs(devices, jobs, tmp_path, env=None):
    f = tmp_path / f"jobs{devices}.json"
    f.write_text(json.dumps(jobs))
    r = mpirun(devices, "differential.py", str(f), env=env, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    results = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert len(results) == len(jobs)
    bad = [(res, jobs[res["job"]]["plan"]) for res in results if not res["ok"]]
    assert not bad, bad[0]


@pytest.mark.parametrize("devices,path", [(1, "packed"), (2, "derived"), (4, "packed"),
                                          (6, "small-chunks"), (8, "derived"), (8, "packed")])
def test_runtime_equals_simulator_on_random_problems(devices, path, tmp_path_factory):
    @MPI_SETTINGS
    @given(job_lists(devices))
    def check(jobs):
        run_jobs(devices, jobs, tmp_path_factory.mktemp("mpi"), PATHS[path])
    check()


def _p(mesh, shape, src, dst="[{},{},{},{}]"):
    return Problem(parse_mesh(mesh), shape, "float32", parse_layout(src), parse_layout(dst))


@pytest.mark.parametrize("path", PATHS)
def test_each_collective_in_isolation_with_awkward_shapes(tmp_path, path):
    r4 = _p("x=2,y=2,z=2", (4, 12, 2, 8), "[{x},{},{},{y,z}]")
    r1 = _p("x=2,y=2,z=2", (24,), "[{x,y}]", "[{}]")
    rep = _p("x=2,y=2,z=2", (8, 8), "[{x},{}]", "[{},{}]")       # y, z replicated
    plans = [
        Plan(r4, (AllGather(((), (), (), ("y", "z"))),)),                 # last dim, 2 axes
        Plan(r4, (AllGather((("x",), (), (), ("z",))),)),                 # first + last dims
        Plan(r4, (AllToAll(3, 0, ("z",)),)),                              # last -> first
        Plan(r4, (AllToAll(0, 3, ("x",)),)),                              # first -> last
        Plan(r4, (AllToAll(3, 1, ("y", "z")),)),                          # into an odd extent
        Plan(r4, ()),                                                     # empty plan
        Plan(r4, (AllPermute(parse_layout("[{x},{},{},{z,y}]")),)),       # reorder in a dim
        Plan(r4, (AllPermute(parse_layout("[{y},{},{},{x,z}]")),)),       # swap across dims
        Plan(r1, (AllGather((("y",),)), AllGather((("x",),)))),           # rank 1
        Plan(r1, (AllSlice((("z",),)),)),                                 # rank 1 slice
        Plan(rep, (AllSlice(((), ("z", "y"))),)),                         # replicated -> split
        Plan(rep, (AllPermute(parse_layout("[{y},{}]")),)),               # replicated partner
        Plan(rep, (AllGather((("x",), ())),)),
    ]
    jobs = [{"plan": plan_to_json(Plan(
        Problem(p.problem.mesh, p.problem.shape, p.problem.dtype, p.problem.src,
                p.final_layout), p.steps)), "gated": False} for p in plans]
    run_jobs(8, jobs, tmp_path, PATHS[path])


BAD_INPUTS = [
    ("shape", "ranks [2] cannot run the plan"),
    ("dtype", "ranks [1] cannot run the plan"),
    ("devices-one", "ranks [2] hold a different plan from rank 0"),
    ("mesh-one", "ranks [1] hold a different plan from rank 0"),
    ("plans", "ranks [3] hold a different plan from rank 0"),
    ("unverified", "refusing to execute an unverified plan: memory_efficient refuted"),
    ("ranks", "the communicator has 4 ranks but mesh x=2,y=4 has 8 devices"),
]


@pytest.fixture(scope="module")
def bad_input_lines() -> dict[str, str]:
    """One 4-rank launch runs every case (each on a communicator of its own), one after the
    other: rank 0's line per case, by case name. A hang in any case times the launch out."""
    names = [n for n, _ in BAD_INPUTS] + ["five-args"]
    r = mpirun(4, "bad_inputs.py", *names, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = dict(line.split(": ", 1) for line in r.stdout.splitlines()
                 if line.split(": ", 1)[0] in names)
    assert list(lines) == names, r.stdout
    return lines


@pytest.mark.parametrize("name,message", BAD_INPUTS)
def test_bad_inputs_raise_on_every_rank_without_hanging(name, message, bad_input_lines):
    out = bad_input_lines[name]
    assert out.startswith("4/4 ranks raised:"), out
    assert message in out


def test_five_argument_form_moves_the_right_data(bad_input_lines):
    out = bad_input_lines["five-args"]
    assert out.startswith("0/4 ranks raised: NO ERROR"), out


def test_run_refuses_rank_count_before_launch():
    r = subprocess.run([sys.executable, "-m", "redist.cli", "run", "--np", "4", "--mesh",
                        "x=2,y=4", "--shape", "8,8", "--src", "[{x},{}]", "--dst", "[{},{y}]"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--np 4 does not match the mesh's 8 devices" in r.stderr


def test_run_refuses_unverified_plan_before_launch():
    r = subprocess.run([sys.executable, "-m", "redist.cli", "run", "--np", "8", "--mesh",
                        "x=2,y=4", "--shape", "8,8", "--src", "[{x},{}]", "--dst", "[{},{y}]",
                        "--method", "naive"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "refusing to run an unverified plan" in r.stderr
    assert "memory_efficient refuted" in r.stderr


def test_run_reports_time_volume_memory_and_match():
    r = subprocess.run([sys.executable, "-m", "redist.cli", "run", "--np", "8", "--mesh",
                        "x=2,y=4", "--shape", "1024,1024", "--src", "[{x},{y}]", "--dst",
                        "[{y},{x}]", "--repeat", "2", "--json", "-"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["all_match"] and rep["mismatched_elements"] == 0
    assert len(rep["seconds"]) == 2 and rep["median_seconds"] > 0
    assert len(rep["peak_bytes_per_rank"]) == 8
    # measured, not estimated: at least the block itself, at most input + 2 blocks (the
    # blocks are large enough here that Python's own small objects, which tracemalloc
    # counts too, are a few percent)
    assert 1.0 <= rep["peak_over_bound"] <= 3.0
    # the reported figure is never below either count (the runtime's, tracemalloc's)
    assert len(rep["traced_peak_bytes_per_rank"]) == 8
    bound = rep["bound_bytes"]
    assert rep["peak_over_bound"] * bound >= max(rep["peak_bytes_per_rank"])
    assert rep["peak_over_bound"] * bound >= max(rep["traced_peak_bytes_per_rank"]) > 0
    # what ran is what was proved: the runtime's count within the proved peak, which is
    # within the bound plus one chunk (a 16th)
    proved = rep["plan"]["figures"]["runtime_peak_bytes"]
    assert bound <= max(rep["peak_bytes_per_rank"]) <= proved <= bound + bound // 16
    assert max(rep["traced_peak_bytes_per_rank"]) <= proved + (64 << 10)


def test_every_dtype_moves_with_an_mpi_type_of_its_own_size():
    """ml_dtypes reuse NumPy's type characters: looked up by character, float8_e4m3fnuz
    ('G') moved 32 bytes per element and float8_e4m3b11fnuz ('L') 8, overrunning buffers
    (wrong elements, then a crash)."""
    from redist.core.model.dtypes import ML_DTYPES, numpy_dtype
    from redist.runtime.execute import mpi_type

    for name in [*ML_DTYPES, "float16", "float32", "float64", "complex64", "complex128",
                 "int8", "int16", "int32", "int64", "uint8", "uint64", "bool"]:
        dt = numpy_dtype(name)
        assert mpi_type(dt).Get_size() == dt.itemsize, name


@pytest.mark.parametrize("dtype", ["float8_e8m0fnu", "float8_e4m3fnuz"])
def test_run_with_a_whole_byte_dtype_matches(dtype):
    """float8_e8m0fnu has no zero: the test array's zeros become NaN. Moved intact, they
    match (compared by bit pattern); `!=` used to report them as mismatches.
    float8_e4m3fnuz used to move with a 32-byte MPI type."""
    r = subprocess.run([sys.executable, "-m", "redist.cli", "run", "--np", "4", "--mesh",
                        "x=2,y=2", "--shape", "24,8", "--dtype", dtype, "--src",
                        "[{x},{y}]", "--dst", "[{y},{x}]", "--repeat", "1", "--json", "-"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["all_match"] and rep["mismatched_elements"] == 0
    assert rep["elements_checked"] == 24 * 8


FAULTY = [sys.executable, os.path.join(os.path.dirname(__file__), "mpi_programs",
                                      "faulty_worker.py")]


def _job():
    p = Problem(parse_mesh("x=2,y=4"), (64, 64), "float32", parse_layout("[{x},{}]"),
                parse_layout("[{},{y}]"))
    return {"plan": plan_to_json(normal(p).plan, with_figures=False), "repeat": 1}


def test_dying_rank_ends_the_job_quickly_with_nonzero_exit():
    t0 = time.monotonic()
    res = launch(_job(), 8, timeout=60, program=FAULTY + ["kill", "3"])
    assert not res.timed_out and res.returncode != 0 and res.report is None
    assert time.monotonic() - t0 < 30


@pytest.mark.parametrize("fault", ["dtype", "devices"])
def test_a_rank_with_another_plan_fails_every_rank_via_launcher(fault):
    res = launch(_job(), 8, timeout=60, program=FAULTY + [fault, "5"])
    assert not res.timed_out
    assert res.returncode != 0 and "ranks [5] hold a different plan" in res.stderr


def test_the_shipped_worker_has_no_fault_hooks():
    import redist.runtime.worker as w
    text = open(w.__file__).read()
    assert "REDIST_TEST" not in text and "os._exit" not in text


def test_demo_runs(tmp_path):
    r = subprocess.run([sys.executable, "-m", "redist.cli", "demo"], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("all five claims proved") == 2
    assert r.stdout.count("all match the expected dst blocks") == 2
    assert "demo succeeded" in r.stdout




def _procs_mentioning(text: str) -> list[int]:
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if text.encode() in f.read():
                        out.append(int(pid))
            except OSError:
                pass
    return out


def test_the_launcher_never_initialises_mpi(tmp_path):
    """`redist run` is no MPI rank: importing mpi4py's MPI there would initialise MPI, whose
    signal handlers and finalisation stood in the way of Ctrl-C (a run that ignored it)."""
    code = ("import sys; from redist import cli; sys.argv = ['redist', 'run', '--np', '2', "
            "'--mesh', 'x=2', '--shape', '8,8', '--src', '[{x},{}]', '--dst', '[{},{x}]'];"
            " rc = cli.main(); print('rc', rc, 'mpi', 'mpi4py.MPI' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=300, cwd=tmp_path)
    assert r.stdout.strip().endswith("rc 0 mpi False"), (r.stdout[-500:], r.stderr[-500:])


@pytest.mark.parametrize("sig,code", [("SIGINT", 130), ("SIGTERM", 143), ("SIGHUP", 143)])
def test_stopping_run_ends_the_ranks_and_removes_the_job_directory(tmp_path, sig, code):
    import signal
    env = dict(os.environ, TMPDIR=str(tmp_path))
    # As from a terminal: the pytest worker's own signal state (a library loaded by an
    # earlier test may block or ignore SIGINT, and both survive exec) is not the user's.
    fresh = ("import os, signal, sys; signal.pthread_sigmask(signal.SIG_SETMASK, []); "
             "signal.signal(signal.SIGINT, signal.SIG_DFL); "
             "os.execv(sys.executable, [sys.executable] + sys.argv[1:])")
    proc = subprocess.Popen([sys.executable, "-c", fresh, "-m", "redist", "run", "--np", "4",
                             "--mesh", "x=4", "--shape", "2048,2048", "--src", "[{x},{}]",
                             "--dst", "[{},{x}]", "--repeat", "100000", "--timeout", "600"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        jobs = [d for d in os.listdir(tmp_path) if d.startswith("redist-job-")]
        if jobs and len(_procs_mentioning(str(tmp_path / jobs[0]))) >= 4:
            break
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("the job never started")
    time.sleep(1.0)
    status = dict(line.split(":", 1) for line in open(f"/proc/{proc.pid}/status"))
    sigint = 1 << (signal.SIGINT - 1)
    assert not int(status["SigBlk"], 16) & sigint and not int(status["SigIgn"], 16) & sigint
    proc.send_signal(getattr(signal, sig))
    # A hang guard, not a speed claim: on a loaded machine the launcher's own ending of
    # mpiexec (SIGTERM, 2 s, SIGKILL, 5 s) and Python's exit have taken most of a minute.
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == code, err
    assert not [d for d in os.listdir(tmp_path) if d.startswith("redist-job-")]
    time.sleep(0.5)
    assert not _procs_mentioning(str(tmp_path)), "MPI processes were left behind"


def _wait_for_job(tmp_path, ranks: int) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        jobs = [d for d in os.listdir(tmp_path) if d.startswith("redist-job-")]
        if jobs and len(_procs_mentioning(str(tmp_path / jobs[0]))) >= ranks:
            return
        time.sleep(0.2)
    pytest.fail("the job never started")


@pytest.mark.parametrize("victim", ["launcher", "launcher's parent group"])
def test_sigkill_of_run_ends_mpiexec_and_the_ranks_and_removes_the_job_directory(tmp_path,
                                                                                 victim):
    """No handler sees SIGKILL: the ranks watch their launcher and end themselves (removing
    the job directory), and mpiexec, left without ranks, exits."""
    import signal
    env = dict(os.environ, TMPDIR=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-m", "redist", "run", "--np", "4", "--mesh",
                             "x=4", "--shape", "2048,2048", "--src", "[{x},{}]", "--dst",
                             "[{},{x}]", "--repeat", "100000", "--timeout", "600"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    _wait_for_job(tmp_path, 4)
    if victim == "launcher":
        os.kill(proc.pid, signal.SIGKILL)
    else:                                 # the launcher's own group: `kill -9 -PGID`
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (_procs_mentioning(str(tmp_path)) or [
            d for d in os.listdir(tmp_path) if d.startswith("redist-job-")]):
        time.sleep(0.2)
    assert not _procs_mentioning(str(tmp_path)), "MPI processes were left behind"
    assert not [d for d in os.listdir(tmp_path) if d.startswith("redist-job-")]


def test_a_job_directory_whose_launcher_is_gone_is_removed_by_the_next_launch(tmp_path,
                                                                              monkeypatch):
    from redist.runtime import lifeline

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(lifeline.tempfile, "tempdir", None)
    dead = subprocess.run([sys.executable, "-c", "from redist.runtime import lifeline; "
                           "print(lifeline.make_job_dir())"], capture_output=True, text=True,
                          env=dict(os.environ, TMPDIR=str(tmp_path)), check=True).stdout.strip()
    live = lifeline.make_job_dir()             # removes the dead one first, keeps its own
    assert not os.path.exists(dead) and os.path.isdir(live)
    assert lifeline.remove_stale_job_dirs(str(tmp_path)) == [] and os.path.isdir(live)


@pytest.mark.parametrize("mpiexec_body,timed_out", [
    ("sleep 120", True),          # past the deadline, a child in another session on stdout
    ("exit 0", False),            # done at once, the child keeps stdout open
])
def test_launch_never_waits_for_a_pipe_a_leftover_child_holds(tmp_path, mpiexec_body,
                                                              timed_out):
    """An mpiexec whose child (in a session of its own, out of reach of the job's process
    group) keeps stdout open: the launcher stops at its deadline, or shortly after mpiexec
    exits, instead of waiting for end of file (120 s here)."""
    import signal
    fake = tmp_path / "mpiexec"
    pidfile = tmp_path / "child.pid"
    fake.write_text(f"#!/bin/sh\nsetsid sleep 120 &\necho $! > {pidfile}\n{mpiexec_body}\n")
    fake.chmod(0o755)
    t0 = time.monotonic()
    try:
        res = launch({}, 1, mpiexec=str(fake), timeout=3)
        elapsed = time.monotonic() - t0
    finally:
        if pidfile.exists():
            try:
                os.kill(int(pidfile.read_text()), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
    assert res.timed_out == timed_out and res.report is None
    assert elapsed < 60, elapsed              # bounded by the deadline and a short grace


def test_byte_accounting_counts_every_buffer_tracemalloc_sees(tmp_path):
    """DESIGN §7: the runtime's peak counts input, scratch and output. tracemalloc sees every
    NumPy buffer a rank allocates; the runtime's count must not be lower (MPI's own chunk
    buffer is declared by the runtime but invisible to tracemalloc, so the runtime may be a
    little higher)."""
    from redist.api import synthesize
    from redist.core.synthesis.synthesize import synthesize_plan

    from cases import case
    shapes = {"transpose": "512,512", "replace-axis": "512,512", "gather-all": "64,64,64",
              "swap-3d": "64,64,64", "reorder": "512,512"}
    plans = [synthesize(case(n, s)).plan for n, s in shapes.items()]
    plans.append(synthesize_plan(case("transpose", "512,512"), collectives="mpi").plan)
    # one all_exchange, in place in rounds (block + one chunk), on the DESIGN §9 cases
    # in its class
    plans += [Plan(pr, (AllExchange(pr.dst),)) for pr in
              (case("transpose", "512,512"), case("swap-3d", "64,64,64"),
               case("reorder", "512,512"))]
    plans.append(synthesize(_p("x=2,y=2,z=2", (96, 40, 24, 8), "[{x},{},{y},{z}]",
                               "[{},{z,y},{},{x}]")).plan)
    # uneven and prime extents: trims and padded gathers in place, tiles that do not divide
    # the rows
    plans.append(synthesize(_p("x=2,y=2,z=2", (13, 41, 6, 7), "[{},{x,y},{},{z}]",
                               "[{x},{},{y},{}]")).plan)      # a padded gather
    # a src with short trailing blocks: padded in place (grown by mremap), not copied
    plans.append(synthesize(_p("x=2,y=2,z=2", (97, 41, 13, 7), "[{x},{y},{z},{}]",
                               "[{z},{y},{x},{}]")).plan)
    plans.append(synthesize(_p("x=2,y=4", (101, 3, 5, 64), "[{y},{},{x},{}]",
                               "[{x},{},{},{y}]")).plan)
    # three all-to-alls from dim 0 to dim 1: run as one (runtime/fuse.py)
    plans.append(Plan(_p("x=2,y=2,z=2", (64, 64), "[{x,y,z},{}]", "[{},{z,y,x}]"),
                      (AllToAll(0, 1, ("z",)), AllToAll(0, 1, ("y",)), AllToAll(0, 1, ("x",)))))
    for row in memory_rows(tmp_path, plans):
        for rank in row["ranks"]:
            assert rank["ok"]
            assert rank["traced"] <= rank["counted"] * 1.02 + (64 << 10), (row, rank)
            # what runs is what is proved: the runtime's count within the plan's figure
            assert rank["counted"] <= row["proved"], (row, rank)
            assert rank["traced"] <= row["proved"] + (64 << 10), (row, rank)
