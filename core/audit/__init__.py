"""Auditing plans that other systems compiled (DESIGN §16): HLO text in, a redist plan out."""
