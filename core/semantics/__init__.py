"""The collectives: typing rules, element semantics (source maps), blocks and costs."""
