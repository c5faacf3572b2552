"""HLO text (XLA's `as_text()` of a compiled module) parsed into computations of
instructions: name, shape, opcode, operand names, literal (constants) and raw attributes.

Only what a resharding program needs is interpreted elsewhere (interpret.py); this module
just splits the text. HLO text is untrusted input: its size is bounded and every failure
is a one-line RedistError naming the line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from redist.core.errors import RedistError

MAX_HLO_BYTES = 16 << 20               # an HLO text file
MAX_HLO_INSTRUCTIONS = 200_000
# The audit runs the program on tagged data: every buffer of every device is materialised.
MAX_AUDIT_ELEMENTS = 1 << 25           # elements of one instruction summed over devices

FLOAT_TYPES = {"f16", "bf16", "f32", "f64", "f8e4m3fn", "f8e5m2", "f8e4m3", "f8e5m2fnuz",
               "f8e4m3fnuz", "c64", "c128"}
ITEMSIZE = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "s32": 4, "u32": 4, "s64": 8,
            "u64": 8, "f16": 2, "bf16": 2, "f32": 4, "f64": 8, "c64": 8, "c128": 16}

_COMMENT = re.compile(r"/\*.*?\*/")
_ARRAY = re.compile(r"([a-z][a-z0-9]*)\[([^\]]*)\](?:\{([^}]*)\})?")
_HEADER = re.compile(r"^\s*(ENTRY\s+)?%?([\w.\-]+)\s*\(.*\)\s*->\s*.*\{\s*$")
_INSTR = re.compile(r"^\s*(ROOT\s+)?%?([\w.\-]+)\s*=\s*(.*)$")
_OPCODE = re.compile(r"\s*([a-z][a-z0-9\-]*)\(")


@dataclass(frozen=True)
class Array:
    """An array type: element type, dims, minor-to-major layout (None: the default)."""
    dtype: str
    dims: tuple[int, ...]
    minor_to_major: tuple[int, ...] | None

    @property
    def elements(self) -> int:
        n = 1
        for d in self.dims:
            n *= d
        return n

    @property
    def bytes(self) -> int:
        return self.elements * ITEMSIZE.get(self.dtype, 4)

    def __str__(self) -> str:
        return f"{self.dtype}[{','.join(map(str, self.dims))}]"


Shape = Array | tuple  # a tuple shape is a tuple of Shapes


@dataclass(frozen=True)
class Instruction:
    name: str
    shape: Shape
    opcode: str
    operands: tuple[str, ...]
    literal: str | None        # the text of a constant, the index of a parameter
    attrs: str                 # the raw attribute text after the operands
    line: str                  # the source line (stripped), for reports
    root: bool

    def attr(self, key: str) -> str | None:
        """The raw value of `key=...` (balanced brackets), or None."""
        m = re.search(r"(?:^|[\s,])" + re.escape(key) + r"=", self.attrs)
        if m is None:
            return None
        return _balanced_value(self.attrs, m.end())


@dataclass(frozen=True)
class Computation:
    name: str
    instructions: tuple[Instruction, ...]
    entry: bool

    @property
    def root(self) -> Instruction:
        for ins in self.instructions:
            if ins.root:
                return ins
        return self.instructions[-1]


@dataclass(frozen=True)
class Module:
    name: str
    num_partitions: int
    computations: dict[str, Computation]
    entry: Computation

    def check_size(self) -> None:
        """Every buffer, on every device, within MAX_AUDIT_ELEMENTS (one-line error)."""
        for comp in self.computations.values():
            for ins in comp.instructions:
                for arr in _arrays(ins.shape):
                    if arr.elements * self.num_partitions > MAX_AUDIT_ELEMENTS:
                        raise RedistError(
                            f"HLO: %{ins.name} ({arr}) on {self.num_partitions} devices is "
                            f"over the limit MAX_AUDIT_ELEMENTS = {MAX_AUDIT_ELEMENTS:,} "
                            "elements: audit the same resharding at a smaller shape")


def _arrays(shape: Shape) -> list[Array]:
    return [a for s in shape for a in _arrays(s)] if isinstance(shape, tuple) else [shape]


def _balanced_value(text: str, start: int) -> str:
    depth, k = 0, start
    while k < len(text):
        ch = text[k]
        if ch in "{[(":
            depth += 1
        elif ch in "}])":
            if depth == 0:
                break
            depth -= 1
        elif ch == "," and depth == 0:
            break
        k += 1
    return text[start:k].strip()


def _closing(text: str, start: int, where: str) -> int:
    """Index just past the bracket that closes the one at `start`."""
    depth = 0
    for k in range(start, len(text)):
        if text[k] in "{[(":
            depth += 1
        elif text[k] in "}])":
            depth -= 1
            if depth == 0:
                return k + 1
    raise RedistError(f"HLO: unbalanced brackets in {where}")


def parse_shape(text: str, where: str) -> Shape:
    text = text.strip()
    if text.startswith("("):
        inner = text[1:_closing(text, 0, where) - 1]
        return tuple(parse_shape(p, where) for p in _split_top(inner))
    m = _ARRAY.fullmatch(text)
    if m is None:
        raise RedistError(f"HLO: cannot read the shape {text[:60]!r} in {where}")
    body = m.group(2).strip()
    dims = []
    for d in (body.split(",") if body else []):
        if not d.strip().isdigit():
            raise RedistError(f"HLO: dynamic or malformed dimension {d.strip()[:20]!r} in "
                              f"{where}")
        dims.append(int(d))
    layout = None
    if m.group(3) is not None:
        lay = m.group(3).split(":")[0].strip()          # TPU tiling after ':'
        if lay:
            if not re.fullmatch(r"\d+(,\d+)*", lay.replace(" ", "")):
                raise RedistError(f"HLO: cannot read the layout {{{lay[:30]}}} in {where}")
            layout = tuple(int(v) for v in lay.split(","))
            if sorted(layout) != list(range(len(dims))):
                raise RedistError(f"HLO: layout {{{lay}}} does not fit {text[:40]} in {where}")
    return Array(m.group(1), tuple(dims), layout)


def _split_shape(rest: str, where: str) -> tuple[str, str]:
    """The shape text at the start of `rest` and what follows it."""
    rest = rest.lstrip()
    if rest.startswith("("):
        end = _closing(rest, 0, where)
        return rest[:end], rest[end:]
    m = re.match(r"[a-z][a-z0-9]*\[[^\]]*\](\{[^}]*\})?", rest)
    if m is None:
        raise RedistError(f"HLO: no shape at the start of {where}")
    return m.group(0), rest[m.end():]


def _split_top(text: str) -> list[str]:
    """The comma-separated parts of `text` outside brackets (non-empty ones)."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch in "{[(":
            depth += 1
        elif ch in "}])":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p for p in parts if p.strip()]


def _operand_names(text: str) -> tuple[str, ...]:
    # Older dumps write `f32[8]{0} %name`; the name is the last token.
    return tuple(p.split()[-1].lstrip("%") for p in _split_top(text))


def parse_instruction(line: str) -> Instruction:
    clean = _COMMENT.sub("", line).strip()
    m = _INSTR.match(clean)
    if m is None:
        raise RedistError(f"HLO: not an instruction: {clean[:100]}")
    where = f"instruction %{m.group(2)}"
    shape_text, rest = _split_shape(m.group(3), where)
    op = _OPCODE.match(rest)
    if op is None:
        raise RedistError(f"HLO: no opcode in {where}: {clean[:100]}")
    start = op.end() - 1
    end = _closing(rest, start, where)
    inside = rest[start + 1:end - 1]
    attrs = rest[end:].lstrip(", ").strip()
    opcode = op.group(1)
    # constant(...) holds a literal and parameter(k) an index, not operand names
    literal = inside if opcode in ("constant", "parameter") else None
    operands = () if literal is not None else _operand_names(inside)
    return Instruction(m.group(2), parse_shape(shape_text, where), opcode, operands, literal,
                       attrs, clean, bool(m.group(1)))


def parse_module(text: str) -> Module:
    """The computations of an HLO module; RedistError (one line) if it is not one."""
    if not isinstance(text, str):
        raise RedistError("HLO: the module must be text")
    if len(text.encode("utf-8", "replace")) > MAX_HLO_BYTES:
        raise RedistError(f"HLO: the text is over the limit MAX_HLO_BYTES = {MAX_HLO_BYTES:,}")
    name, parts = None, 1
    comps: dict[str, Computation] = {}
    entry = None
    cur: list[Instruction] | None = None
    cur_name, cur_entry = "", False
    count = 0
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("//") or line.startswith("#"):
            continue
        if line.startswith("HloModule"):
            fields = line.split(",")
            name = fields[0].split()[1] if len(fields[0].split()) > 1 else "module"
            m = re.search(r"num_partitions=(\d+)", line)
            if m:
                parts = int(m.group(1))
            continue
        if name is None:
            raise RedistError("HLO: no 'HloModule' line first: this is not HLO text")
        if cur is None:
            h = _HEADER.match(line)
            if h is None:
                raise RedistError(f"HLO: expected a computation header, found: {line[:100]}")
            cur, cur_name, cur_entry = [], h.group(2), bool(h.group(1))
            continue
        if line == "}":
            if not cur:
                raise RedistError(f"HLO: computation %{cur_name} is empty")
            comp = Computation(cur_name, tuple(cur), cur_entry)
            comps[cur_name] = comp
            if cur_entry:
                entry = comp
            cur = None
            continue
        count += 1
        if count > MAX_HLO_INSTRUCTIONS:
            raise RedistError(f"HLO: more than MAX_HLO_INSTRUCTIONS = "
                              f"{MAX_HLO_INSTRUCTIONS:,} instructions")
        cur.append(parse_instruction(line))
    if name is None:
        raise RedistError("HLO: no 'HloModule' line: this is not HLO text")
    if cur is not None:
        raise RedistError(f"HLO: computation %{cur_name} is not closed")
    if entry is None:
        raise RedistError("HLO: no ENTRY computation")
    return Module(name, parts, comps, entry)
