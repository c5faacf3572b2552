"""redist: memory-efficient, SMT-verified redistribution of sharded arrays.

    from redist import Mesh, Layout, Problem, synthesize, verify
"""

import os as _os

# In a source checkout the subpackages sit beside this folder (core/, proofs/, runtime/,
# mapped by pyproject.toml); let them import without an install, e.g. under mpiexec.
_root = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if not _os.path.isdir(_os.path.join(_os.path.dirname(__file__), "core")) and _os.path.isdir(
        _os.path.join(_root, "core")):
    __path__.append(_root)

from redist.api import Result, synthesize, verify  # noqa: E402
from redist.core.errors import RedistError, TypingError  # noqa: E402
from redist.core.model.layout import Layout  # noqa: E402
from redist.core.model.mesh import Mesh  # noqa: E402
from redist.core.model.problem import Problem  # noqa: E402
from redist.core.model.syntax import parse_layout, parse_mesh, parse_shape  # noqa: E402
from redist.core.plans.plan import Figures, Plan  # noqa: E402
from redist.core.plans.planjson import dumps as plan_dumps  # noqa: E402
from redist.core.plans.planjson import loads as plan_loads  # noqa: E402
from redist.core.smt.certificate import check_certificate, write_certificate  # noqa: E402

__all__ = ["Figures", "Layout", "Mesh", "Plan", "Problem", "RedistError", "Result",
           "TypingError", "check_certificate", "parse_layout", "parse_mesh", "parse_shape",
           "plan_dumps", "plan_loads", "synthesize", "verify", "write_certificate"]
