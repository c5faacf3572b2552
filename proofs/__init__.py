"""General theorems about the collectives and the synthesizer, as SMT obligations."""
