"""Run an HLO resharding program on every device at once, on *tagged* data: each element
of a device's input holds its flat global index (padding -1), so that after any
instruction we know exactly which global elements a device holds where (DESIGN §16).

Values are per-device lists of NumPy arrays (or tuples of them). A value that depends on
the program's parameter is *data*: only data-movement operations may touch it (bitcast,
copy, transpose, slice, concatenate, reshape, (dynamic-)slicing and updates, pad,
select, the collectives); arithmetic on data is refused. Values that do not depend on
the parameter (constants, partition-id and arithmetic on them) are computed exactly:
they are the offsets of dynamic slices. Anything else raises Unsupported naming the line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from redist.core.audit.groups import parse_groups
from redist.core.audit.hlo import Array, Computation, Instruction, Module
from redist.core.errors import RedistError

PAD = -1
COLLECTIVES = ("all-gather", "all-to-all", "collective-permute", "reduce-scatter",
               "all-reduce", "collective-broadcast", "ragged-all-to-all")
_MOVE = {"bitcast", "copy", "transpose", "slice", "concatenate", "reshape", "dynamic-slice",
         "dynamic-update-slice", "pad", "select", "broadcast", "get-tuple-element", "tuple",
         "convert", "copy-start", "copy-done", "optimization-barrier", "opt-barrier",
         "parameter", "constant", "fusion", "call", "reverse"}
_ARITH = {"add": np.add, "subtract": np.subtract, "multiply": np.multiply,
          "minimum": np.minimum, "maximum": np.maximum, "and": np.bitwise_and,
          "or": np.bitwise_or, "xor": np.bitwise_xor, "shift-left": np.left_shift,
          "shift-right-logical": np.right_shift, "shift-right-arithmetic": np.right_shift}
_COMPARE = {"EQ": np.equal, "NE": np.not_equal, "LT": np.less, "LE": np.less_equal,
            "GT": np.greater, "GE": np.greater_equal}


class Unsupported(RedistError):
    """An instruction the audit cannot follow; carries its HLO line."""

    def __init__(self, line: str, why: str) -> None:
        super().__init__(f"{why}: {line[:300]}")
        self.line = line
        self.why = why


@dataclass
class Event:
    """One collective as executed: its instruction, groups (or pairs), operand and result
    buffers per device."""
    ins: Instruction
    kind: str                                  # the opcode without -start
    groups: list[list[int]] | None
    pairs: list[tuple[int, int]] | None
    operands: list[list[np.ndarray]]           # per device, the operand arrays
    results: list[list[np.ndarray]]            # per device, the result arrays
    deps: frozenset[str] = field(default_factory=frozenset)


@dataclass
class Trace:
    events: list[Event]
    root: list[list[np.ndarray]]               # per device, the program's output arrays
    root_deps: frozenset[str]
    root_line: str


def _ints(text: str | None) -> list[int]:
    if text is None:
        return []
    return [int(v) for v in re.findall(r"-?\d+", text)]


def _flat(value) -> list[np.ndarray]:
    return [a for v in value for a in _flat(v)] if isinstance(value, tuple) else [value]


def _to_physical(x: np.ndarray, layout: tuple[int, ...] | None) -> np.ndarray:
    if layout is None:
        return x.reshape(-1)
    return np.transpose(x, tuple(reversed(layout))).reshape(-1)


def _from_physical(flat: np.ndarray, shape: Array) -> np.ndarray:
    if shape.minor_to_major is None:
        return flat.reshape(shape.dims)
    major = tuple(reversed(shape.minor_to_major))
    arr = flat.reshape(tuple(shape.dims[d] for d in major))
    return np.transpose(arr, tuple(np.argsort(major)))


class Interpreter:
    def __init__(self, module: Module, devices: int) -> None:
        self.module = module
        self.n = devices
        self.events: list[Event] = []
        # instruction names are unique in a module
        self.shapes = {i.name: i.shape for c in module.computations.values()
                       for i in c.instructions}

    # --- one computation, every device ----------------------------------------------
    def run_entry(self, inputs: list[np.ndarray]) -> Trace:
        entry = self.module.entry
        params = [ins for ins in entry.instructions if ins.opcode == "parameter"]
        if len(params) != 1:
            raise RedistError(f"HLO: the entry computation has {len(params)} parameters; a "
                              "resharding has exactly one")
        env, deps = self._run(entry, [[x] for x in inputs], top=True)
        root = entry.root
        out = [_flat(env[root.name][d]) for d in range(self.n)]
        return Trace(self.events, out, deps[root.name], root.line)

    def _run(self, comp: Computation, args: list[list], top: bool = False):
        env: dict[str, list] = {}
        deps: dict[str, frozenset[str]] = {}
        last = {o: k for k, ins in enumerate(comp.instructions) for o in ins.operands}
        for k, ins in enumerate(comp.instructions):
            if k and top:                   # free what no later instruction reads
                for o in comp.instructions[k - 1].operands:
                    if last.get(o) == k - 1 and o != comp.root.name:
                        env.pop(o, None)
            for o in ins.operands:
                if o not in env:
                    raise RedistError(f"HLO: %{o} is used before it is defined: {ins.line[:200]}")
            dep = frozenset().union(*(deps[o] for o in ins.operands)) if ins.operands \
                else frozenset()
            if ins.opcode == "parameter":
                k = _ints(ins.literal)[0]
                env[ins.name] = [a[k] for a in args] if not top else [a[0] for a in args]
                deps[ins.name] = frozenset({"param"}) if top else frozenset({f"arg{k}"})
                continue
            env[ins.name] = self._checked(ins, env, deps, dep, top)
            base = ins.opcode.removesuffix("-start")
            if top and base in COLLECTIVES and not ins.opcode.endswith("-done"):
                deps[ins.name] = frozenset({ins.name})
            else:
                deps[ins.name] = dep
        return env, deps

    # --- instructions ------------------------------------------------------------------
    def _checked(self, ins: Instruction, env, deps, dep: frozenset[str], top: bool) -> list:
        """Evaluate, then hold the result to the shape the HLO declares: a module whose
        instructions do not fit their own shapes is not valid HLO."""
        try:
            out = self._eval(ins, env, deps, dep, top)
        except RedistError:
            raise
        except (ValueError, IndexError, KeyError, TypeError, ZeroDivisionError,
                OverflowError, np.exceptions.AxisError) as e:
            raise RedistError(f"HLO: cannot evaluate %{ins.name} "
                              f"({type(e).__name__}: {str(e)[:80]}): {ins.line[:200]}") from None
        for d in range(self.n):
            if not _fits(out[d], ins.shape):
                raise RedistError(f"HLO: %{ins.name} does not have its declared shape: "
                                  f"{ins.line[:200]}")
        return out

    def _eval(self, ins: Instruction, env, deps, dep: frozenset[str], top: bool) -> list:
        op = ins.opcode
        vals = [env[o] for o in ins.operands]
        is_data = [bool(deps[o]) for o in ins.operands]
        base = op.removesuffix("-start")
        if base in COLLECTIVES:
            if not top:
                raise Unsupported(ins.line, "a collective inside a called computation")
            return self._collective(ins, base, vals, frozenset(dep))
        if op.endswith("-done"):
            # a -start's value is (operands, result, scratch...); copy-start's (out, in, ...)
            k = 0 if op == "copy-done" else 1
            return [v[k] if isinstance(v, tuple) and len(v) >= 2 else v for v in vals[0]]
        if op in ("fusion", "call"):
            target = (ins.attr("calls") or ins.attr("to_apply") or "").lstrip("%")
            comp = self.module.computations.get(target)
            if comp is None:
                raise Unsupported(ins.line, f"calls an unknown computation %{target}")
            args = [[v[d] for v in vals] for d in range(self.n)]
            # Mark which arguments are data inside the callee by running it with deps.
            sub_env, sub_deps = self._run_called(comp, args, is_data)
            return sub_env[comp.root.name]
        if any(is_data) and op not in _MOVE and op not in ("compare",):
            raise Unsupported(ins.line, f"'{op}' computes on the array's data (not a "
                                        "resharding step)")
        return [self._local(ins, [v[d] for v in vals], is_data, d) for d in range(self.n)]

    def _run_called(self, comp: Computation, args, is_data):
        env: dict[str, list] = {}
        deps: dict[str, frozenset[str]] = {}
        for ins in comp.instructions:
            if ins.opcode == "parameter":
                k = _ints(ins.literal)[0]
                env[ins.name] = [a[k] for a in args]
                deps[ins.name] = frozenset({"data"}) if is_data[k] else frozenset()
                continue
            dep = frozenset().union(*(deps[o] for o in ins.operands)) if ins.operands \
                else frozenset()
            env[ins.name] = self._checked(ins, env, deps, dep, False)
            deps[ins.name] = dep
        return env, deps

    def _local(self, ins: Instruction, xs: list, is_data: list[bool], device: int):
        op, shape = ins.opcode, ins.shape

        def data(k: int) -> np.ndarray:
            """Operand k as data: a non-data operand used as data is filler."""
            x = xs[k]
            if not is_data[k] and any(is_data):
                return np.full(np.shape(x), PAD, dtype=np.int64)
            return x
        if op == "constant":
            return _constant(ins)
        if op == "partition-id":
            return np.array(device, dtype=np.int64)
        if op == "replica-id":
            return np.array(0, dtype=np.int64)
        if op == "iota":
            assert isinstance(shape, Array)
            dim = _ints(ins.attr("iota_dimension"))[0]
            idx = np.arange(shape.dims[dim]).reshape(
                [-1 if k == dim else 1 for k in range(len(shape.dims))])
            return np.broadcast_to(idx, shape.dims).astype(np.int64)
        if op == "get-tuple-element":
            return xs[0][_ints(ins.attr("index"))[0]]
        if op == "tuple":
            return tuple(xs)
        if op in ("copy", "optimization-barrier", "opt-barrier"):
            return xs[0]
        if op == "copy-start":
            return _started(ins, [xs[0]], xs[0])
        if op == "convert":
            assert isinstance(shape, Array)
            if is_data[0]:
                return xs[0]            # a dtype change of the data keeps its positions
            return xs[0].astype(np.int64) if shape.dtype != "pred" else xs[0].astype(bool)
        if op == "bitcast":
            src = self._operand_shape(ins, 0)
            return _from_physical(_to_physical(xs[0], src.minor_to_major), shape)
        if op == "reshape":
            return xs[0].reshape(shape.dims)
        if op == "transpose":
            return np.transpose(xs[0], _ints(ins.attr("dimensions")))
        if op == "reverse":
            dims = _ints(ins.attr("dimensions"))
            return np.flip(xs[0], axis=tuple(dims)) if dims else xs[0]
        if op == "broadcast":
            dims = _ints(ins.attr("dimensions"))
            x = np.asarray(xs[0])
            expand = [1] * len(shape.dims)
            for k, d in enumerate(dims):
                expand[d] = x.shape[k]
            return np.broadcast_to(x.reshape(expand), shape.dims).copy()
        if op == "slice":
            spec = re.findall(r"\[(-?\d+):(-?\d+)(?::(-?\d+))?\]", ins.attr("slice") or "")
            idx = tuple(slice(int(a), int(b), int(s) if s else 1) for a, b, s in spec)
            return xs[0][idx]
        if op == "concatenate":
            d = _ints(ins.attr("dimensions"))[0]
            return np.concatenate([data(k) for k in range(len(xs))], axis=d)
        if op == "dynamic-slice":
            sizes = _ints(ins.attr("dynamic_slice_sizes"))
            x = xs[0]
            starts = [int(np.asarray(s).reshape(-1)[0]) for s in xs[1:]]
            if len(starts) != x.ndim or len(sizes) != x.ndim:
                raise Unsupported(ins.line, "dynamic-slice with the wrong number of offsets")
            idx = tuple(slice(min(max(s, 0), n - z), min(max(s, 0), n - z) + z)
                        for s, n, z in zip(starts, x.shape, sizes, strict=True))
            return x[idx]
        if op == "dynamic-update-slice":
            x, upd = data(0).copy(), data(1)
            starts = [int(np.asarray(s).reshape(-1)[0]) for s in xs[2:]]
            idx = tuple(slice(min(max(s, 0), n - z), min(max(s, 0), n - z) + z)
                        for s, n, z in zip(starts, x.shape, upd.shape, strict=True))
            x[idx] = upd
            return x
        if op == "pad":
            return _pad(ins, data(0), data(1))
        if op == "select":
            return np.where(xs[0], data(1), data(2))
        if op == "clamp":
            return np.clip(xs[1], xs[0], xs[2])
        if op == "compare":
            if any(is_data):
                raise Unsupported(ins.line, "compares the array's data")
            direction = (ins.attr("direction") or "").strip()
            return _COMPARE[direction](xs[0], xs[1])
        if op in _ARITH:
            return _ARITH[op](np.asarray(xs[0]), np.asarray(xs[1]))
        if op == "divide":
            a, b = np.asarray(xs[0]), np.asarray(xs[1])
            return np.trunc(a / np.where(b == 0, 1, b)).astype(np.int64)
        if op == "remainder":
            a, b = np.asarray(xs[0]), np.asarray(xs[1])
            return np.fmod(a, np.where(b == 0, 1, b))
        if op in ("negate", "abs", "not"):
            fn = {"negate": np.negative, "abs": np.abs, "not": np.logical_not}[op]
            return fn(xs[0])
        raise Unsupported(ins.line, f"the audit does not follow '{op}'")

    def _operand_shape(self, ins: Instruction, k: int) -> Array:
        shape = self.shapes[ins.operands[k]]
        if not isinstance(shape, Array):
            raise Unsupported(ins.line, "bitcast of a tuple")
        return shape

    # --- collectives -------------------------------------------------------------------
    def _collective(self, ins: Instruction, kind: str, vals: list, dep: frozenset[str]
                    ) -> list:
        n = self.n
        per_dev = [[v[d] for v in vals] for d in range(n)]
        if kind == "collective-permute":
            pairs = [tuple(p) for p in _pairs(ins.attr("source_target_pairs"), n, ins)]
            # a device nobody sends to gets zeros from XLA: no data
            out = [np.full_like(per_dev[d][0], PAD) for d in range(n)]
            for s, t in pairs:
                out[t] = per_dev[s][0].copy()
            self.events.append(Event(ins, kind, None, pairs, per_dev,
                                     [[o] for o in out], dep))
            return out if not ins.opcode.endswith("-start") else [
                _started(ins, per_dev[d], out[d]) for d in range(n)]
        groups = parse_groups(ins.attrs, ins.attr("replica_groups"), n, f"%{ins.name}")
        if kind in ("all-reduce", "reduce-scatter", "collective-broadcast",
                    "ragged-all-to-all"):
            raise Unsupported(ins.line, f"{kind} is not a step redist can express in a "
                                        "resharding (pending sums, DESIGN §14, are not "
                                        "implemented)")
        out: list = [None] * n
        if kind == "all-gather":
            dim = _ints(ins.attr("dimensions"))
            if len(dim) != 1 or len(vals) != 1:
                raise Unsupported(ins.line, "an all-gather of several operands or dims")
            for g in groups:
                whole = np.concatenate([per_dev[m][0] for m in g], axis=dim[0])
                for m in g:
                    out[m] = whole
        else:                                     # all-to-all
            dims = _ints(ins.attr("dimensions"))
            for g in groups:
                size = len(g)
                if dims:                          # array form: split and concat one dim
                    if len(vals) != 1:
                        raise Unsupported(ins.line, "an all-to-all of several arrays "
                                                    "with dimensions")
                    pieces = {m: np.split(per_dev[m][0], size, axis=dims[0]) for m in g}
                    for j, m in enumerate(g):
                        out[m] = np.concatenate([pieces[src][j] for src in g], axis=dims[0])
                else:                             # tuple form: operand i goes to member i
                    if len(vals) != size:
                        raise Unsupported(ins.line, f"a tuple all-to-all of {len(vals)} "
                                                    f"operands in groups of {size}")
                    for j, m in enumerate(g):
                        out[m] = tuple(per_dev[src][j] for src in g)
        results = [_flat(o) if isinstance(o, tuple) else [o] for o in out]
        self.events.append(Event(ins, kind, groups, None, per_dev, results, dep))
        if ins.opcode.endswith("-start"):
            return [_started(ins, per_dev[d], out[d]) for d in range(n)]
        return out


def _started(ins: Instruction, operands: list, result):
    """The value of a `-start`: (operands, result, then any scratch the declared tuple
    has, such as collective-permute-start's two u32[] contexts)."""
    first = tuple(operands) if len(operands) > 1 else operands[0]
    extra = ()
    if isinstance(ins.shape, tuple) and len(ins.shape) > 2:
        extra = tuple(np.zeros(s.dims, np.int64) if isinstance(s, Array) else None
                      for s in ins.shape[2:])
    return (first, result) + extra


def _fits(value, shape) -> bool:
    if isinstance(shape, tuple):
        return isinstance(value, tuple) and len(value) == len(shape) and all(
            _fits(v, s) for v, s in zip(value, shape, strict=True))
    return not isinstance(value, tuple) and tuple(np.shape(value)) == shape.dims


def _pairs(raw: str | None, n: int, ins: Instruction) -> list[list[int]]:
    if raw is None:
        raise Unsupported(ins.line, "a collective-permute without source_target_pairs")
    pairs = [[int(a), int(b)] for a, b in re.findall(r"\{\s*(\d+)\s*,\s*(\d+)\s*\}", raw)]
    if any(not (0 <= a < n and 0 <= b < n) for a, b in pairs):
        raise RedistError(f"HLO: a source-target pair names a device outside 0..{n - 1}: "
                          f"{ins.line[:200]}")
    if len({b for _, b in pairs}) != len(pairs):
        raise RedistError(f"HLO: a device receives twice in {ins.line[:200]}")
    return pairs


def _constant(ins: Instruction) -> np.ndarray:
    shape = ins.shape
    if not isinstance(shape, Array):
        raise Unsupported(ins.line, "a tuple constant")
    text = (ins.literal or "").strip()
    if text in ("{...}", "..."):
        raise Unsupported(ins.line, "a constant whose values the dump elides")
    if shape.dtype == "pred":
        vals = [v == "true" for v in re.findall(r"true|false", text)]
        return np.array(vals, dtype=bool).reshape(shape.dims)
    nums = re.findall(r"-?(?:inf|nan|\d+(?:\.\d*)?(?:e[+-]?\d+)?)", text)
    if shape.dtype.startswith(("s", "u")) and shape.dtype[1:].isdigit():
        arr = np.array([int(v) for v in nums], dtype=np.int64)
    else:
        arr = np.full(len(nums), PAD, dtype=np.int64)     # float constants are filler
    if arr.size == 1 and shape.elements != 1:
        return np.full(shape.dims, arr[0], dtype=np.int64)
    if arr.size != shape.elements:
        raise Unsupported(ins.line, "a constant whose values do not fit its shape")
    return arr.reshape(shape.dims)


def _pad(ins: Instruction, x: np.ndarray, value: np.ndarray) -> np.ndarray:
    spec = (ins.attr("padding") or "").split("x")
    cfg = [_ints(s.replace("_", ",")) for s in spec]
    if len(cfg) != x.ndim:
        raise Unsupported(ins.line, "pad with the wrong number of dims")
    fill = int(np.asarray(value).reshape(-1)[0])
    out = x
    for d, c in enumerate(cfg):
        lo, hi, interior = (c + [0, 0, 0])[:3]
        if interior:
            n = out.shape[d]
            shape = list(out.shape)
            shape[d] = n + (n - 1) * interior
            grown = np.full(shape, fill, dtype=out.dtype)
            idx = [slice(None)] * out.ndim
            idx[d] = slice(0, None, interior + 1)
            grown[tuple(idx)] = out
            out = grown
        if lo < 0:
            out = np.take(out, range(-lo, out.shape[d]), axis=d)
            lo = 0
        if hi < 0:
            out = np.take(out, range(0, out.shape[d] + hi), axis=d)
            hi = 0
        widths = [(0, 0)] * out.ndim
        widths[d] = (lo, hi)
        out = np.pad(out, widths, constant_values=fill)
    return out


def interpret(module: Module, inputs: list[np.ndarray]) -> Trace:
    """Execute the module's entry on every device's tagged input."""
    return Interpreter(module, len(inputs)).run_entry(inputs)
