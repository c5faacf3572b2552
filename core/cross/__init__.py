"""Between two meshes (DESIGN §15): src on mesh A, dst on mesh B, over the ranks of one
world; the `transfer` step, its plans, proofs and synthesis."""
