"""Axis references and their refinement into atoms (DESIGN §10).

A reference names a whole mesh axis (`x`) or a sub-axis (`x(p)s`: pre-size p, size s,
p·s dividing |x|; device c's coordinate on it is (c[x] // (|x|/(p·s))) % s). In the
factor order of x, most significant first, x(p)s covers the range [p, p·s).

Everything that computes (typing rules, source maps, costs, the solver, the runtime)
works on *atoms*: the refs of a problem split x at every boundary any of them uses, so
that each ref is a run of consecutive atoms. A mesh of atoms numbers its devices exactly
as the user's mesh does (an axis is the mixed-radix number of its atoms, most significant
first), so atoms are plain axes of an equivalent mesh. Axes of size 1 shard nothing and
have no atoms: a layout that names one is the same layout without it. Atom names are
canonical refs (`x` when an axis is not split), so a layout of atoms is also a valid
layout of the user's mesh; `lift` merges adjacent atoms back into the canonical form.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from redist.core.errors import RedistError
from redist.core.model.mesh import SUB_AXIS, Mesh


@dataclass(frozen=True, order=True)
class Ref:
    """A resolved reference: base axis `name`, factor range [lo, hi) of |name|."""
    name: str
    lo: int
    hi: int

    @property
    def size(self) -> int:
        return self.hi // self.lo

    def overlaps(self, other: Ref) -> bool:
        return self.name == other.name and self.lo < other.hi and other.lo < self.hi


def ref_text(name: str, lo: int, hi: int, axis_size: int) -> str:
    """The canonical text of a ref: `x` for the whole axis, else `x(p)s`."""
    return name if (lo, hi) == (1, axis_size) else f"{name}({lo}){hi // lo}"


def resolve(base: Mesh, text: str) -> Ref:
    """Parse and check one ref against the user's mesh; a one-line error names the fault."""
    if not isinstance(text, str):
        raise RedistError(f"axis {text!r:.40} is not a name")
    m = SUB_AXIS.match(text)
    if m is None:
        if not base.has(text):
            have = ", ".join(base.names) or "no axes"
            raise RedistError(f"unknown mesh axis {text!r:.40} (mesh has {have})")
        return Ref(text, 1, base.size(text))
    name, pre, size = m.group(1), int(m.group(2)), int(m.group(3))
    if not base.has(name):
        have = ", ".join(base.names) or "no axes"
        raise RedistError(f"sub-axis {text}: unknown mesh axis {name!r} (mesh has {have})")
    full = base.size(name)
    if pre < 1 or size < 2:
        raise RedistError(f"sub-axis {text}: pre-size must be >= 1 and size >= 2")
    if full % (pre * size):
        raise RedistError(f"sub-axis {text}: pre-size x size = {pre * size} does not divide "
                          f"|{name}| = {full}")
    return Ref(name, pre, pre * size)


def check_disjoint(refs: Iterable[tuple[str, Ref]], where: str) -> None:
    """The refs of one layout (or one step) must not overlap (DESIGN §10)."""
    seen: list[tuple[str, Ref]] = []
    for text, r in refs:
        for other_text, other in seen:
            if r.overlaps(other):
                what = (f"axis {text!r} is used more than once" if text == other_text else
                        f"{other_text} and {text} overlap (both cover part of {r.name})")
                raise RedistError(f"{where}: {what}")
        seen.append((text, r))


@dataclass(frozen=True)
class Atoms:
    """A refinement of a user mesh: per base axis the boundaries where it is split."""
    base: Mesh
    cuts: tuple[tuple[str, tuple[int, ...]], ...]   # per base axis: 1 = q0 < ... < qk = |x|

    @property
    def mesh(self) -> Mesh:
        """The mesh of atoms (size-1 axes dropped), numbering devices as `base` does."""
        axes = []
        for name, q in self.cuts:
            full = self.base.size(name)
            axes += [(ref_text(name, q[i], q[i + 1], full), q[i + 1] // q[i])
                     for i in range(len(q) - 1)]
        return Mesh(tuple(axes), allow_refs=True)

    def lower(self, text: str) -> tuple[str, ...]:
        """The atoms (major first) of a ref; () for a size-1 axis."""
        r = resolve(self.base, text)
        q = dict(self.cuts).get(r.name)
        if q is None:                        # a size-1 axis: no atoms
            return ()
        full = self.base.size(r.name)
        return tuple(ref_text(r.name, q[i], q[i + 1], full) for i in range(len(q) - 1)
                     if q[i] >= r.lo and q[i + 1] <= r.hi)

    def lower_all(self, texts: Iterable[str]) -> tuple[str, ...]:
        return tuple(a for t in texts for a in self.lower(t))


def refine(base: Mesh, refs: Iterable[str], extra_cuts: dict[str, set[int]] | None = None
           ) -> Atoms:
    """The coarsest refinement in which every ref is a run of atoms (plus extra cuts,
    which synthesis uses to split axes further). Refs whose boundaries cannot coexist
    (x(1)2 and x(1)3 on |x| = 12: 2 does not divide 3) are an error."""
    points: dict[str, set[int]] = {n: {1, s} for n, s in base.axes}
    users: dict[str, list[str]] = {n: [] for n in base.names}
    for text in refs:
        r = resolve(base, text)
        points[r.name] |= {r.lo, r.hi}
        users[r.name].append(text)
    for name, extra in (extra_cuts or {}).items():
        points[name] |= extra
    cuts = []
    for name, size in base.axes:
        if size == 1:
            continue
        q = sorted(points[name])
        for a, b in zip(q, q[1:], strict=False):
            if b % a:
                named = ", ".join(sorted(set(users[name]))) or name
                raise RedistError(f"sub-axes {named} split axis {name} (size {size}) at "
                                  f"boundaries {a} and {b} that do not nest ({a} does not "
                                  f"divide {b}); they cannot be used together")
        cuts.append((name, tuple(q)))
    return Atoms(base, tuple(cuts))


def prime_cuts(base: Mesh, atoms: Atoms) -> dict[str, set[int]]:
    """Extra cuts that split every atom of `atoms` into prime factors (ascending), so that
    synthesis can move the part of an axis an extent can take."""
    out: dict[str, set[int]] = {}
    for name, q in atoms.cuts:
        pts = set(q)
        for a, b in zip(q, q[1:], strict=False):
            at, rest = a, b // a
            for p in _prime_factors(rest):
                at *= p
                pts.add(at)
        out[name] = pts
    return out


def _prime_factors(n: int) -> list[int]:
    out, p = [], 2
    while p * p <= n:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    if n > 1:
        out.append(n)
    return out


def split_atom(text: str) -> Ref | None:
    """The base axis and range of an atom name of a refined mesh (None for a whole axis,
    whose range needs the mesh)."""
    m = SUB_AXIS.match(text)
    if m is None:
        return None
    pre, size = int(m.group(2)), int(m.group(3))
    return Ref(m.group(1), pre, pre * size)


def lift_axes(base: Mesh, atoms: Iterable[str]) -> tuple[str, ...]:
    """Merge runs of adjacent atoms of one axis (major then the next minor) into their
    canonical ref: (x(1)2, x(2)2) on |x| = 4 is x."""
    out: list[Ref] = []
    for a in atoms:
        r = split_atom(a) or Ref(a, 1, base.size(a))
        if out and out[-1].name == r.name and out[-1].hi == r.lo:
            out[-1] = Ref(r.name, out[-1].lo, r.hi)
        else:
            out.append(r)
    return tuple(ref_text(r.name, r.lo, r.hi, base.size(r.name)) for r in out)
