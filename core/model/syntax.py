"""Text forms of meshes, shapes and layouts (DESIGN §1 'Text syntax')."""

from __future__ import annotations

import ast
import re

from redist.core import args
from redist.core.errors import RedistError
from redist.core.model.layout import Layout
from redist.core.model.mesh import SUB_AXIS, Mesh

_MESH_ITEM = re.compile(r"^\s*([A-Za-z_]\w*)\s*=\s*(-?[0-9]+)\s*$")
_BRACE_DIM = re.compile(r"\{([^{}]*)\}")


def parse_mesh(text: str) -> Mesh:
    """`x=2,y=4` -> Mesh. An empty string is the mesh with no axes (one device)."""
    args.text(text, "parse_mesh", "text")
    if not text.strip():
        return Mesh(())
    axes = []
    for item in text.split(","):
        m = _MESH_ITEM.match(item)
        if not m:
            digits = " (sizes are written with the digits 0-9)" if any(
                c.isdigit() and not c.isascii() for c in item) else ""
            raise RedistError(f"mesh item {item.strip()!r:.80} is not of the form "
                              f"name=size{digits}")
        axes.append((m.group(1), _small_int(m.group(2), f"mesh axis {m.group(1)!r} size")))
    return Mesh(tuple(axes))


def parse_shape(text: str) -> tuple[int, ...]:
    """`4096,4096` -> (4096, 4096); `` or `()` is a rank-0 array."""
    args.text(text, "parse_shape", "text")
    body = text.strip().strip("()[]").strip()
    if not body:
        return ()
    out = []
    for item in body.split(","):
        item = item.strip()
        if not re.fullmatch(r"-?[0-9]+", item):   # ASCII digits only (not "٢")
            raise RedistError(f"shape entry {item!r:.40} is not an integer (digits 0-9)")
        n = _small_int(item, "shape entry")
        if n < 1:
            raise RedistError(f"shape entry {n} must be >= 1")
        out.append(n)
    return tuple(out)


def _small_int(digits: str, what: str) -> int:
    """int() of a decimal string, refusing absurd lengths (no 4,300-digit conversions)."""
    if len(digits.lstrip("-")) > 30:
        raise RedistError(f"{what} {digits[:12]}... has {len(digits)} digits; too large")
    return int(digits)


def parse_layout(text: str) -> Layout:
    """Brace syntax `[{x},{y,z},{}]`, Python `(("x",),("y","z"),())` or JAX-like
    `("x", ("y","z"), None)`."""
    args.text(text, "parse_layout", "text")
    s = text.strip()
    if "{" in s:
        body, plus, pending = s.partition("]+")
        if plus:                                  # `[{x},{}]+{y}`: pending sum over y
            return Layout(_parse_braces(body + "]").dims, _parse_sum(pending, s))
        return _parse_braces(s)
    try:
        value = ast.literal_eval(s)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise RedistError(f"layout {text!r:.60} is neither [{{..}},..] nor a Python/JAX "
                          "tuple form") from None
    return layout_from_value(value, text)


def _parse_sum(text: str, whole: str) -> tuple[str, ...]:
    """The `{y,z}` after `]+`: the pending-sum axes (DESIGN §14)."""
    t = text.strip()
    if not (t.startswith("{") and t.endswith("}")) or "{" in t[1:-1] or "}" in t[1:-1]:
        raise RedistError(f"layout {whole!r:.80}: the pending sum after '+' must be "
                          "{axes}, e.g. [{x},{}]+{y}")
    names = [a.strip() for a in t[1:-1].split(",")]
    if names == [""]:
        return ()
    for a in names:
        if not (a.isidentifier() or SUB_AXIS.match(a)):
            raise RedistError(f"layout {whole!r:.80}: pending axis {a!r:.40} is not an axis "
                              "name or sub-axis x(p)s")
    return _no_repeat(names, f"layout {whole!r}")


def _no_repeat(names: list[str], where: str) -> tuple[str, ...]:
    twice = [a for a in names if names.count(a) > 1]
    if twice:
        raise RedistError(f"{where:.80}: pending axis {twice[0]!r} is listed twice")
    return tuple(names)


def layout_from_value(value: object, where: str = "layout") -> Layout:
    """Python/JSON nested sequences -> Layout (each dim: None, a name, or names); with a
    pending sum, the JSON object {"dims": [...], "sum": [names]}."""
    if isinstance(value, dict):
        unknown = sorted(set(value) - {"dims", "sum"})
        if unknown or "dims" not in value:
            raise RedistError(f"{where}: a layout object has 'dims' (a list per dim) and "
                              f"optionally 'sum' (pending axes)"
                              + (f", not {unknown[0]!r:.30}" if unknown else ""))
        pending = value.get("sum", [])
        if not isinstance(pending, list) or not all(isinstance(a, str) for a in pending):
            raise RedistError(f"{where}: 'sum' must be a list of axis names")
        dims = layout_from_value(value["dims"], where).dims
        return Layout(dims, _no_repeat(pending, where))
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise RedistError(f"{where}: a layout is a list with one entry per array dim")
    dims = []
    for d, entry in enumerate(value):
        if entry is None:
            dims.append(())
        elif isinstance(entry, str):
            dims.append((entry,))
        elif isinstance(entry, (list, tuple)) and all(isinstance(a, str) for a in entry):
            dims.append(tuple(entry))
        else:
            raise RedistError(f"{where}: dim {d} entry {entry!r} is not an axis name, "
                              "a list of axis names, or None")
    return Layout(tuple(dims))


def _parse_braces(s: str) -> Layout:
    if not (s.startswith("[") and s.endswith("]")):
        raise RedistError(f"layout {s!r} must be enclosed in [ ]")
    inner = s[1:-1].strip()
    if not inner:
        return Layout(())
    dims = []
    pos = 0
    while pos < len(inner):
        m = _BRACE_DIM.match(inner, pos)
        if not m:
            raise RedistError(f"layout {s!r}: expected {{axes}} at {inner[pos:]!r}")
        names = [a.strip() for a in m.group(1).split(",") if a.strip()]
        for a in names:
            if not (a.isidentifier() or SUB_AXIS.match(a)):
                raise RedistError(f"layout {s!r}: {a!r} is not an axis name or sub-axis "
                                  "x(p)s")
        if m.group(1).strip() and len(names) != len(m.group(1).split(",")):
            raise RedistError(f"layout {s!r}: empty axis name in {{{m.group(1)}}}")
        dims.append(tuple(names))
        pos = m.end()
        rest = inner[pos:].lstrip()
        if rest.startswith(","):
            pos = len(inner) - len(rest) + 1
            while pos < len(inner) and inner[pos] == " ":
                pos += 1
            if pos >= len(inner):
                raise RedistError(f"layout {s!r}: trailing comma")
        elif rest:
            raise RedistError(f"layout {s!r}: unexpected {rest!r}")
        else:
            pos = len(inner)
    return Layout(tuple(dims))
