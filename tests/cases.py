"""The public example cases of DESIGN §9."""

from redist.core.model.problem import Problem
from redist.core.model.syntax import parse_layout, parse_mesh, parse_shape

CASES = {
    "transpose": ("x=2,y=4", "4096,4096", "[{x},{y}]", "[{y},{x}]"),
    "replace-axis": ("x=2,y=4", "4096,4096", "[{x},{}]", "[{},{y}]"),
    "paper-1d": ("x=2,y=3", "6", "[{x}]", "[{y}]"),
    "gather-all": ("x=2,y=2,z=2", "64,64,64", "[{x},{y},{z}]", "[{},{},{}]"),
    "swap-3d": ("x=2,y=2,z=2", "64,64,64", "[{x,y},{z},{}]", "[{},{z},{y,x}]"),
    "reorder": ("x=4,y=2", "64,64", "[{x,y},{}]", "[{y,x},{}]"),
}


def case(name: str, shape: str | None = None, dtype: str = "float32") -> Problem:
    mesh, sh, src, dst = CASES[name]
    return Problem(parse_mesh(mesh), parse_shape(shape or sh), dtype, parse_layout(src),
                   parse_layout(dst))
