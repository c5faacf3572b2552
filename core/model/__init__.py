"""Meshes, layouts, problems and their text forms: what a user writes down."""
