"""redist: memory-efficient, SMT-verified redistribution of sharded arrays.

    from redist import Mesh, Layout, Problem, synthesize, verify
"""

from redist.api import Result, synthesize, verify
from redist.core.certificate import check_certificate, write_certificate
from redist.core.errors import RedistError, TypingError
from redist.core.layout import Layout
from redist.core.mesh import Mesh
from redist.core.plan import Figures, Plan
from redist.core.planjson import dumps as plan_dumps
from redist.core.planjson import loads as plan_loads
from redist.core.problem import Problem
from redist.core.syntax import parse_layout, parse_mesh, parse_shape

__all__ = ["Figures", "Layout", "Mesh", "Plan", "Problem", "RedistError", "Result",
           "TypingError", "check_certificate", "parse_layout", "parse_mesh", "parse_shape",
           "plan_dumps", "plan_loads", "synthesize", "verify", "write_certificate"]
