"""Ranks end when their launcher dies, whatever killed it (even SIGKILL, which no handler
sees), and the job directory goes with them.

The launcher (`redist run`, `calibrate`, `demo`, `regress --np`) names itself in the
ranks' environment: its pid and start time (so a reused pid is not taken for it) and its
job directory. Each rank watches that process from a daemon thread (a pidfd, else polling)
and, once it is gone, removes the job directory and exits at once; mpiexec, left without
ranks, then exits too. mpiexec is deliberately not killed with the launcher
(PR_SET_PDEATHSIG): its proxy would then SIGKILL the ranks before any could remove the
job directory. A job directory that survives anyway (a launcher killed before its ranks
started, or ranks killed by hand) is removed by the next launch on this machine
(`remove_stale_job_dirs`).
"""

from __future__ import annotations

import os
import select
import shutil
import stat
import sys
import tempfile
import threading
import time

ENV_LAUNCHER = "REDIST_LAUNCHER"          # "pid:start time" of the launching process
ENV_JOB_DIR = "REDIST_JOB_DIR"            # the job directory, removed when it dies
JOB_PREFIX = "redist-job-"
OWNER_FILE = "launcher"                   # in the job directory: the launcher's token
EXIT_ORPHANED = 3


def start_time(pid: int) -> str | None:
    """The start time of process `pid` in clock ticks since boot (/proc), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read().decode("ascii", "replace")
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = text[text.rfind(")") + 2:].split()
    return fields[19] if len(fields) > 19 else None


def token() -> str:
    """This process, as its ranks will know it."""
    return f"{os.getpid()}:{start_time(os.getpid())}"


def alive(tok: str) -> bool:
    """Is the process named by `tok` still running (the same one, not a reused pid)?"""
    pid, _, started = tok.partition(":")
    try:
        return start_time(int(pid)) == started
    except ValueError:
        return False


def launcher_env(job_dir: str | None) -> dict[str, str]:
    """The environment entries that tie ranks to this process."""
    env = {ENV_LAUNCHER: token()}
    if job_dir:
        env[ENV_JOB_DIR] = job_dir
    return env


def make_job_dir() -> str:
    """A fresh job directory holding its launcher's token, after removing stale ones."""
    remove_stale_job_dirs()
    path = tempfile.mkdtemp(prefix=JOB_PREFIX)
    part = os.path.join(path, OWNER_FILE + ".part")
    with open(part, "w", encoding="ascii") as f:
        f.write(token())
    os.rename(part, os.path.join(path, OWNER_FILE))     # seen whole or not at all
    return path


def remove_stale_job_dirs(where: str | None = None) -> list[str]:
    """Remove the job directories (ours, not links) whose launcher is no longer running."""
    where = where or tempfile.gettempdir()
    removed = []
    try:
        names = [n for n in os.listdir(where) if n.startswith(JOB_PREFIX)]
    except OSError:
        return removed
    for name in names:
        path = os.path.join(where, name)
        try:
            info = os.lstat(path)
            if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
                continue
            with open(os.path.join(path, OWNER_FILE), encoding="ascii") as f:
                owner = f.read(100)
        except (OSError, UnicodeDecodeError):
            continue                      # not one of ours, or still being made
        if not alive(owner):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def watch_launcher() -> None:
    """In a rank: exit (and remove the job directory) as soon as the launcher is gone.
    Does nothing for ranks started by hand (no launcher in the environment)."""
    tok = os.environ.get(ENV_LAUNCHER)
    if tok:
        threading.Thread(target=_watch, args=(tok, os.environ.get(ENV_JOB_DIR)),
                         name="redist-lifeline", daemon=True).start()


def _watch(tok: str, job_dir: str | None) -> None:
    pid = int(tok.partition(":")[0]) if tok.partition(":")[0].isdigit() else -1
    fd = None
    try:
        fd = os.pidfd_open(pid)
    except (OSError, AttributeError):
        pass
    if fd is not None and alive(tok):     # the pidfd is the launcher's, not a reused pid
        select.select([fd], [], [])       # readable when it has exited
    else:
        while alive(tok):
            time.sleep(0.2)
    if job_dir and os.path.basename(os.path.normpath(job_dir)).startswith(JOB_PREFIX):
        shutil.rmtree(job_dir, ignore_errors=True)
    print("redist: the launcher is gone; this rank ends", file=sys.stderr, flush=True)
    os._exit(EXIT_ORPHANED)
