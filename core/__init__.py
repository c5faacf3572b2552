"""The synthesis core: meshes, layouts, collectives, plans, synthesis, SMT checks."""
