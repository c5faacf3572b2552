"""Replica groups in the three forms XLA prints, as lists of device ids, and the mesh
axes (atoms, sub-axes allowed) whose mixed-radix number orders each group (DESIGN §16).

- explicit: `{{0,1},{2,3}}` (`{}`: one group of every device);
- iota: `[2,4]<=[8]`, `[4,2]<=[2,4]T(1,0)`: iota over the second dims, transposed, reshaped
  to (groups, group size);
- mesh: `mesh['axis_0'=4,'axis_1'=2], device_ids=([2,2,2]T(0,2,1)) {'axis_0':(2)2}`: XLA's
  own mesh (device ids an iota list, or in order), and the axes or sub-axes `(p)s` (the
  notation of DESIGN §10) spanned by each group, major first.

Devices are partition ids; JAX numbers a NamedSharding's partitions as its mesh's devices
row-major, which is redist's device order (DESIGN §1).
"""

from __future__ import annotations

import re

import numpy as np

from redist.core.errors import RedistError
from redist.core.model.mesh import Mesh
from redist.core.semantics.blocks import device_coords

_IOTA = re.compile(r"^\[([\d,\s]+)\]<=\[([\d,\s]+)\](?:T\(([\d,\s]+)\))?$")
_MESH = re.compile(r"mesh\[([^\]]*)\](?:,\s*device_ids=\((.*?)\))?\s*\{([^}]*)\}")
_MESH_AXIS = re.compile(r"^'([^']+)'(?::\((\d+)\)(\d+))?$")


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.replace(" ", "").split(",") if v]


def iota_list(text: str, where: str) -> np.ndarray:
    """`[a,b]<=[n,m]T(1,0)` as an array of shape [a,b]."""
    m = _IOTA.match(text.strip())
    if m is None:
        raise RedistError(f"HLO: cannot read the iota list {text[:60]!r} in {where}")
    out_dims, src_dims = _ints(m.group(1)), _ints(m.group(2))
    arr = np.arange(int(np.prod(src_dims))).reshape(src_dims)
    if m.group(3):
        perm = _ints(m.group(3))
        if sorted(perm) != list(range(len(src_dims))):
            raise RedistError(f"HLO: bad transpose in the iota list {text[:60]!r} in {where}")
        arr = arr.transpose(perm)
    if int(np.prod(out_dims)) != arr.size:
        raise RedistError(f"HLO: iota list {text[:60]!r} has {arr.size} ids, not "
                          f"{int(np.prod(out_dims))} in {where}")
    return arr.reshape(out_dims)


def device_ids(text: str, where: str) -> np.ndarray:
    """A mesh's device ids: `[2,2,2]T(0,2,1)` (an iota of those dims, transposed),
    `[8]<=[2,4]T(1,0)`, or an explicit `[0,2,1,3]`... list, flattened."""
    if "<=" in text:
        return iota_list(text, where).reshape(-1)
    m = re.fullmatch(r"\[([\d,\s]+)\](?:T\(([\d,\s]+)\))?", text)
    if m is None:
        raise RedistError(f"HLO: cannot read the device ids {text[:60]!r} in {where}")
    dims = _ints(m.group(1))
    if m.group(2) is None:
        return np.array(dims) if len(dims) > 1 else np.arange(dims[0])
    perm = _ints(m.group(2))
    if sorted(perm) != list(range(len(dims))):
        raise RedistError(f"HLO: bad transpose in the device ids {text[:60]!r} in {where}")
    return np.arange(int(np.prod(dims))).reshape(dims).transpose(perm).reshape(-1)


def parse_groups(attrs: str, raw: str | None, devices: int, where: str) -> list[list[int]]:
    """The groups of a collective (each in its member order), checked to partition the
    devices."""
    mesh_form = _MESH.search(attrs) if raw is not None and raw.startswith("mesh") else None
    if mesh_form is not None:
        groups = _mesh_groups(mesh_form, where)
    elif raw is None or raw.replace(" ", "") in ("{}", "{{}}"):
        groups = [list(range(devices))]
    elif raw.startswith("["):
        arr = iota_list(raw, where)
        if arr.ndim != 2:
            raise RedistError(f"HLO: iota replica groups {raw[:60]!r} are not 2-D in {where}")
        groups = arr.tolist()
    elif raw.startswith("{"):
        body = raw.replace(" ", "")
        if not re.fullmatch(r"\{(\{[\d,]*\},?)*\}", body):
            raise RedistError(f"HLO: cannot read the replica groups {raw[:60]!r} in {where}")
        groups = [_ints(g) for g in re.findall(r"\{([\d,]*)\}", body[1:-1])]
    else:
        raise RedistError(f"HLO: cannot read the replica groups {raw[:60]!r} in {where}")
    flat = sorted(d for g in groups for d in g)
    if flat != list(range(devices)):
        raise RedistError(f"HLO: the replica groups of {where} do not partition the "
                          f"{devices} devices")
    return groups


def _mesh_groups(m: re.Match, where: str) -> list[list[int]]:
    axes = []
    for item in m.group(1).split(","):
        am = re.fullmatch(r"\s*'([^']+)'\s*=\s*(\d+)\s*", item)
        if am is None:
            raise RedistError(f"HLO: cannot read the mesh axis {item.strip()[:40]!r} in {where}")
        axes.append((am.group(1), int(am.group(2))))
    sizes = [s for _, s in axes]
    n = int(np.prod(sizes))
    ids = device_ids(m.group(2).strip(), where) if m.group(2) else np.arange(n)
    if ids.size != n:
        raise RedistError(f"HLO: device_ids of {where} name {ids.size} devices, the mesh {n}")
    coords = np.indices(sizes).reshape(len(sizes), -1)        # per mesh position
    names = [a for a, _ in axes]
    group_axes = []                                           # (mesh axis, coordinate fn)
    for item in (t.strip() for t in m.group(3).split(",") if t.strip()):
        am = _MESH_AXIS.match(item)
        if am is None or am.group(1) not in names:
            raise RedistError(f"HLO: cannot read the group axis {item[:40]!r} in {where}")
        k = names.index(am.group(1))
        full = sizes[k]
        pre, size = (int(am.group(2)), int(am.group(3))) if am.group(2) else (1, full)
        if pre < 1 or size < 1 or full % (pre * size):
            raise RedistError(f"HLO: sub-axis {item!r} does not divide axis size {full} in "
                              f"{where}")
        group_axes.append((coords[k] // (full // (pre * size))) % size)
        group_axes[-1] = (group_axes[-1], size, k, full // (pre * size), pre * size)
    # Position in the group: mixed radix over the group axes (major first); the group is
    # identified by the rest of the coordinates.
    pos = np.zeros(n, dtype=np.int64)
    key = coords.copy()
    for c, size, k, stride, span in group_axes:
        pos = pos * size + c
        # remove this sub-axis's digit from the axis coordinate: what is left names the group
        key[k] = key[k] - c * stride
        del span
    keys = [tuple(col) for col in key.T.tolist()]
    order: dict[tuple, list[tuple[int, int]]] = {}
    for i, kk in enumerate(keys):
        order.setdefault(kk, []).append((int(pos[i]), int(ids[i])))
    return [[d for _, d in sorted(v)] for _, v in sorted(order.items())]


def axes_of_groups(atoms: Mesh, groups: list[list[int]]) -> tuple[str, ...] | None:
    """The atoms (major first) whose mixed-radix number is each device's position in its
    group, with groups = devices equal on the other atoms; None if no such atoms exist."""
    pos = np.zeros(atoms.num_devices, dtype=np.int64)
    gid = np.zeros(atoms.num_devices, dtype=np.int64)
    for g, members in enumerate(groups):
        for j, d in enumerate(members):
            pos[d], gid[d] = j, g
    axes = digits_of(atoms, pos, set())
    if axes is None:
        return None
    coords = device_coords(atoms)
    rest = [a for a in atoms.names if a not in axes]
    key = np.zeros(atoms.num_devices, dtype=np.int64)
    for a in rest:
        key = key * atoms.size(a) + coords[a]
    # same group <=> same coordinates on the other atoms
    if len({(int(k), int(g)) for k, g in zip(key, gid, strict=True)}) != len(groups) or \
            len(set(key.tolist())) != len(groups):
        return None
    return axes


def digits_of(atoms: Mesh, value: np.ndarray, used: set[str],
              valid: np.ndarray | None = None) -> tuple[str, ...] | None:
    """The unique atoms (major first, none in `used`) whose mixed-radix number over the
    devices' coordinates equals `value` (on the `valid` devices); None if none do."""
    coords = device_coords(atoms)
    mask = np.ones(atoms.num_devices, bool) if valid is None else valid
    rest = value.astype(np.int64).copy()
    out: list[str] = []
    while np.any(rest[mask] != 0):
        hits = [a for a in atoms.names if a not in used and a not in out
                and np.array_equal((rest % atoms.size(a))[mask], coords[a][mask])]
        if len(hits) != 1:
            return None
        a = hits[0]
        out.append(a)
        rest = rest // atoms.size(a)
    return tuple(reversed(out))
