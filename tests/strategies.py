"""The suite's strategies are redist's own (redist.strategies), which `redist regress`
uses too: the user runs exactly the property checks the project runs."""

from redist.strategies import (  # noqa: F401
    axis_refs,
    layouts,
    meshes,
    meshes_of,
    problems,
    random_plans,
    random_steps,
)
