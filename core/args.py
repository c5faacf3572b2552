"""Checks of the Python API's arguments: a wrong type is a RedistError naming the function
and the argument, raised before the value reaches NumPy or z3 (whose errors name neither:
a string budget once reached z3's parser)."""

from __future__ import annotations

import math
import os
from typing import Any

from redist.core.errors import RedistError


def _kind(value: Any) -> str:
    return type(value).__name__


def instance(value: Any, cls: type | tuple[type, ...], where: str, name: str,
             what: str) -> Any:
    if not isinstance(value, cls):
        raise RedistError(f"{where}: {name} must be {what}, not {_kind(value)}")
    return value


def positive_int(value: Any, where: str, name: str, what: str = "a positive integer",
                 optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        shown = f"{value!r:.40}" if isinstance(value, (int, float)) else _kind(value)
        raise RedistError(f"{where}: {name} must be {what}{' or None' if optional else ''}, "
                          f"not {shown}")
    return value


def positive_seconds(value: Any, where: str, name: str) -> float | None:
    """None, or a positive finite number of seconds."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            math.isfinite(value) and value > 0):
        shown = f"{value!r:.40}" if isinstance(value, (int, float)) else _kind(value)
        raise RedistError(f"{where}: {name} must be a positive, finite number of seconds or "
                          f"None, not {shown}")
    return float(value)


def text(value: Any, where: str, name: str) -> str:
    return instance(value, str, where, name, "a string")


def path(value: Any, where: str, name: str) -> str:
    """A file-system path given as str or os.PathLike (of str)."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    return instance(value, str, where, name, "a path (str or os.PathLike)")
