"""The SMT layer: typing rules and the five claims as obligations, verification,
certificates."""
