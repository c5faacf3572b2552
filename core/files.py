"""Reading files that other people wrote: only regular files, size limits checked before
reading, never blocking on a FIFO or a device, clear one-line errors."""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from typing import Any

import numpy as np

from .errors import RedistError
from .limits import MAX_JSON_DEPTH

# O_NONBLOCK: opening a FIFO must not wait for a writer (it is rejected after fstat).
# O_NOFOLLOW: a symbolic link as the last component is refused, never followed.
_OPEN = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)


def read_text(path: str, limit: int, what: str) -> str:
    """The UTF-8 text of a regular file of at most `limit` bytes."""
    fd = open_nofollow(path, what)
    try:
        return read_fd(fd, limit, what, path)
    finally:
        os.close(fd)


def open_nofollow(path: str, what: str, dir_fd: int | None = None, shown: str | None = None,
                  directory: bool = False) -> int:
    """A descriptor for `path` (relative to `dir_fd` if given), never through a symbolic
    link as its last component; what it is gets checked on the descriptor (fstat)."""
    flags = _OPEN | (os.O_DIRECTORY if directory else 0)
    try:
        return os.open(path, flags, dir_fd=dir_fd)
    except OSError as e:
        shown = path if shown is None else shown
        if e.errno == errno.ELOOP:
            why = f"{path!r} is a symbolic link (not followed)"
        elif directory and e.errno == errno.ENOTDIR:   # O_NOFOLLOW|O_DIRECTORY on a link too
            why = f"{path!r} is not a directory (symbolic links are not followed)"
        else:
            why = e.strerror
        raise RedistError(f"cannot read {what} {shown!r}: {why}") from None


def read_under(dir_fd: int, rel: str, limit: int, what: str) -> str:
    """The text of the regular file at `rel` under the directory `dir_fd`, opened component
    by component relative to the directory before it, no component a symbolic link: what
    is read is what lies inside the directory at the moment of opening, whatever is
    renamed or swapped meanwhile (no path is resolved twice). `rel` is relative, without
    '..' (the caller checks)."""
    parts = rel.split("/")
    # No empty component: 'a//b' and 'a/' (a directory, by POSIX) are not file names.
    if "" in parts or ".." in parts or not [c for c in parts if c != "."]:
        raise RedistError(f"cannot read {what} {rel!r}: not a path inside the directory")
    parts = [c for c in parts if c != "."]
    opened: list[int] = []
    try:
        cur = dir_fd
        for comp in parts[:-1]:
            cur = open_nofollow(comp, what, cur, rel, directory=True)
            opened.append(cur)
        fd = open_nofollow(parts[-1], what, cur, rel)
        opened.append(fd)
        return read_fd(fd, limit, what, rel)
    finally:
        for fd in opened:
            os.close(fd)


def read_fd(fd: int, limit: int, what: str, shown: str) -> str:
    """The UTF-8 text behind an open descriptor: a regular file (fstat of what was opened,
    not a second look by path), at most `limit` bytes (checked before and while reading)."""
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise RedistError(f"{what} {shown!r} is not a regular file")
        if info.st_size > limit:
            raise RedistError(f"{what} {shown!r} is {info.st_size:,} bytes, over the limit of "
                              f"{limit:,} bytes")
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            total += len(chunk)
            if total > limit:          # the file grew while we read it
                raise RedistError(f"{what} {shown!r} is over the limit of {limit:,} bytes")
            chunks.append(chunk)
    except OSError as e:
        raise RedistError(f"cannot read {what} {shown!r}: {e.strerror}") from None
    try:
        return b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError as e:
        raise RedistError(f"{what} {shown!r} is not UTF-8 text (byte {e.start})") from None


def parse_json(text: str, what: str) -> Any:
    """json.loads with every failure a one-line RedistError (syntax, integers too long to
    convert, nesting too deep, a key repeated in an object)."""
    depth = _max_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise RedistError(f"{what}: JSON nested {depth} deep, over the limit "
                          f"MAX_JSON_DEPTH = {MAX_JSON_DEPTH}")
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except DuplicateKey as e:
        raise RedistError(f"{what}: {e}") from None
    except json.JSONDecodeError as e:
        raise RedistError(f"{what}: not valid JSON ({e.msg} at line {e.lineno} column "
                          f"{e.colno})") from None
    except (ValueError, RecursionError) as e:
        raise RedistError(f"{what}: not acceptable JSON ({str(e).splitlines()[0]})") from None


class DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object whose keys are all different. Readers disagree on a repeated key (first
    or last wins), so a document with one says different things to different readers."""
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise DuplicateKey(f"key {k!r:.60} appears twice in one JSON object")
        out[k] = v
    return out


# A string runs to its closing quote or, unterminated, to the end of the text: every match
# consumes what it scanned (possessive loop, a tail that always matches), so the scan is
# linear; a pattern that could fail at the end would rescan from every quote inside.
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*+(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")
_CHUNK = 1 << 22


def _max_depth(text: str) -> int:
    """Deepest bracket nesting outside strings: a cheap pre-check that keeps json.loads
    from recursing deeply. Linear, and at C speed (strings removed by one regex pass, the
    rest reduced to its brackets, depths summed by NumPy in chunks): under a second of CPU
    for a 64 MiB certificate of brackets."""
    brackets = _STRINGS.sub("", text).encode("utf-8", "ignore").translate(None, _NOT_BRACKETS)
    steps = np.frombuffer(brackets, np.uint8)
    depth = best = 0
    for lo in range(0, len(steps), _CHUNK):
        part = steps[lo:lo + _CHUNK]
        delta = np.where((part == ord("[")) | (part == ord("{")), np.int8(1), np.int8(-1))
        running = np.cumsum(delta, dtype=np.int64) + depth
        best = max(best, int(running.max()))
        depth = int(running[-1])
    return best
