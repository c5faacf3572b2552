"""Plan synthesis: naive, normal form (search) and optimal (SMT)."""
