"""Reading files that other people wrote: only regular files, size limits checked before
reading, never blocking on a FIFO or a device, clear one-line errors."""

from __future__ import annotations

import json
import os
import re
import stat
from typing import Any

from .errors import RedistError
from .limits import MAX_JSON_DEPTH


def read_text(path: str, limit: int, what: str) -> str:
    """The UTF-8 text of a regular file of at most `limit` bytes."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; we reject it below.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except OSError as e:
        raise RedistError(f"cannot read {what} {path!r}: {e.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise RedistError(f"{what} {path!r} is not a regular file")
        if info.st_size > limit:
            raise RedistError(f"{what} {path!r} is {info.st_size:,} bytes, over the limit of "
                              f"{limit:,} bytes")
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            total += len(chunk)
            if total > limit:          # the file grew while we read it
                raise RedistError(f"{what} {path!r} is over the limit of {limit:,} bytes")
            chunks.append(chunk)
    except OSError as e:
        raise RedistError(f"cannot read {what} {path!r}: {e.strerror}") from None
    finally:
        os.close(fd)
    try:
        return b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError as e:
        raise RedistError(f"{what} {path!r} is not UTF-8 text (byte {e.start})") from None


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


_TOKENS = re.compile(r'"(?:\\.|[^"\\])*"|[\[\]{}]')


def _max_depth(text: str) -> int:
    """Deepest bracket nesting outside strings: a cheap pre-check that keeps json.loads
    from recursing deeply."""
    depth = best = 0
    for tok in _TOKENS.findall(text):
        if tok in "[{":
            depth += 1
            best = max(best, depth)
        elif tok in "]}":
            depth -= 1
    return best
